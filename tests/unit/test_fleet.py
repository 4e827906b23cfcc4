"""Fleet-wide learning without Kafka: partitions teach lessons, one learner merges them,
every partition reads its snapshots (``stream_app/fleet``)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider
from stream_app.core.population import PopulationState
from stream_app.fleet import POPULATION_KEY, FleetSnapshot, FleetView, segment_key
from stream_app.fleet.learner import FleetLearner
from stream_app.fleet.local import LocalFleet
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.session import default_contract
from stream_app.simulator import default_engine_config

T0 = 1_764_000_000_000
LIGHT = SuiteConfig(classifiers=("logreg",), propensity_classifiers=("logreg",),
                    regressors=("mean",))


@pytest.fixture(scope="module")
def decider() -> Decider:
    doc = default_engine_config()
    doc["use_cases"][0].update(policy="linear_thompson", half_life_s=86_400.0,
                               rules={"fatigue": {"same_offer_s": 0}})
    return Decider(parse_config(doc), seed=3)


def rec(message: dict) -> InputRecord:
    return InputRecord(message["customer_id"].encode(), orjson.dumps(message))


def traffic(n_customers: int, rounds: int, seed: int = 0):
    """Interactions, requests and (some) outcomes of ``n_customers`` over ``rounds`` rounds."""
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        ts = T0 + r * 60_000
        for c in range(n_customers):
            cid = f"c{c}"
            yield "interactions", {
                "event_id": f"e{r}-{c}", "customer_id": cid, "ts": ts + c, "type": "transaction",
                "channel": "app", "amount": float(5 + 40 * (c % 3) + rng.integers(10)),
                "category": ("groceries", "travel", "dining")[c % 3], "merchant": "m"}
            if (r + c) % 3 == 0:
                yield "decision-requests", {"request_id": f"r{r}-{c}", "customer_id": cid,
                                            "ts": ts + c + 1, "channel": "app",
                                            "use_case": "default"}


def run(decider: Decider, partitions: int, n_customers: int = 24, rounds: int = 30,
        snapshot_every_ms: int = 60_000) -> tuple[LocalFleet, list[PartitionSession], list]:
    """The traffic through ``partitions`` sessions and an in-process learner; every offer is
    clicked when the customer's id is even, else ignored (settled by its timer)."""
    from stream_app.partition.keys import partition_of

    fleet = LocalFleet(lambda: decider, population=PopulationState(ModelSuite(LIGHT)),
                       snapshot_every_ms=snapshot_every_ms)
    sessions = [PartitionSession(p, DictStore(), lambda: decider, fleet=fleet, epoch=1)
                for p in range(partitions)]
    records = []
    for source, message in traffic(n_customers, rounds):
        session = sessions[partition_of(message["customer_id"], partitions)]
        out = session.process(source, [rec(message)])
        records += [r for r in out.records if r[0] == "learning"]
        fleet.take(out.records)
        for d in out.decisions:
            if d["action"] == "offer" and int(d["customer_id"][1:]) % 2 == 0:
                o = {"outcome_id": f"o-{d['request_id']}", "decision_id": d["decision_id"],
                     "customer_id": d["customer_id"], "ts": d["ts"] + 500, "type": "clicked"}
                out = session.process("outcomes", [rec(o)])
                records += [r for r in out.records if r[0] == "learning"]
                fleet.take(out.records)
    end = T0 + (rounds + 120) * 60_000  # every attribution window closed
    for session in sessions:
        out = session.tick(end)
        records += [r for r in out.records if r[0] == "learning"]
        fleet.take(out.records)
    return fleet, sessions, records


def evidence(arms, decider: Decider) -> np.ndarray:
    s, f = arms.evidence(decider.config.offer_keys, T0, None)
    return np.stack([s, f])


def test_learning_records_match_their_schema_and_are_numbered_per_source(decider):
    _, _, records = run(decider, 2, rounds=6)
    seen: dict[bytes, list[int]] = {}
    for _, key, value in records:
        doc = default_contract().decode("learning", value)
        assert doc["source"].encode() == key
        seen.setdefault(key, []).append(doc["seq"])
    assert set(seen) == {b"p0", b"p1"}
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in seen.values())


def test_every_partition_learns_from_the_whole_fleet():
    doc = default_engine_config()  # no forgetting: evidence is a plain count
    doc["use_cases"][0].update(policy="linear_thompson", rules={"fatigue": {"same_offer_s": 0}})
    decider = Decider(parse_config(doc), seed=3)
    fleet, sessions, records = run(decider, 4)
    settled = [lesson for _, _, v in records for lesson in orjson.loads(v)["lessons"]
               if lesson["k"] == "o"]
    clicks = sum(lesson["r"] for lesson in settled)
    assert {orjson.loads(v)["source"] for _, _, v in records} == {"p0", "p1", "p2", "p3"}
    population = fleet.learner.population
    # the pooled evidence counts every settled decision of every partition, once
    succ, fail = evidence(population.arms[POPULATION_KEY], decider)
    assert (succ.sum(), fail.sum()) == pytest.approx((clicks, len(settled) - clicks))
    assert len(settled) > 50 and 0 < clicks < len(settled)
    # so do the contextual arms
    assert sum(population.linear["default"]._updates) == len(settled)
    # and every partition reads the whole fleet's evidence (its own lessons since the
    # snapshot on top, never twice)
    fleet.publish()
    for session in sessions:
        session.tick(T0 + 10**9)  # reads the new snapshot
        np.testing.assert_allclose(evidence(session.view.pooled(POPULATION_KEY), decider),
                                   evidence(population.arms[POPULATION_KEY], decider))


