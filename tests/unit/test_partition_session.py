"""The partition engine without Kafka: the whole flow of a partition through ``PartitionSession``
(decisions, outcomes, timers, duplicates, dead letters, restarts, batches), on a ``DictStore``."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.bench import core as core_bench_module
from stream_app.core.arms import Arms
from stream_app.core.catalogue import parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, decision_id_for
from stream_app.core.delta import outcome_rows
from stream_app.evaluation import engine_agent
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.session import default_contract
from stream_app.partition.state import PartitionState
from stream_app.fleet import POPULATION_KEY
from stream_app.simulator import default_engine_config
from stream_app.worker import app as worker_app

T0 = 1_764_000_000_000
WINDOW_MS = 3_600_000  # default_engine_config's attribution window


@pytest.fixture(scope="module")
def decider() -> Decider:
    return Decider(parse_config(default_engine_config()), seed=3)


def session_on(store: DictStore, decider: Decider | None, partition: int = 0) -> PartitionSession:
    return PartitionSession(partition, store, lambda: decider, seed=3)


def rec(message: dict, key: str | None = None, offset: int = 0) -> InputRecord:
    return InputRecord((key or message["customer_id"]).encode(), orjson.dumps(message), offset,
                       None, "topic-in")


def request(i: int, cid: str = "c1", ts: int = T0) -> dict:
    return {"request_id": f"r{i}", "customer_id": cid, "ts": ts, "channel": "app",
            "use_case": "default"}


def outcome(i: int, decision_id: str, cid: str = "c1", ts: int = T0 + 1000,
            kind: str = "clicked") -> dict:
    return {"outcome_id": f"o{i}", "decision_id": decision_id, "customer_id": cid, "ts": ts,
            "type": kind}


def interaction(i: int, cid: str = "c1", ts: int = T0) -> dict:
    return {"event_id": f"e{i}", "customer_id": cid, "ts": ts, "type": "transaction",
            "channel": "app", "amount": 20.0, "category": "groceries", "merchant": "M"}


def deltas(emitted) -> list[dict]:
    """The delta-metrics records sent, a batch of outcome deltas read as its rows."""
    out = []
    for t, _, v in emitted.records:
        if t == "delta-metrics":
            m = orjson.loads(v)
            out += outcome_rows(m) if m["kind"] == "outcomes" else [m]
    return out


def letters(emitted) -> list[dict]:
    return [orjson.loads(v) for t, _, v in emitted.records if t == "dead-letter"]


def population_arms(session: PartitionSession) -> tuple[float, float]:
    """The population's evidence as the session reads it (its own lessons: no snapshot)."""
    a, b = session.view.pooled(POPULATION_KEY).evidence(
        parse_config(default_engine_config()).offer_keys, T0, None)
    return float(a.sum()), float(b.sum())


def test_a_request_is_answered_once_and_its_redelivery_gets_nothing(decider):
    session = session_on(DictStore(), decider)
    first = session.process("decision-requests", [rec(request(1))])
    assert [t for t, _, _ in first.records] == ["decisions"]
    decision = orjson.loads(first.records[0][2])
    assert decision == first.decisions[0]
    assert decision["action"] == "offer" and 0 < decision["propensity"] <= 1
    assert decision["decision_id"] == decision_id_for("r1")
    again = session.process("decision-requests", [rec(request(1))])
    assert again.records == [] and again.duplicates == 1


def test_an_outcome_is_learned_once_and_a_stranger_is_dead_lettered(decider):
    store = DictStore()
    session = session_on(store, decider)
    did = session.process("decision-requests", [rec(request(1))]).decisions[0]["decision_id"]
    learned = session.process("outcomes", [rec(outcome(1, did))])
    [delta] = deltas(learned)
    assert delta["kind"] == "outcome" and delta["actual"] == 1.0 and delta["decision_id"] == did
    assert population_arms(session) == (1.0, 0.0)  # one success, no failure
    redelivered = session.process("outcomes", [rec(outcome(1, did))])
    assert redelivered.records == [] and redelivered.duplicates == 1
    assert population_arms(session) == (1.0, 0.0)
    unknown = session.process("outcomes", [rec(outcome(2, "dc-nope"))])
    assert "unknown decision_id" in letters(unknown)[0]["reason"]
    other = session.process("outcomes", [rec(outcome(3, did, cid="c2"))])  # not c2's decision
    assert "unknown decision_id" in letters(other)[0]["reason"]


