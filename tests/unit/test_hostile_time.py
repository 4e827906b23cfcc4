"""Hostile time: no single record moves a partition's event time far ahead, outcomes that lag
behind requests are not settled as ignored, idle partitions still fire their timers
(``partition/clock.py``). Driven through ``PartitionSession`` on a ``DictStore``; the cases that
need no fake clock run against the real wall clock, with traffic stamped around now."""

from __future__ import annotations

import time

import orjson
import pytest

from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider
from stream_app.core.delta import outcome_rows
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule, PartitionClock
from stream_app.schemas import Contract, InvalidMessage
from stream_app.simulator import default_engine_config

WINDOW_MS = 3_600_000  # default_engine_config's attribution window
YEAR_2100 = 4_118_000_000_000  # 2100-06-30


@pytest.fixture(scope="module")
def decider() -> Decider:
    return Decider(parse_config(default_engine_config()), seed=5)


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeWall:
    """A wall clock the test moves."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at


def rec(message: dict, kafka_ts: int | None = None, offset: int = 0) -> InputRecord:
    return InputRecord(message["customer_id"].encode(), orjson.dumps(message), offset, kafka_ts,
                       "in")


def request(i: int, ts: int, cid: str | None = None) -> dict:
    return {"request_id": f"r{i}", "customer_id": cid or f"c{i}", "ts": ts, "channel": "app",
            "use_case": "default"}


def outcome(i: int, decision: dict, ts: int) -> dict:
    return {"outcome_id": f"o{i}", "decision_id": decision["decision_id"],
            "customer_id": decision["customer_id"], "ts": ts, "type": "clicked"}


def interaction(i: int, ts: int, cid: str = "h1") -> dict:
    return {"event_id": f"e{i}", "customer_id": cid, "ts": ts, "type": "login"}


def settled(emitted) -> list[dict]:
    """The outcome deltas a batch published (its ``outcomes`` records read as rows)."""
    out = []
    for topic, _, value in emitted.records:
        if topic == "delta-metrics":
            message = orjson.loads(value)
            if message["kind"] in ("outcome", "outcomes"):
                out += outcome_rows(message)
    return out


def letters(emitted) -> list[dict]:
    return [orjson.loads(v) for t, _, v in emitted.records if t == "dead-letter"]


def offers(session: PartitionSession, start: int, n: int, ts: int) -> list[dict]:
    made = session.process("decision-requests",
                           [rec(request(start + i, ts)) for i in range(n)]).decisions
    assert [d["action"] for d in made] == ["offer"] * n
    return made


# -- one record stamped far ahead ------------------------------------------------------------
def test_an_interaction_stamped_in_2100_is_refused_and_settles_nothing(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    t0 = now_ms() - WINDOW_MS // 2  # decisions whose windows are still open now
    made = offers(session, 0, 5, t0)
    hostile = session.process("interactions", [rec(interaction(1, YEAR_2100))])
    assert len(letters(hostile)) == 1 and settled(hostile) == []
    # every decision is still open: an outcome inside its window is learned as a response
    answered = session.process("outcomes", [rec(outcome(i, d, t0 + 1000))
                                            for i, d in enumerate(made)])
    rows = settled(answered)
    assert [(r["actual"], r["ignored"], r["late"]) for r in rows] == [(1.0, False, False)] * 5
    # and a later decision does not expire at the next event
    later = offers(session, 10, 1, t0 + 2000)[0]
    after = session.process("interactions", [rec(interaction(2, t0 + 3000, cid="c10"))])
    assert settled(after) == []
    assert later["decision_id"] not in {r["decision_id"] for r in settled(after)}


def test_a_timestamp_of_1e300_does_not_pass_the_schema():
    contract = Contract.load()
    for raw in (b'{"event_id":"e","customer_id":"c","ts":1e300,"type":"login"}',
                b'{"event_id":"e","customer_id":"c","ts":4102444800000,"type":"login"}',
                b'{"event_id":"e","customer_id":"c","ts":1764000000000.5,"type":"login"}'):
        with pytest.raises(InvalidMessage, match="ts"):
            contract.decode("interactions", raw)
    # an integral float is an integer to JSON Schema: taken as one
    ok = contract.decode("interactions",
                         b'{"event_id":"e","customer_id":"c","ts":1.764e12,"type":"login"}')
    assert ok["ts"] == 1_764_000_000_000 and type(ok["ts"]) is int


def test_a_record_a_day_ahead_of_the_wall_clock_is_dead_lettered_with_the_reason(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    t0 = now_ms() - WINDOW_MS // 2
    made = offers(session, 0, 3, t0)
    ahead = session.process("interactions", [rec(interaction(1, now_ms() + 86_400_000))])
    [letter] = letters(ahead)
    assert "ahead of the wall clock" in letter["reason"]
    rows = settled(session.process("outcomes", [rec(outcome(0, made[0], t0 + 500))]))
    assert [(r["actual"], r["late"]) for r in rows] == [(1.0, False)]


def test_a_record_stamped_just_ahead_never_settles_a_decision_before_real_time(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    now = now_ms()
    decided_at = now - WINDOW_MS + 20_000  # its window ends 20 s from now
    [made] = offers(session, 0, 1, decided_at)
    # stamped 2 minutes ahead: within the allowed skew, so processed, but time stops at now
    ahead = session.process("interactions", [rec(interaction(1, now + 120_000))])
    assert letters(ahead) == [] and settled(ahead) == []
    rows = settled(session.process("outcomes", [rec(outcome(0, made, now + 1_000))]))
    assert [(r["actual"], r["ignored"], r["late"]) for r in rows] == [(1.0, False, False)]


def test_a_strangers_outcome_is_refused_before_it_moves_event_time(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    t0 = now_ms() - 3 * WINDOW_MS
    [made] = offers(session, 0, 1, t0)  # its window ended two hours ago, in real time
    forged = {"outcome_id": "x1", "decision_id": "dc-forged", "customer_id": "h1",
              "ts": now_ms() - 60_000, "type": "clicked"}
    refused = session.process("outcomes", [rec(forged)])
    assert "unknown decision_id" in letters(refused)[0]["reason"] and settled(refused) == []
    rows = settled(session.process("outcomes", [rec(outcome(0, made, t0 + 60_000))]))
    assert [(r["actual"], r["ignored"], r["late"]) for r in rows] == [(1.0, False, False)]


# -- outcomes that lag behind requests -------------------------------------------------------
def test_outcomes_read_late_after_downtime_are_learned_not_settled_as_ignored(decider):
    """Catch-up after downtime: the requests agent reads its backlog first. An outcome inside
    its decision's window, still in the outcomes backlog, must settle the decision."""
    session = PartitionSession(0, DictStore(), lambda: decider)
    now = now_ms()
    t0 = now - 3 * WINDOW_MS
    [made] = offers(session, 0, 1, t0)  # read live
    # the worker was down for hours; on restart the requests backlog is read first:
    backlog = [rec(request(100 + i, t0 + WINDOW_MS + i * 60_000), kafka_ts=t0 + WINDOW_MS + i)
               for i in range(5)]
    first = session.process("decision-requests", backlog)
    assert settled(first) == []  # the outcomes are behind: no timer fires yet
    late_read = outcome(0, made, t0 + WINDOW_MS // 2)  # inside the window, read 2.5 h late
    rows = settled(session.process("outcomes", [rec(late_read, kafka_ts=t0 + WINDOW_MS // 2)]))
    assert [(r["decision_id"], r["actual"], r["ignored"], r["late"]) for r in rows] == [
        (made["decision_id"], 1.0, False, False)]


def test_a_new_session_catching_up_waits_for_its_outcomes_before_any_timer():
    wall = FakeWall(10_000_000)
    rule = EventTimeRule(max_future_ms=300_000, lag_ms=5_000, idle_ms=10_000, wall_ms=wall)
    clock = PartitionClock(rule=rule)
    from stream_app.core.feedback import PendingDecision

    clock.schedule(PendingDecision("dc-1", "c1", "o1", "default", "thompson", "all", 0.1, 0.5,
                                   1_000_000, 2_000_000))
    lagging = [InputRecord(b"c2", b"", 0, 3_000_000, "in")]  # read 7,000 s after it was written
    clock.reading("decision-requests", lagging)
    assert clock.advance(3_000_000) == []  # no outcome read yet: nothing fires
    clock.reading("outcomes", [InputRecord(b"c1", b"", 0, 1_500_000, "in")])
    assert clock.advance(1_500_000) == []  # the outcomes have reached 1,500,000 only
    clock.reading("outcomes", [InputRecord(b"c1", b"", 1, 2_100_000, "in")])
    assert clock.advance(2_100_000) == [("c1", "dc-1")]  # now they passed the window's end


def test_an_idle_outcomes_topic_holds_nothing_back_for_long():
    wall = FakeWall(10_000_000)
    rule = EventTimeRule(max_future_ms=300_000, lag_ms=5_000, idle_ms=10_000, wall_ms=wall)
    clock = PartitionClock(rule=rule)
    from stream_app.core.feedback import PendingDecision

    clock.schedule(PendingDecision("dc-1", "c1", "o1", "default", "thompson", "all", 0.1, 0.5,
                                   1_000_000, 2_000_000))
    clock.reading("decision-requests", [InputRecord(b"c2", b"", 0, 3_000_000, "in")])
    assert clock.advance(3_000_000) == []
    wall.at += 10_000  # no outcome in 10 s of wall time: the outcomes topic is idle
    clock.reading("decision-requests", [InputRecord(b"c2", b"", 1, 3_000_100, "in")])
    assert clock.advance(3_000_100) == [("c1", "dc-1")]


def test_outcomes_read_on_time_do_not_hold_the_timers(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    now = now_ms()
    t0 = now - 3 * WINDOW_MS
    [made] = offers(session, 0, 1, t0)
    session.process("outcomes", [rec(outcome(9, {"decision_id": "dc-x", "customer_id": "c0"},
                                             t0 + 10), kafka_ts=now)])  # read on time
    fired = settled(session.process("decision-requests",
                                    [rec(request(50, t0 + WINDOW_MS), kafka_ts=now)]))
    assert [(r["decision_id"], r["ignored"]) for r in fired] == [(made["decision_id"], True)]


# -- idle partitions -------------------------------------------------------------------------
def test_an_idle_partition_fires_its_timers_as_the_wall_clock_moves(decider):
    start = 1_800_000_000_000
    wall = FakeWall(start)
    rule = EventTimeRule(max_future_ms=300_000, lag_ms=5_000, idle_ms=10_000, wall_ms=wall)
    session = PartitionSession(0, DictStore(), lambda: decider, event_time=rule)
    [made] = offers(session, 0, 1, start)
    wall.at = start + 5_000
    assert session.tick_idle() is None  # not idle yet
    wall.at = start + WINDOW_MS - 1
    assert settled(session.tick_idle()) == []  # idle, but the window is still open
    wall.at = start + WINDOW_MS
    rows = settled(session.tick_idle())
    assert [(r["decision_id"], r["ignored"]) for r in rows] == [(made["decision_id"], True)]
    wall.at = start + 2 * WINDOW_MS
    assert settled(session.tick_idle()) == []  # settled once


def test_a_restarted_partition_that_reads_nothing_still_fires_its_timers(decider):
    start = 1_800_000_000_000
    wall = FakeWall(start)
    rule = EventTimeRule(max_future_ms=300_000, lag_ms=5_000, idle_ms=10_000, wall_ms=wall)
    store = DictStore()
    [made] = offers(PartitionSession(0, store, lambda: decider, event_time=rule), 0, 1, start)
    wall.at = start + 2 * WINDOW_MS  # the worker was down past the window's end
    restarted = PartitionSession(0, store, lambda: decider, event_time=rule)  # reads nothing
    assert restarted.tick_idle() is None  # just started: not idle yet
    # event time resumes from the latest decision, and moves with the wall clock from there
    wall.at += WINDOW_MS - 1
    assert settled(restarted.tick_idle()) == []
    wall.at += 1
    rows = settled(restarted.tick_idle())
    assert [(r["decision_id"], r["ignored"]) for r in rows] == [(made["decision_id"], True)]
    assert settled(restarted.tick_idle()) == []  # settled once
    # a partition whose state holds no decision has no event time to resume from
    wall.at += 2 * WINDOW_MS
    assert PartitionSession(1, DictStore(), lambda: decider, event_time=rule).tick_idle() is None


def test_the_timers_can_be_rebuilt_in_steps(decider):
    start = 1_800_000_000_000
    wall = FakeWall(start)
    rule = EventTimeRule(max_future_ms=300_000, lag_ms=5_000, idle_ms=10_000, wall_ms=wall)
    store = DictStore()
    made = offers(PartitionSession(0, store, lambda: decider, event_time=rule), 0, 5, start)
    stepped = PartitionSession(0, store, lambda: decider, event_time=rule)
    steps = stepped.rebuild_clock(chunk=2)
    next(steps)  # two customers read, the clock not in place yet
    assert stepped._clock is None
    assert sum(1 for _ in steps) == 1  # four read; the fifth ends it
    wall.at = start + WINDOW_MS + 10_000
    rows = settled(stepped.tick_idle())
    assert sorted(r["decision_id"] for r in rows) == sorted(d["decision_id"] for d in made)
    # the timers come from each value's decisions and profile alone
    from stream_app.core.customer import CustomerState

    from stream_app.partition.state import SETTLED_KEY
    from stream_app.profile import ProfileClocks

    for key, raw in store.items("customers"):
        if key == SETTLED_KEY:
            continue
        full = CustomerState.decode(raw, key.decode())
        decisions, clocks = CustomerState.timers_of(raw, key.decode())
        assert decisions == full.decisions and clocks == ProfileClocks.of(full.profile)
    # a use of the clock during a stepped rebuild finishes it at once
    halfway = PartitionSession(0, store, lambda: decider, event_time=rule)
    next(halfway.rebuild_clock(chunk=2))
    assert halfway.clock is not None and list(halfway.rebuild_clock()) == []


def test_the_event_time_rule_comes_from_the_settings():
    from stream_app.settings import Settings

    s = Settings.from_env({"STREAM_APP_MAX_FUTURE_S": "60", "STREAM_APP_LAG_TOLERANCE_S": "2",
                           "STREAM_APP_IDLE_AFTER_S": "30"})
    rule = EventTimeRule.of(s)
    assert (rule.max_future_ms, rule.lag_ms, rule.idle_ms) == (60_000, 2_000, 30_000)
    d = EventTimeRule.default()
    assert (d.max_future_ms, d.lag_ms, d.idle_ms) == (300_000, 5_000, 10_000)


def test_without_a_wall_clock_bound_a_replay_dated_ahead_is_taken_as_it_is(decider):
    wall = FakeWall(1_000_000_000_000)  # the machine's clock is behind the replayed data
    rule = EventTimeRule(max_future_ms=0, wall_ms=wall)
    session = PartitionSession(0, DictStore(), lambda: decider, event_time=rule)
    t0 = 1_900_000_000_000
    [made] = offers(session, 0, 1, t0)
    rows = settled(session.process("interactions", [rec(interaction(1, t0 + WINDOW_MS))]))
    assert [(r["decision_id"], r["ignored"]) for r in rows] == [(made["decision_id"], True)]
