"""Hostile input through the real worker and broker: a message too large to dead-letter whole,
configs that are bad, oversized or rolled back, a restart after them, a worker that has no valid
config yet, and an idle partition whose attribution timer still fires. (The bulk of the hostile
suite runs in-process: ``tests/unit/test_hostile_input.py``.)"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream_app.kafka.topics import create_topics
from stream_app.settings import Settings
from tests.integration.conftest import Engine

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return int(time.time() * 1000)


def config_letters(engine: Engine, seen: list[dict], n: int, timeout_s: float = 60) -> list[dict]:
    """Dead letters of ``engine-config`` until there are ``n`` (kept in ``seen``)."""
    topic = engine.settings.topic("engine-config")
    got = engine.collect("dead-letter", lambda ms: len(
        seen + [m for m in ms if m["source"]["topic"] == topic]) >= n, timeout_s)
    seen += [m for m in got if m["source"]["topic"] == topic]
    return seen


def cli(engine: Engine, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], env=engine.env(),
                          capture_output=True, text=True, timeout=120, check=False)


def test_large_inputs_and_bad_configs_leave_a_trace_and_the_worker_answering(
        engine, make_request, two_offers):
    first = engine.decide(make_request(ts=now_ms()))
    assert first["config_version"] == "it-v1"

    # ~1 MB on an input topic: refused as too large, dead-lettered truncated with size and hash
    huge = b'{"pad":"' + b"x" * 950_000 + b'"}'
    engine.send("decision-requests", "c-huge", huge)
    after = engine.decide(make_request(ts=now_ms()))  # the agent lives on
    inputs = engine.settings.topic("decision-requests")
    [letter] = [m for m in engine.collect("dead-letter", lambda ms: any(
        m["source"]["topic"] == inputs for m in ms)) if m["source"]["topic"] == inputs]
    assert "too large" in letter["reason"] and letter["truncated"] is True
    assert letter["value_bytes"] == len(huge)
    assert letter["value_sha256"] == hashlib.sha256(huge).hexdigest()
    assert after["config_version"] == "it-v1"

    # a use case with "rule" for "rules", and a ~900 KB config: refused, the last good stays
    use_case = {**two_offers["use_cases"][0], "rule": {"fatigue": {"same_offer_s": 0}}}
    engine.publish_config({**two_offers, "version": "it-bad", "use_cases": [use_case]})
    engine.publish_config({**two_offers, "version": "it-big", "description": "big",
                           "offers": [{"id": f"o{i}", "category": "c" * 40}
                                      for i in range(13_000)]})
    seen = config_letters(engine, [], 2)
    assert "use_cases[0] must not contain {'rule'}" in seen[0]["reason"]
    assert "too large" in seen[1]["reason"] and seen[1]["truncated"] is True
    assert engine.decide(make_request(ts=now_ms()))["config_version"] == "it-v1"

    # a good one, then a rollback with one command
    engine.publish_config({**two_offers, "version": "it-v2"})
    deadline = time.monotonic() + 60
    while engine.decide(make_request(ts=now_ms()))["config_version"] != "it-v2":
        assert time.monotonic() < deadline, "it-v2 never in force"
    history = cli(engine, "config", "history")
    assert history.returncode == 0, history.stderr
    assert [line.split("\t")[1] for line in history.stdout.splitlines()] == [
        "version it-v1", "version it-v2"]
    rolled = cli(engine, "config", "rollback")
    assert rolled.returncode == 0 and "from it-v2 to it-v1" in rolled.stdout, rolled.stderr
    while engine.decide(make_request(ts=now_ms()))["config_version"] != "it-v1":
        assert time.monotonic() < deadline + 60, "the rollback never came into force"

    # a restart: the config in force at once, and no bad config dead-lettered again
    engine.stop()
    engine.start()
    assert engine.decide(make_request(ts=now_ms()))["config_version"] == "it-v1"
    time.sleep(2)
    again = [m for _, v in engine.readers["dead-letter"].poll(1.0)
             if (m := orjson.loads(v))["source"]["topic"] == engine.settings.topic("engine-config")]
    assert again == []


def test_without_a_valid_config_the_worker_waits_then_answers_and_fires_idle_timers(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        make_request, two_offers):
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"ho{run}-",
        app_id=f"ho-{run}", partitions=2, data_dir=tmp_path / "state", max_message_bytes=4096)
    create_topics(settings)
    monkeypatch.setenv("STREAM_APP_IDLE_AFTER_S", "1")  # Engine.env() passes os.environ on
    monkeypatch.setenv("STREAM_APP_PROBE_PORT", "0")
    engine = Engine(settings, tmp_path)
    bad = {**two_offers, "version": "only-bad",
           "use_cases": [{**two_offers["use_cases"][0], "rule": {}}]}
    engine.publish_config(bad)
    engine.start()
    try:
        request = make_request(ts=now_ms())
        engine.send("decision-requests", request["customer_id"], request)
        config_letters(engine, [], 1, timeout_s=90)
        time.sleep(3)  # the request waits: no decision, and no dead letter for want of a config
        assert [m for _, v in engine.readers["decisions"].poll(0.5)
                if (m := orjson.loads(v))] == []
        letters = [orjson.loads(v) for _, v in engine.readers["dead-letter"].poll(0.5)]
        assert letters == []
        # SIGTERM stops a worker that waits for a config
        engine.process.send_signal(signal.SIGTERM)
        assert engine.process.wait(45) is not None  # else TimeoutExpired
        engine.process = None
        # a good config with a 2 s window: the waiting request is answered after a restart ...
        short = {**two_offers, "version": "short",
                 "use_cases": [{**two_offers["use_cases"][0], "attribution_window_s": 2}]}
        engine.publish_config(short)
        engine.start()
        [decision] = [m for m in engine.collect("decisions", lambda ms: any(
            m["request_id"] == request["request_id"] for m in ms), 90)
            if m["request_id"] == request["request_id"]]
        assert decision["config_version"] == "short" and decision["action"] == "offer"
        # ... and with no more traffic at all, its timer fires (the partition is idle)
        mine = decision["decision_id"]
        [ignored] = [m for m in engine.collect("delta-metrics", lambda ms: any(
            m.get("decision_id") == mine for m in ms), 60) if m.get("decision_id") == mine]
        assert ignored["ignored"] is True and ignored["actual"] == 0.0
    finally:
        engine.close()
        os.environ.pop("STREAM_APP_IDLE_AFTER_S", None)


def test_a_restarted_worker_fires_the_timers_of_a_partition_that_reads_nothing(
        engine, make_request, two_offers, monkeypatch) -> None:
    """Killed while a decision was open, restarted after its window ended, and no record ever
    reaches that partition again: the decision is still settled as ignored (rule 4)."""
    monkeypatch.setenv("STREAM_APP_IDLE_AFTER_S", "1")
    window_s = 5
    engine.publish_config({**two_offers, "version": "idle-restart",
                           "use_cases": [{**two_offers["use_cases"][0],
                                          "attribution_window_s": window_s}]})
    engine.stop()  # restarted with the idle setting
    engine.start()
    decision = engine.decide(make_request(ts=now_ms()))  # committed
    engine.process.kill()
    engine.process.wait()
    engine.process = None
    time.sleep(window_s)
    engine.start()
    mine = decision["decision_id"]
    [ignored] = [m for m in engine.collect("delta-metrics", lambda ms: any(
        m.get("decision_id") == mine for m in ms), 60) if m.get("decision_id") == mine]
    assert ignored["ignored"] is True and ignored["actual"] == 0.0
