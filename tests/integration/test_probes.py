"""A running worker's /health, /ready and /metrics (``stream_app/observability/``): alive at
once, ready only once its partitions are assigned, its tables recovered and a config is in
force, and its metrics count what it did."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.kafka.broker import free_port
from stream_app.kafka.topics import create_topics
from stream_app.partition.keys import partition_of
from stream_app.settings import Settings
from tests.integration.conftest import Engine

pytestmark = pytest.mark.integration

# what Faust logs when a recovery has completed (faust/tables/recovery.py, on_recovery_completed)
RECOVERY_COMPLETED = "Restore complete!"


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def _until(probe, done, timeout_s: float, what: str):
    """Call ``probe()`` every 50 ms until ``done(answer)``; every answer, in order."""
    answers = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answers.append(probe())
        except OSError:  # not listening yet
            time.sleep(0.05)
            continue
        if done(answers[-1]):
            return answers
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last answers: {answers[-3:]}")


def _samples(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, body = _get(port, "/metrics")
    assert status == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A worker with its probes on a free port, started before any config is published."""
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"pr{run}-",
        app_id=f"pr-{run}", partitions=2, data_dir=tmp_path / "state", max_message_bytes=4096)
    create_topics(settings)
    port = free_port()
    monkeypatch.setenv("STREAM_APP_PROBE_PORT", str(port))  # Engine.env() passes os.environ on
    engine = Engine(settings, tmp_path)
    engine.start()
    try:
        yield engine, port
    finally:
        engine.close()


def test_health_ready_and_metrics_of_a_running_worker(worker, two_offers, make_request):
    engine, port = worker
    log = engine.workdir / "worker.log"

    # alive as soon as the process serves; not ready before its tables are recovered ...
    health = _until(lambda: _get(port, "/health"), lambda a: True, 60, "/health")[-1]
    assert health == (200, b'{"status":"alive"}')
    recovered_at_log = []

    def ready_probe():
        status, body = _get(port, "/ready")
        details = orjson.loads(body)
        if details["recovered"] and not recovered_at_log:  # what the worker had logged by then
            recovered_at_log.append(RECOVERY_COMPLETED in log.read_text(errors="replace"))
        return status, details

    answers = _until(ready_probe, lambda a: a[1]["recovered"], 90, "recovery")
    assert recovered_at_log == [True]  # "recovered" only once Faust's recovery has completed
    assert all(status == 503 and not details["ready"] for status, details in answers)
    # ... nor while no config is in force
    status, details = answers[-1]
    assert (status, details["config_loaded"], details["partitions"]) == (503, False, [0, 1])

    engine.publish_config(two_offers)
    status, details = _until(ready_probe, lambda a: a[0] == 200, 60, "ready")[-1]
    assert details["ready"] and details["config_version"] == two_offers["version"]
    assert details["partitions"] == [0, 1]

    # customers on both partitions (the producers' partitioner: murmur2 of the key)
    customers = [f"c-probe-{i}" for i in range(40)]
    by_partition = [[c for c in customers if partition_of(c, 2) == p] for p in (0, 1)]
    requests = [make_request(c) for c in by_partition[0][:3] + by_partition[1][:3]]
    engine.send_many("decision-requests", requests)
    decisions = engine.collect("decisions", lambda ms: len(ms) >= len(requests))
    assert len(decisions) == len(requests)

    samples = _samples(port)
    counted = Counter({(s["use_case"], s["policy"], s["offer"], s["action"]): v
                       for s, v in samples["stream_app_decisions_total"]})
    made = Counter((d["use_case"], d["policy"], d["offer_id"] or "", d["action"])
                   for d in decisions)
    assert counted == made
    assert samples["stream_app_decision_latency_seconds_count"] == [({}, float(len(requests)))]
    topic = engine.settings.topic
    records_in = {s["topic"]: v for s, v in samples["stream_app_records_in_total"]}
    assert records_in[topic("decision-requests")] == len(requests)
    records_out = {s["topic"]: v for s, v in samples["stream_app_records_out_total"]}
    assert records_out[topic("decisions")] == len(requests)
    assert samples["stream_app_config_version_info"] == [({"version": two_offers["version"]},
                                                          1.0)]
    assert sum(v for _, v in samples["stream_app_customers"]) >= 1

    # once the offsets are committed (every second), nothing is left to read
    def lag():
        return {(s["topic"], s["partition"]): v
                for s, v in _samples(port).get("stream_app_consumer_lag", [])}

    settled = _until(lag, lambda a: {(topic("decision-requests"), "0"),
                                     (topic("decision-requests"), "1")} <= a.keys(), 30, "lag")
    assert all(v == 0 for v in settled[-1].values())