def test_an_ignored_offer_is_settled_by_its_timer_exactly_once(decider):
    store = DictStore()
    session = session_on(store, decider)
    session.process("decision-requests", [rec(request(1))])
    early = session.tick(T0 + WINDOW_MS - 1).records  # still inside its window: nothing
    assert [t for t, _, v in early if t != "learning" or orjson.loads(v)["lessons"]] == []
    fired = [d for d in deltas(session.tick(T0 + WINDOW_MS)) if d["kind"] == "outcome"]
    assert [(d["kind"], d["ignored"], d["actual"]) for d in fired] == [("outcome", True, 0.0)]
    assert population_arms(session) == (0.0, 1.0)
    late = session.process("outcomes", [rec(outcome(1, decision_id_for("r1"),
                                                    ts=T0 + WINDOW_MS + 5))])
    assert [d["late"] for d in deltas(late)] == [True]  # recognised as late, not learned
    assert population_arms(session) == (0.0, 1.0)
    later = session.tick(T0 + 3 * WINDOW_MS)
    assert [d for d in deltas(later) if d["kind"] == "outcome"] == []  # never settled again
    forgotten = session.process("outcomes", [rec(outcome(2, decision_id_for("r1"),
                                                         ts=T0 + 3 * WINDOW_MS))])
    assert "unknown decision_id" in letters(forgotten)[0]["reason"]  # its grace period is over
    session.process("interactions", [rec(interaction(9, ts=T0 + 3 * WINDOW_MS))])
    # dropped from the customer's value at its next write
    assert CustomerState.decode(store.get("customers", b"c1"), "c1").decisions == ()


def test_bad_input_is_dead_lettered_with_its_reason_and_the_batch_goes_on(decider):
    session = session_on(DictStore(), decider)
    emitted = session.process("decision-requests", [
        InputRecord(b"c1", b"not json", 7, 5, "topic-in"),
        rec(request(1), key="someone-else", offset=8),
        rec(request(2), offset=9),
    ])
    bad = letters(emitted)
    assert [b["source"]["offset"] for b in bad] == [7, 8]
    assert "co-partitioning" in bad[1]["reason"]
    assert [d["request_id"] for d in emitted.decisions] == ["r2"]
    assert emitted.dead_letters == 2


def test_without_a_config_every_record_is_dead_lettered():
    emitted = session_on(DictStore(), None).process("interactions", [rec(interaction(1))])
    assert "no engine config" in letters(emitted)[0]["reason"]


def test_an_interaction_is_applied_once(decider):
    store = DictStore()
    session = session_on(store, decider)
    session.process("interactions", [rec(interaction(1))])
    events = CustomerState.decode(store.get("customers", b"c1"), "c1").profile.n_events
    again = session.process("interactions", [rec(interaction(1))])
    assert again.duplicates == 1
    assert CustomerState.decode(store.get("customers", b"c1"), "c1").profile.n_events == events


def test_a_new_session_on_the_same_store_resumes_its_timers(decider):
    store = DictStore()
    before = session_on(store, decider)
    d1 = before.process("decision-requests", [rec(request(1))]).decisions[0]["decision_id"]
    before.process("decision-requests", [rec(request(2, cid="c2"))])
    before.process("interactions", [rec(interaction(1))])
    after = session_on(store, decider)  # a restart, or the partition's next owner
    joined = deltas(after.process("outcomes", [rec(outcome(1, d1))]))
    assert [d["decision_id"] for d in joined] == [d1]
    fired = deltas(after.tick(T0 + WINDOW_MS))  # c2's decision: its timer was rebuilt
    assert [(d["customer_id"], d["ignored"]) for d in fired if d["kind"] == "outcome"] == [
        ("c2", True)]


def messages(n_customers: int, rounds: int) -> list[tuple[str, dict]]:
    """Rounds of interactions, then requests, then outcomes of some of the round's decisions
    (a customer appears several times per round), in event-time order."""
    out: list[tuple[str, dict]] = []
    i = 0
    for r in range(rounds):
        ts = T0 + r * 10_000
        who = [f"c{(r + k) % n_customers}" for k in range(6)]
        out += [("interactions", interaction(i + k, cid, ts + k)) for k, cid in enumerate(who)]
        out += [("decision-requests", request(i + k, cid, ts + 10 + k))
                for k, cid in enumerate(who)]
        out += [("outcomes", outcome(i + k, decision_id_for(f"r{i + k}"), cid, ts + 500 + k))
                for k, cid in enumerate(who) if k % 2 == 0]
        i += len(who)
    return out


