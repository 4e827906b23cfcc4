"""A decision whose attribution window closes without an outcome lapses: its timer publishes the
delta and the lesson at once, while the customer's side of it (arms, profile, the decision
settled) is settled when the customer is next read, with no write of its own
(``partition/state.py``). These tests check that this is the same customer an eager write would
have given, that a restart neither repeats nor loses a lapse, and that a late outcome and an
erasure still see the decision as settled."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream_app.core.catalogue import offer_key, parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider
from stream_app.core.delta import outcome_rows
from stream_app.core.feedback import TIMER
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule
from stream_app.partition.state import SETTLED_KEY
from stream_app.simulator import default_engine_config

WINDOW_MS = 3_600_000  # default_engine_config's attribution window
T0 = 1_764_000_000_000
REPLAY = EventTimeRule(max_future_ms=0)  # event time as stamped: no wall clock in the way


@pytest.fixture(scope="module")
def decider() -> Decider:
    return Decider(parse_config(default_engine_config()), seed=3)


def session(store: DictStore, decider: Decider) -> PartitionSession:
    return PartitionSession(0, store, lambda: decider, event_time=REPLAY, epoch=1)


def rec(message: dict) -> InputRecord:
    return InputRecord(message["customer_id"].encode(), orjson.dumps(message), 0, None, "in")


def ask(s: PartitionSession, i: int, cid: str, ts: int) -> dict:
    out = s.process("decision-requests", [rec({
        "request_id": f"r{i}", "customer_id": cid, "ts": ts, "channel": "app",
        "use_case": "default"})])
    return out.decisions[0]


def touch(s: PartitionSession, i: int, cid: str, ts: int):
    return s.process("interactions", [rec({"event_id": f"e{i}", "customer_id": cid, "ts": ts,
                                           "type": "login"})])


def deltas(emitted) -> list[dict]:
    rows = []
    for topic, _, value in emitted.records:
        if topic == "delta-metrics":
            message = orjson.loads(value)
            if message["kind"] == "outcomes":
                rows += outcome_rows(message)
    return rows


def stored(store: DictStore, cid: str) -> CustomerState:
    return CustomerState.decode(store.get("customers", cid.encode()), cid)


def failures(customer: CustomerState, offer_id: str) -> float:
    _, fail = customer.arms.evidence(np.array([offer_key(offer_id)], dtype=np.uint32), 0, None)
    return float(fail[0])


def test_an_expiry_publishes_its_delta_writes_nothing_and_a_read_settles_it(decider):
    store = DictStore()
    a = session(store, decider)
    made = ask(a, 1, "c1", T0)
    assert made["action"] == "offer"
    written = store.get("customers", b"c1")
    fired = touch(a, 1, "c2", T0 + WINDOW_MS + 1)  # another customer moves event time on
    rows = deltas(fired)
    assert [(r["decision_id"], r["outcome_type"]) for r in rows] == \
        [(made["decision_id"], "ignored")]
    # no write for c1: its stored value still holds the decision open
    assert store.get("customers", b"c1") == written
    assert stored(store, "c1").decision(made["decision_id"]).settled_by is None
    assert store.get("customers", SETTLED_KEY) is not None
    # what the session reads is the decision settled, its arm taught once
    live = a._customer("c1")
    assert live.decision(made["decision_id"]).settled_by == TIMER
    assert failures(live, made["offer_id"]) == failures(stored(store, "c1"),
                                                        made["offer_id"]) + 1
    # the same customer as settling it eagerly gives
    before = stored(store, "c1")
    pending = before.decision(made["decision_id"])
    learned = decider.expire(a._evidence(before, pending.segment), before, pending, a.view)
    eager = learned.customer.replace(arms=learned.evidence.customer).with_decision(
        learned.pending)  # written out: what Learned.settled_customer must give
    assert live.encode() == eager.encode()


def test_a_restart_neither_repeats_nor_loses_a_lapse(decider):
    store = DictStore()
    a = session(store, decider)
    first = ask(a, 1, "c1", T0)
    second = ask(a, 2, "c3", T0 + WINDOW_MS // 2)  # open past the first one's window
    assert [r["decision_id"] for r in deltas(touch(a, 1, "c2", T0 + WINDOW_MS + 1))] == \
        [first["decision_id"]]
    b = session(store, decider)  # a restart on the same state
    assert [r["decision_id"] for r in deltas(b.tick(T0 + WINDOW_MS + 2))] == []
    # the lapsed decision reads as settled, once, after the restart too
    c1 = b._customer("c1")
    assert c1.decision(first["decision_id"]).settled_by == TIMER
    assert c1.encode() == a._customer("c1").encode()
    # a later write of the customer stores it settled
    ask(b, 3, "c1", T0 + WINDOW_MS + 5)
    assert stored(store, "c1").decision(first["decision_id"]).settled_by == TIMER
    assert [r["decision_id"] for r in deltas(b.tick(T0 + 2 * WINDOW_MS))] == \
        [second["decision_id"]]
    assert deltas(session(store, decider).tick(T0 + 2 * WINDOW_MS + 1)) == []


def test_a_late_outcome_for_a_lapsed_decision_is_recognised_as_late(decider):
    store = DictStore()
    a = session(store, decider)
    made = ask(a, 1, "c1", T0)
    touch(a, 1, "c2", T0 + WINDOW_MS + 1)
    b = session(store, decider)
    out = b.process("outcomes", [rec({
        "outcome_id": "o1", "decision_id": made["decision_id"], "customer_id": "c1",
        "ts": T0 + WINDOW_MS + 10, "type": "clicked"})])
    rows = deltas(out)
    assert len(rows) == 1 and rows[0]["late"] is True and out.dead_letters == 0


def test_a_request_read_after_its_window_lapses_at_once(decider):
    store = DictStore()
    a = session(store, decider)
    touch(a, 1, "c2", T0 + WINDOW_MS + 1_000)  # event time is on, past r9's window
    out = a.process("decision-requests", [rec({
        "request_id": "r9", "customer_id": "c9", "ts": T0, "channel": "app",
        "use_case": "default"})])
    made = out.decisions[0]
    assert [r["decision_id"] for r in deltas(out)] == [made["decision_id"]]
    b = session(store, decider)  # nothing fires it again
    assert deltas(b.tick(T0 + WINDOW_MS + 2_000)) == []
    assert b._customer("c9").decision(made["decision_id"]).settled_by == TIMER


def test_an_erased_customer_with_a_lapsed_decision_had_no_open_one(decider):
    store = DictStore()
    a = session(store, decider)
    ask(a, 1, "c1", T0)
    touch(a, 1, "c2", T0 + WINDOW_MS + 1)
    b = session(store, decider)
    out = b.erase([rec({"request_id": "x1", "customer_id": "c1", "ts": T0 + WINDOW_MS + 5})])
    audit = [orjson.loads(v) for t, _, v in out.records if t == "erasure-audit"][0]
    assert audit["removed"]["open_decisions"] == 0
    assert audit["removed"]["settled_decisions"] == 1
    assert store.get("customers", b"c1") is None


def test_a_customer_id_with_a_control_character_is_refused(decider):
    store = DictStore()
    a = session(store, decider)
    out = a.process("decision-requests", [rec({
        "request_id": "r1", "customer_id": SETTLED_KEY.decode(), "ts": T0, "channel": "app",
        "use_case": "default"})])
    assert out.dead_letters == 1 and not out.decisions
    assert store.get("customers", SETTLED_KEY) is None
