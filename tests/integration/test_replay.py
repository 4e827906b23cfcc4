"""Replay through a sandbox: the same topic range twice gives the same decisions, and production
is never written to (its end offsets do not move), while the sandbox's own topics get the output."""

from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.cli import main
from stream_app.core.decision import decision_id_for
from stream_app.kafka.client import producer, send
from stream_app.kafka.topics import create_topics
from stream_app.settings import Settings
from stream_app.tools.ranges import TopicRange, read_range
from stream_app.tools.replay import choose_config, read_inputs_from_topics, run_replay
from stream_app.tools.sandbox import Sandbox, SandboxViolation

pytestmark = pytest.mark.integration

WINDOW_S = 600
CONFIG = {
    "version": "replay-it-v2",
    "offers": [
        {"id": "cashback", "category": "cards", "value": 1.0},
        {"id": "travel", "category": "travel", "value": 1.0, "framing": "urgency"},
        {"id": "dining", "category": "dining", "value": 1.0},
    ],
    "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": WINDOW_S}],
}
START_MS = 1_764_000_000_000


def traffic(seed: int = 11, customers: int = 50, requests: int = 220, interactions: int = 160):
    """Deterministic inputs over two hours of event time (12 attribution windows): requests,
    interactions, and outcomes for about half of the requests, some inside the window, some
    after it (late: the timer has counted the decision as ignored by then)."""
    rng = np.random.default_rng(seed)
    span = 2 * 3600 * 1000
    out = []
    for j in range(requests):
        cid = f"c{rng.integers(customers):03d}"
        ts = START_MS + int(rng.integers(span))
        rid = f"rq-it-{j}"
        out.append(("decision-requests", {"request_id": rid, "customer_id": cid, "ts": ts,
                                          "channel": "app", "use_case": "default",
                                          "context": {"page": str(rng.choice(["home", "travel"]))}}))
        if rng.random() < 0.55:
            late = rng.random() < 0.15
            delay = int(rng.integers(WINDOW_S * 1000, 2 * WINDOW_S * 1000) if late
                        else rng.integers(1000, WINDOW_S * 1000 - 1000))
            kind = str(rng.choice(["clicked", "converted", "dismissed"], p=[0.4, 0.2, 0.4]))
            out.append(("outcomes", {"outcome_id": f"oc-it-{j}", "decision_id": decision_id_for(rid),
                                     "customer_id": cid, "ts": ts + delay, "type": kind,
                                     "value": 1.0 if kind == "converted" else 0.0}))
    for i in range(interactions):
        out.append(("interactions", {"event_id": f"ev-it-{i}",
                                     "customer_id": f"c{rng.integers(customers):03d}",
                                     "ts": START_MS + int(rng.integers(span)), "type": "login"}))
    # logged the way a real system logs: by topic, roughly but not exactly in event time
    out.sort(key=lambda tm: (tm[0], tm[1]["ts"] // 60_000))
    return out


def end_offsets(bootstrap: str, prefix: str) -> dict[tuple[str, int], int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=15).topics if t.startswith(prefix)]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        meta = c.list_topics(timeout=15).topics
        return {(t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=15)[1]
                for t in topics for p in meta[t].partitions}
    finally:
        c.close()


def comparable(decision: dict) -> dict:
    return {k: v for k, v in decision.items() if k != "latency_ms"}


def test_replay_twice_same_decisions_and_production_untouched(kafka_bootstrap, tmp_path,
                                                              monkeypatch):
    run = uuid.uuid4().hex[:6]
    prod = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"prod{run}-",
        app_id=f"prod{run}", partitions=2, cache_dir=tmp_path, data_dir=tmp_path / "prod-state")
    create_topics(prod)
    p = producer(kafka_bootstrap)
    send(p, prod.topic("engine-config"), "engine", {**CONFIG, "version": "replay-it-v1"})
    send(p, prod.topic("engine-config"), "engine", CONFIG)  # the latest valid one is replayed
    p.flush(10)
    since = int(time.time() * 1000) - 1000
    inputs = traffic()
    for topic, msg in inputs:
        send(p, prod.topic(topic), msg["customer_id"], msg)
    assert p.flush(30) == 0
    before = end_offsets(kafka_bootstrap, prod.topic_prefix)
    assert sum(before.values()) == len(inputs) + 2

    # the export command writes the same range, one record a line
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", prod.topic_prefix)
    assert main(["export", "decision-requests", "--out", str(tmp_path / "rq.jsonl"),
                 "--from-time", str(since)]) == 0
    exported = [orjson.loads(line) for line in (tmp_path / "rq.jsonl").read_bytes().splitlines()]
    assert sorted(r["value"]["request_id"] for r in exported) == sorted(
        m["request_id"] for t, m in inputs if t == "decision-requests")

    records, partitions = read_inputs_from_topics(prod, TopicRange(from_ms=since))
    assert len(records) == len(inputs) and partitions == 2
    config = choose_config(prod, None)
    assert orjson.loads(config)["version"] == "replay-it-v2"

    first = run_replay(prod, records, config, name=f"a{run}", partitions=partitions, keep=True,
                       timeout_s=60, out=tmp_path / "a.jsonl")
    second = run_replay(prod, records, config, name=f"b{run}", partitions=partitions, keep=False,
                        timeout_s=60)

    n_requests = sum(t == "decision-requests" for t, _ in inputs)
    for result in (first, second):
        assert result.missing == [] and len(result.decisions) == n_requests
        assert result.unconfirmed == 0 and result.config_version == "replay-it-v2"
    offers = [d.get("offer_id") for d in first.decisions]
    # the test would be weak if every decision were the same
    assert {o for o in offers if o} == {o["id"] for o in CONFIG["offers"]}
    assert [comparable(d) for d in first.decisions] == [comparable(d) for d in second.decisions]
    # ...and the decisions depend on the order of what came before: the arms learned from outcomes
    # and timers (the posterior mean of the chosen offer moves), which the lockstep keeps fixed
    assert len({round(d["predicted"], 6) for d in first.decisions if d.get("offer_id")}) > 10
    assert first.deltas > 0 and first.dead_letters == second.dead_letters

    # production: not one message more, on any of its topics
    assert end_offsets(kafka_bootstrap, prod.topic_prefix) == before
    # the sandbox kept (a) holds the outputs, the deleted one (b) is gone
    box_a = Sandbox.create(prod, f"a{run}")
    on_topic = [r["value"] for r in read_range(kafka_bootstrap, box_a.settings.topic("decisions"))]
    assert sorted(d["decision_id"] for d in on_topic) == sorted(d["decision_id"] for d in first.decisions)
    written = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert {r["topic"] for r in written} >= {box_a.settings.topic("decisions"),
                                            box_a.settings.topic("delta-metrics")}
    assert not [t for t, _ in end_offsets(kafka_bootstrap, f"replay-b{run}-")]
    box_a.reset()

    # and the guard: a sandbox cannot write to a production topic
    with pytest.raises(SandboxViolation):
        box_a.producer().produce(prod.topic("decision-requests"), b"c001", b"{}")