def test_the_same_history_gets_the_same_segment_on_any_partition(decider):
    fleet, _, _ = run(decider, 4, n_customers=140, rounds=11)  # the segmenter starts after
    # 125 customers reached their 10th interaction
    fleet.publish()
    assert fleet.latest.population.suite.segmenter.initialised
    history = [{"event_id": f"n{i}", "customer_id": "newcomer", "ts": T0 + 10**8 + i * 1000,
                "type": "transaction", "channel": "app", "amount": 60.0 + i,
                "category": "travel", "merchant": "m"} for i in range(12)]
    segments = set()
    for p in range(4):
        session = PartitionSession(p, DictStore(), lambda: decider, fleet=fleet, epoch=2)
        for event in history:
            session.process("interactions", [rec(event)])
        from stream_app.core.customer import CustomerState

        state = CustomerState.decode(session.store.get("customers", b"newcomer"), "newcomer")
        segments.add(state.profile.segment)
    assert len(segments) == 1 and segments.pop() >= 0


def test_a_redelivered_learning_record_is_learned_once(decider):
    _, _, records = run(decider, 2, rounds=8)
    learner = FleetLearner(lambda: decider, population=PopulationState(ModelSuite(LIGHT)))
    for _, _, value in records:
        learner.apply(orjson.loads(value))
    once = learner.snapshot().encode()
    for _, _, value in records[: len(records) // 2]:
        assert learner.apply(orjson.loads(value)) == []
    assert learner.duplicates == len(records) // 2
    assert FleetSnapshot.decode(once).population.arms == learner.population.arms


def test_a_learner_restarted_from_its_snapshot_equals_an_uninterrupted_one(decider):
    _, _, records = run(decider, 3, rounds=12)
    values = [orjson.loads(v) for _, _, v in records]

    def fresh() -> FleetLearner:
        return FleetLearner(lambda: decider, population=PopulationState(ModelSuite(LIGHT)))

    uninterrupted = fresh()
    for doc in values:
        uninterrupted.apply(doc)
    # killed after 60 % of the records; its last snapshot was taken at 40 %; its successor
    # reads from the snapshot's position again (some records a second time)
    first = fresh()
    cut, snap_at = int(len(values) * 0.6), int(len(values) * 0.4)
    blob = None
    for i, doc in enumerate(values[:cut]):
        first.apply(doc)
        if i + 1 == snap_at:
            blob = first.snapshot().encode()
    second = FleetLearner(lambda: decider, FleetSnapshot.decode(blob))
    for doc in values[snap_at:]:
        second.apply(doc)
    a, b = uninterrupted.population, second.population
    assert a.arms == b.arms and a.arms
    assert a.linear["default"] == b.linear["default"]
    assert a.suite.version == b.suite.version
    assert np.array_equal(a.suite.segmenter.centers, b.suite.segmenter.centers)


def test_a_partition_counts_its_own_lessons_until_a_snapshot_holds_them():
    view = FleetView("p0", epoch=5)
    lesson = {"k": "o", "offer": "a", "key": 7, "r": 1.0, "ts": 0, "seg": "1", "hl": None,
              "x": None, "uc": "default"}
    view.teach(dict(lesson))
    [first] = view.records(0)
    view.teach(dict(lesson))
    [second] = view.records(0)
    learner = FleetLearner(lambda: None)
    learner.apply(first)
    snapshot = FleetSnapshot.decode(learner.snapshot().encode())
    view.install(snapshot)  # holds the first lesson: the view adds the second only
    keys = np.array([7], np.uint32)
    assert view.pooled(POPULATION_KEY).evidence(keys, 0, None)[0].tolist() == [2.0]
    assert view.pooled(segment_key("1")).evidence(keys, 0, None)[0].tolist() == [2.0]
    learner.apply(second)
    view.install(FleetSnapshot.decode(learner.snapshot().encode()))
    assert view.pooled(POPULATION_KEY).evidence(keys, 0, None)[0].tolist() == [2.0]
    # a snapshot of another epoch of this partition (its previous life) holds none of them
    other = FleetView("p0", epoch=6)
    other.teach(dict(lesson))
    other.records(0)
    other.install(snapshot)
    assert other.pooled(POPULATION_KEY).evidence(keys, 0, None)[0].tolist() == [2.0]


def test_a_worker_reads_the_newest_complete_snapshot_whatever_the_chunk_order():
    import time

    from prometheus_client import REGISTRY

    from stream_app.worker.snapshot_feed import SnapshotFeed

    feed = SnapshotFeed("127.0.0.1:1", "learner-snapshots")  # no thread: fed by hand
    old = FleetSnapshot(1, {}, None, PopulationState(ModelSuite(LIGHT)))
    new = FleetSnapshot(2, {"p0@1": 4}, 7, PopulationState(ModelSuite(LIGHT)))
    sent_at = time.time() - 30
    messages = old.to_messages(max_bytes=512) + list(reversed(new.to_messages(max_bytes=512)))
    assert len(messages) > 4  # several chunks each
    for offset, (key, value) in enumerate(messages):
        feed._take(key, value, offset, int(sent_at * 1000))
    feed._take(b"snapshot/0", b"not a chunk", 99)  # logged and skipped
    assert feed.latest.version == 2 and feed.latest.applied == {"p0@1": 4}
    assert FleetSnapshot.decode(feed.latest_blob).version == 2
    # an older version's chunks coming late change nothing
    for offset, (key, value) in enumerate(old.to_messages(max_bytes=512)):
        feed._take(key, value, 100 + offset)
    assert feed.latest.version == 2
    age = REGISTRY.get_sample_value("stream_app_learner_snapshot_age_seconds")
    assert 29 <= age < 120
