"""Erasure of a customer against the real broker, through a worker process and ``stream-app erase
--wait``: the customer's changelog keys end in tombstones, ``customer-scores`` gets its tombstone,
the audit record says what was removed, the other customers are untouched, and a worker whose
state is recovered from the changelogs alone does not bring the customer back."""

from __future__ import annotations

import shutil
import time
import uuid

import jsonschema
import orjson
import pytest

from stream_app.cli import main as cli_main
from stream_app.kafka.client import TopicReader
from stream_app.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


def last_values(bootstrap: str, topic: str, want: set[bytes], timeout_s: float = 30.0
                ) -> dict[bytes, bytes | None]:
    """The last value of each key of ``topic`` (from its start), once every key of ``want`` was
    seen and nothing new came for a moment."""
    reader = TopicReader(bootstrap, topic, from_start=True)
    last: dict[bytes, bytes | None] = {}
    quiet_since = time.monotonic()
    deadline = quiet_since + timeout_s
    try:
        while time.monotonic() < deadline:
            got = reader.poll(0.3)
            for key, value in got:
                last[key] = value
            if got:
                quiet_since = time.monotonic()
            elif want <= set(last) and time.monotonic() - quiet_since > 1.0:
                return last
    finally:
        reader.close()
    raise AssertionError(f"{topic}: keys {sorted(want - set(last))} never came; got {last}")


def test_an_erased_customer_leaves_no_state_and_does_not_come_back(engine, make_request,
                                                                   monkeypatch, capsys):
    settings = engine.settings
    gone, kept = "c-gone", ["c-kept-1", "c-kept-2"]
    decisions = {}
    for cid in [gone, *kept]:
        decisions[cid] = engine.decide(make_request(customer=cid, ts=T0))
        engine.send("interactions", cid, {"event_id": f"e-{cid}", "customer_id": cid,
                                          "ts": T0 + 1000, "type": "login"})
    engine.collect("customer-scores",
                   lambda ms: {m["customer_id"] for m in ms} >= {gone, *kept})

    # stream-app erase c-gone --wait: the request, then the partition's audit record
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", settings.topic_prefix)
    capsys.readouterr()
    assert cli_main(["erase", gone, "--reason", "ticket 42", "--wait", "--timeout", "45"]) == 0
    printed = capsys.readouterr().out
    audit = orjson.loads(printed[printed.index("{"):])
    schema = orjson.loads((PROJECT_ROOT / "schemas" / "erasure-audit.v1.json").read_bytes())
    jsonschema.validate(audit, schema)
    assert audit["customer_id"] == gone and audit["found"] and audit["reason"] == "ticket 42"
    assert audit["removed"]["customers"] == 1 and audit["removed"]["open_decisions"] == 1
    assert audit["timers_cancelled"] >= 1

    # the compacted outputs and the changelog: the erased key ends in a tombstone, no other does
    scores = last_values(settings.bootstrap_servers, settings.topic("customer-scores"),
                         {c.encode() for c in [gone, *kept]})
    assert scores[gone.encode()] is None
    assert all(scores[c.encode()] is not None for c in kept)
    for table in ("customers", "enrolments"):
        changelog = f"{settings.app_id}-{table}-changelog"
        want = {gone.encode()} | ({c.encode() for c in kept} if table == "customers" else set())
        state = last_values(settings.bootstrap_servers, changelog, want)
        assert state[gone.encode()] is None, table
        assert all(state[c.encode()] is not None for c in kept if c.encode() in state), table

    # a new machine: the state comes back from the changelogs alone, without the erased customer
    engine.stop()
    shutil.rmtree(settings.data_dir)
    # no learner in the new worker: nothing here reads a snapshot, and a learner still waiting
    # for the snapshot feed holds a worker's stop for its whole timeout (60 s)
    engine.settings = settings.with_(learner="off")
    engine.start()
    for cid in [gone, *kept]:
        engine.send("outcomes", cid, {
            "outcome_id": f"oc-{uuid.uuid4().hex}", "decision_id": decisions[cid]["decision_id"],
            "customer_id": cid, "ts": T0 + 5000, "type": "clicked"})
    settled = engine.collect("delta-metrics", lambda ms: {
        m.get("customer_id") for m in ms if m.get("kind") == "outcome"} >= set(kept))
    assert gone not in {m.get("customer_id") for m in settled}
    letters = engine.collect("dead-letter", lambda ms: any(
        m["source"]["topic"].endswith("outcomes") for m in ms))
    [letter] = [m for m in letters if m["source"]["topic"].endswith("outcomes")]
    assert "unknown decision_id" in letter["reason"]