def run_in_batches(decider: Decider, msgs: list[tuple[str, dict]], sizes: list[int],
                   publish_every: int | None = None) -> tuple[dict, dict]:
    """Hand the messages over in runs of one source, each cut into batches of the given sizes
    (cycled); the records sent per (topic, kind), in order (outcome deltas and lessons as their
    rows, wall-clock fields aside), and the final tables. ``publish_every``: deltas and lessons
    published every that many batches (as the worker does per commit), not with each batch."""
    store = DictStore()
    session = PartitionSession(0, store, lambda: decider, seed=3,
                               publish_per_batch=publish_every is None)
    sent: dict[tuple[str, str | None], list[bytes]] = {}
    i = k = 0
    while i < len(msgs):
        source = msgs[i][0]
        j = i
        while j < len(msgs) and msgs[j][0] == source and j - i < sizes[k % len(sizes)]:
            j += 1
        k += 1
        records = session.process(source, [rec(m) for _, m in msgs[i:j]]).records
        if publish_every is not None and (k % publish_every == 0 or j == len(msgs)):
            records += session.publish().records
        for topic, key, value in records:
            doc = orjson.loads(value)
            rows = outcome_rows(doc) if doc.get("kind") == "outcomes" else \
                doc["lessons"] if doc.get("kind") == "lessons" else [doc]
            for row in rows:
                row.pop("latency_ms", None)  # wall-clock times: not the engine's output
                row.pop("failed_at", None)
                sent.setdefault((topic, row.get("kind")), []).append(
                    orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
        i = j
    return sent, {t: dict(rows) for t, rows in store.tables.items()}


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=5))
def test_a_batched_partition_equals_the_one_at_a_time_partition(decider, sizes):
    # consecutive messages of one source form the worker's batches: a batch of several
    # requests must decide, store and send exactly what they would one at a time
    msgs = messages(4, 6)
    one_by_one = run_in_batches(decider, msgs, [1])
    assert sum(map(len, one_by_one[0].values())) > 40
    assert run_in_batches(decider, msgs, sizes) == one_by_one


def test_deltas_and_lessons_published_per_commit_are_those_published_per_batch(decider):
    # the worker publishes a partition's outcome deltas and lessons once per commit: the same
    # rows in the same order, in fewer records
    msgs = messages(4, 6)
    per_batch = run_in_batches(decider, msgs, [2])
    assert per_batch[0][("delta-metrics", "outcome")] and per_batch[0][("learning", None)]
    assert run_in_batches(decider, msgs, [2], publish_every=5) == per_batch
    session = PartitionSession(0, DictStore(), lambda: decider, seed=3, publish_per_batch=False)
    decided = session.process("decision-requests", [rec(request(i, cid=f"c{i}"))
                                                    for i in range(4)])
    learned = [session.process("outcomes", [rec(outcome(i, d["decision_id"],
                                                        cid=d["customer_id"]))])
               for i, d in enumerate(decided.decisions)]
    assert all(not e.records for e in learned)  # held until published
    published = session.publish().records
    assert [(t, k) for t, k, _ in published] == [("delta-metrics", b"outcomes"),
                                                 ("learning", b"p0")]
    assert len(orjson.loads(published[0][2])["outcomes"]) == 4
    assert session.publish().records == []


def test_customers_kept_decoded_between_batches_change_nothing(decider, monkeypatch):
    # a customer read again is the decoded copy of the value the partition wrote: the same
    # partition decoding every customer from the store sends and stores exactly the same
    decoded = []
    decode = CustomerState.decode
    monkeypatch.setattr(CustomerState, "decode",
                        staticmethod(lambda *a, **k: decoded.append(1) or decode(*a, **k)))
    msgs = messages(4, 6)
    kept = run_in_batches(decider, msgs, [1])
    decoded_with_kept = len(decoded)
    decoded.clear()
    monkeypatch.setattr(PartitionState, "_keep_decoded", lambda self: None)
    assert run_in_batches(decider, msgs, [1]) == kept
    assert decoded_with_kept < len(decoded) / 2


