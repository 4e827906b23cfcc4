"""A worker killed after it processed records and before it committed them: what it produced
is never seen by read_committed consumers, its state never reaches its stores or changelogs,
and after the restart each record has its effect once (worker/transactions.py).

Deterministic: the worker is restarted with a commit interval longer than the test, so the
records are processed (their decisions visible to a read_uncommitted consumer) but not
committed when it is killed. A read_uncommitted consumer then sees each of those decisions
twice (the aborted one and the one made again); a read_committed one, once."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_app.core.catalogue import offer_key
from stream_app.core.customer import CustomerState
from stream_app.core.delta import outcome_rows
from stream_app.tools.chaos import local_rows, read_topic

pytestmark = pytest.mark.integration

ONE_OFFER = {
    "version": "crash-v1",
    "offers": [{"id": "cashback", "category": "cards", "value": 1.0, "channels": ["app"]}],
    "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": 3600,
                   "rules": {"fatigue": {"same_offer_s": 0}}}],
}


def _uncommitted(bootstrap: str, topic: str) -> Consumer:
    """A consumer that sees records of open transactions too (what the worker produced)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"u-{uuid.uuid4().hex}",
                         "isolation.level": "read_uncommitted", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(topic, timeout=15).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    return consumer


def _read(consumer: Consumer, until, timeout_s: float = 60.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.2):
            if msg.error() is None and msg.value() is not None:
                got.append(orjson.loads(msg.value()))
        if until(got):
            return got
    raise AssertionError(f"timed out; got {got[-3:]}")


def test_a_kill_before_the_commit_leaves_no_trace_and_loses_nothing(engine, make_request,
                                                                    monkeypatch) -> None:
    bootstrap = engine.settings.bootstrap_servers
    engine.publish_config(ONE_OFFER)
    first = make_request(customer="c-crash", ts=int(time.time() * 1000))
    d1 = engine.decide(first)  # committed
    assert d1["offer_id"] == "cashback"

    engine.stop()
    monkeypatch.setenv("STREAM_APP_COMMIT_INTERVAL_MS", "3600000")  # nothing commits
    engine.start()
    now = int(time.time() * 1000)
    outcome = {"outcome_id": f"oc-{uuid.uuid4().hex}", "decision_id": d1["decision_id"],
               "customer_id": "c-crash", "ts": now, "type": "clicked"}
    offered = make_request(customer="c-crash", ts=now + 1)
    nothing = make_request(customer="c-crash", ts=now + 2, channel="sms")  # no offer fits
    engine.send("outcomes", "c-crash", outcome)
    engine.send("decision-requests", "c-crash", offered)
    engine.send("decision-requests", "c-crash", nothing)
    wanted = {offered["request_id"], nothing["request_id"]}
    seen = _uncommitted(bootstrap, engine.settings.topic("decisions"))
    try:
        _read(seen, lambda ms: wanted <= {m["request_id"] for m in ms})
    finally:
        seen.close()
    time.sleep(1.5)  # the outcome, on its own topic, is processed too
    engine.process.kill()  # processed and produced, not committed
    engine.process.wait()
    engine.process = None

    monkeypatch.delenv("STREAM_APP_COMMIT_INTERVAL_MS")
    engine.start()
    engine.collect("decisions", lambda ms: wanted <= {m["request_id"] for m in ms})
    engine.collect("delta-metrics", lambda ms: any(
        m.get("outcome_id") == outcome["outcome_id"] for m in ms))
    engine.stop()  # clean: every store written, nothing left to commit

    # read_committed, from the start: one decision per request, one delta per outcome
    decided = Counter(m["request_id"] for m in _committed(engine, "decisions"))
    assert [decided[r["request_id"]] for r in (first, offered, nothing)] == [1, 1, 1]
    everything = _uncommitted(bootstrap, engine.settings.topic("decisions"))
    try:
        written = Counter(m["request_id"] for m in _read(everything, lambda ms: sum(
            m["request_id"] in wanted for m in ms) >= 4))
    finally:
        everything.close()
    assert [written[r] for r in sorted(wanted)] == [2, 2]  # the kill did abort them
    deltas_of = [r for m in _committed(engine, "delta-metrics") for r in outcome_rows(m)
                 if r.get("outcome_id") == outcome["outcome_id"]]
    assert len(deltas_of) == 1
    # the arm learned the click once, and the changelog holds what the store holds
    changelog = dict(read_topic(bootstrap, f"{engine.settings.app_id}-customers-changelog"))
    state = CustomerState.decode(changelog[b"c-crash"], "c-crash")
    succ, fail = state.arms.evidence(np.array([offer_key("cashback")], np.uint32), 0, None)
    assert (succ[0], fail[0]) == (1.0, 0.0)
    assert local_rows(engine.settings.data_dir) == {
        k: v for k, v in changelog.items() if v is not None}


def _committed(engine, name: str) -> list[dict]:
    return [orjson.loads(v) for _, v in read_topic(engine.settings.bootstrap_servers,
                                                   engine.settings.topic(name))
            if v is not None]