def test_the_worker_and_both_benchmarks_drive_the_same_partition_class(decider):
    # one orchestration: the worker's agents, the core bench and the learning benchmark's
    # agent all hand their records to PartitionSession; nothing else calls the decision core
    assert worker_app.PartitionSession is PartitionSession
    assert core_bench_module.PartitionSession is PartitionSession
    agent = engine_agent.EngineAgent(default_engine_config(), seed=3)
    assert [type(s) for s in agent.sessions] == [PartitionSession]
    # and the agent's decisions are the session's own for the same messages
    direct = session_on(DictStore(), agent.decider)
    for i in range(5):
        req = request(i, cid=f"c{i % 2}", ts=T0 + i)
        offer, propensity = agent.act(req, (), None)
        decision = direct.process("decision-requests", [rec(req)]).decisions[0]
        assert (offer, propensity) == (decision["offer_id"], decision["propensity"])
    for module in (worker_app, core_bench_module, engine_agent):
        source = open(module.__file__).read()
        assert ".decide(" not in source and "decider.learn(" not in source


def test_the_outcome_deltas_of_a_batch_are_one_record(decider):
    session = session_on(DictStore(), decider)
    decided = session.process("decision-requests", [rec(request(i, cid=f"c{i}")) for i in range(5)])
    emitted = session.process("outcomes", [rec(outcome(i, d["decision_id"], cid=d["customer_id"]))
                                           for i, d in enumerate(decided.decisions)])
    [(topic, key, value), (learning, source, lessons)] = emitted.records
    record = orjson.loads(value)
    assert (topic, key, record["kind"], record["partition"]) == (
        "delta-metrics", b"outcomes", "outcomes", 0)
    assert [r["decision_id"] for r in record["outcomes"]] == [
        d["decision_id"] for d in decided.decisions]
    default_contract().validate("delta-metrics", record)
    # and what the fleet must learn from them is one learning record too
    taught = default_contract().decode("learning", lessons)
    assert (learning, source, [lesson["k"] for lesson in taught["lessons"]]) == (
        "learning", b"p0", ["o"] * 5)


def test_a_state_that_cannot_be_stored_fails_its_record_not_the_batch(decider, monkeypatch):
    # e.g. a customer past what the codec can hold: the record that made the state is
    # dead-lettered, the rest of the batch is decided and stored
    encode = CustomerState.encode

    def failing(self):
        if any(p.customer_id == "c-bad" for p in self.decisions):
            raise ValueError("too many open decisions for one customer value")
        return encode(self)

    monkeypatch.setattr(CustomerState, "encode", failing)
    store = DictStore()
    emitted = session_on(store, decider).process("decision-requests", [
        rec(request(1, cid="c1")), rec(request(2, cid="c-bad")), rec(request(3, cid="c2"))])
    assert [d["customer_id"] for d in emitted.decisions] == ["c1", "c2"]
    [letter] = letters(emitted)
    assert "too many open decisions" in letter["reason"]
    assert sorted(store.tables["customers"]) == [b"c1", b"c2"]


def test_an_outcome_that_itself_moves_time_past_the_grace_period_is_late_not_refused(decider):
    # time compression, or an outcome lagging behind: its own timestamp is past its decision's
    # grace period; the decision is settled as ignored first, then the outcome is reported late
    session = session_on(DictStore(), decider)
    did = session.process("decision-requests", [rec(request(1))]).decisions[0]["decision_id"]
    late_ts = T0 + 2 * WINDOW_MS + 1
    rows = [d for d in deltas(session.process("outcomes", [rec(outcome(1, did, ts=late_ts))]))
            if d["kind"] == "outcome"]
    assert [(d["ignored"], d["late"]) for d in rows] == [(True, False), (False, True)]
    # once event time had passed it before an outcome arrived, the decision is forgotten
    again = session.process("outcomes", [rec(outcome(2, did, ts=late_ts + 1))])
    assert "unknown decision_id" in letters(again)[0]["reason"]


def test_customers_are_split_over_partitions_as_the_kafka_clients_split_them():
    import random

    from aiokafka.partitioner import DefaultPartitioner, murmur2

    from stream_app.partition.keys import murmur2 as ours
    from stream_app.partition.keys import partition_of

    rng = random.Random(5)
    partitioner = DefaultPartitioner()
    for n in range(2000):
        key = bytes(rng.randrange(256) for _ in range(n % 41))
        assert ours(key) == murmur2(key)
    for i in range(500):
        cid = f"cust-{i}"
        parts = list(range(1 + i % 16))
        assert partition_of(cid, len(parts)) == partitioner(cid.encode(), parts, parts)
