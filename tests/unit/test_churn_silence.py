"""Churn learns from silence: a partition's silence timer (one per customer, moved by each
interaction) sends one silence lesson when a customer's churn labels become final, and the
fleet's learner learns them. The partition does the same with its silence schedule in memory
or on disk (``partition/silence.py``)."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

from stream_app.core.catalogue import parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider
from stream_app.core.population import PopulationState
from stream_app.fleet.lessons import decode_profile
from stream_app.fleet.local import LocalFleet
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule
from stream_app.partition.erasure import ERASURE
from stream_app.partition.silence import RocksSilence
from stream_app.profile import Profile, apply_interaction
from stream_app.simulator import default_engine_config

T0 = 1_700_000_000_000
HORIZON_S, PERIOD_S = 1_000.0, 250.0  # a short churn horizon: the test moves event time by hand
LIGHT = SuiteConfig(classifiers=("logreg",), regressors=("mean",), churn_horizon_s=HORIZON_S,
                    churn_period_s=PERIOD_S)


@pytest.fixture()
def world():
    decider = Decider(parse_config(default_engine_config()), seed=2)
    fleet = LocalFleet(lambda: decider, population=PopulationState(ModelSuite(LIGHT)))
    store = DictStore()
    return decider, fleet, store


@pytest.fixture(params=["memory", "disk"])
def schedules(request, tmp_path):
    """Makes the silence schedule of a new session: in memory, or on disk (one partition's
    directory, reopened by each new session as the worker does after a restart)."""
    made: list[RocksSilence] = []

    def make():
        if request.param == "memory":
            return None
        for schedule in made:  # the previous life of the partition has ended
            schedule.close()
        made.append(RocksSilence(tmp_path / "silence" / "partition-0"))
        return made[-1]

    yield make
    for schedule in made:
        schedule.close()


def session(store, decider, fleet, silences=None, epoch: int = 1) -> PartitionSession:
    return PartitionSession(0, store, lambda: decider, fleet=fleet, seed=2, epoch=epoch,
                            event_time=EventTimeRule(max_future_ms=0), silences=silences)


def login(cid: str, ts: int, i: int) -> InputRecord:
    msg = {"event_id": f"{cid}-{i}", "customer_id": cid, "ts": ts, "type": "login",
           "channel": "app"}
    return InputRecord(cid.encode(), orjson.dumps(msg))


def stored_profile(store: DictStore, cid: str) -> Profile:
    return CustomerState.decode(store.get("customers", cid.encode()), cid).profile


def lessons(emitted, kind: str) -> list[dict]:
    return [lesson for topic, _, value in emitted.records if topic == "learning"
            for lesson in orjson.loads(value)["lessons"] if lesson["k"] == kind]


def test_a_silent_customer_sends_one_silence_lesson_an_active_one_none(world):
    decider, fleet, store = world
    part = session(store, decider, fleet)
    sent = []
    for i in range(3):  # both interact at first
        for cid in ("silent", "active"):
            emitted = part.process("interactions", [login(cid, T0 + i * 100_000, i)])
            sent += lessons(emitted, "s")
            fleet.take(emitted.records)
    silent_profile = stored_profile(store, "silent")
    due = fleet.latest.population.suite.silence_due_ms(silent_profile)
    assert due is not None and due > silent_profile.last_event_ms + HORIZON_S * 1000
    # "active" keeps interacting past the silent one's due time, every 400 s (< the horizon)
    ts, i = T0 + 200_000, 3
    while ts < due + 3 * HORIZON_S * 1000:
        ts += 400_000
        before = len(sent)
        emitted = part.process("interactions", [login("active", ts, i)])
        i += 1
        sent += lessons(emitted, "s")
        fleet.take(emitted.records)
        if ts < due:
            assert len(sent) == before == 0  # nothing before the labels are final
    assert len(sent) == 1  # exactly one, for the silent customer, at its due time
    [lesson] = sent
    assert lesson["ts"] == due
    assert decode_profile(lesson["p"]).last_event_ms == silent_profile.last_event_ms
    # its checkpoints are marked labelled and its timer is gone: when time moves on, the only
    # silence left is the active customer's, once they stop
    stored = stored_profile(store, "silent")
    assert stored.churn_labelled_ms > silent_profile.churn_labelled_ms
    assert fleet.latest.population.suite.silence_due_ms(stored) is None
    [last] = lessons(part.tick(ts + int(10 * HORIZON_S * 1000)), "s")
    assert decode_profile(last["p"]).last_event_ms == ts  # the active customer's last login


def test_the_learner_learns_both_churn_labels(world):
    decider, _, store = world
    fleet = LocalFleet(lambda: decider, population=PopulationState(ModelSuite(LIGHT)),
                       snapshot_every_ms=10**15)  # no snapshot: the spy below does not pickle
    part = session(store, decider, fleet)
    seen: list[bool] = []
    churn = fleet.learner.population.suite.churn_model
    learn = churn.learn

    def spy(x, y, ts=0, w=1):
        seen.append(bool(y))
        return learn(x, y, ts, w)

    churn.learn = spy
    # a customer active every 300 s for 2000 s (checkpoints labelled "not churned" as they come
    # back), then silent: their last checkpoints are labelled "churned" when the timer fires
    for i in range(8):
        fleet.take(part.process("interactions", [login("c", T0 + i * 300_000, i)]).records)
    assert seen and not any(seen)
    returned = len(seen)
    emitted = part.tick(T0 + 7 * 300_000 + int(3 * HORIZON_S * 1000))
    assert len(lessons(emitted, "s")) == 1
    fleet.take(emitted.records)
    assert len(seen) > returned and all(seen[returned:])  # the silence: churned
    assert fleet.learner.rejected == 0


def test_the_silence_timer_is_rebuilt_after_a_restart(world, schedules):
    decider, fleet, store = world
    part = session(store, decider, fleet, schedules())
    fleet.take(part.process("interactions", [login("c", T0, 0)]).records)
    due = part.view.suite.silence_due_ms(stored_profile(store, "c"))
    # a new life of the partition on the same tables
    restarted = session(store, decider, fleet, schedules())
    assert lessons(restarted.tick(due - 1), "s") == []
    assert len(lessons(restarted.tick(due), "s")) == 1
    assert lessons(restarted.tick(due + int(10 * HORIZON_S * 1000)), "s") == []


def interactions_of(n_customers: int, n: int, seed: int) -> list[InputRecord]:
    """Logins of a few customers at irregular times, over several churn horizons."""
    rng = random.Random(seed)
    ts, out = T0, []
    for i in range(n):
        ts += rng.choice([1_000, 100_000, 400_000, 900_000])
        out.append(login(f"c{rng.randrange(n_customers)}", ts, i))
    return out


def test_a_rebuild_after_a_restart_fires_the_same_silences(world, schedules):
    decider, fleet, store = world
    records = interactions_of(6, 30, seed=5)
    end = int(orjson.loads(records[-1].value)["ts"]) + int(10 * HORIZON_S * 1000)

    def silences(emitted) -> list[tuple[int, int, int, int]]:
        """Whose silence fired when: its time, the customer's first and last interaction and
        their number (the rest of the profile also depends on what the fleet learned)."""
        return [(lesson["ts"], p.first_seen_ms, p.last_event_ms, p.n_events)
                for lesson in lessons(emitted, "s") for p in [decode_profile(lesson["p"])]]

    # one life of the partition, throughout
    other = LocalFleet(lambda: decider, population=PopulationState(ModelSuite(LIGHT)))
    kept = session(DictStore(), decider, other, schedules())
    fired = []
    for record in records:
        emitted = kept.process("interactions", [record])
        fired += silences(emitted)
        other.take(emitted.records)
    fired += silences(kept.tick(end))
    assert len(fired) >= 6  # silences during the run and at the end
    # the same records, the partition restarted halfway (a new schedule, rebuilt from the
    # profiles): the same silences fire at the same times
    part = session(store, decider, fleet, schedules())
    again = []
    for i, record in enumerate(records):
        if i == len(records) // 2:
            part.close()
            part = session(store, decider, fleet, schedules(), epoch=2)
        emitted = part.process("interactions", [record])
        again += silences(emitted)
        fleet.take(emitted.records)
    assert again + silences(part.tick(end)) == fired


def test_an_erasure_removes_the_customers_silence(world, schedules):
    decider, fleet, store = world
    part = session(store, decider, fleet, schedules())
    for i, cid in enumerate(("a", "b")):
        part.process("interactions", [login(cid, T0 + i, i)])
    request = {"request_id": "er-1", "customer_id": "a", "ts": T0 + 10}
    erased = part.process(ERASURE, [InputRecord(b"a", orjson.dumps(request))])
    [audit] = [orjson.loads(v) for t, _, v in erased.records if t == "erasure-audit"]
    assert audit["timers_cancelled"] == 1  # a's silence, their only timer
    [silence] = lessons(part.tick(T0 + int(10 * HORIZON_S * 1000)), "s")
    assert decode_profile(silence["p"]).last_event_ms == T0 + 1  # b's: a left nothing behind


def partition_run(decider, schedules, seed: int, steps: int) -> tuple[list, dict]:
    """Interactions, requests, outcomes, idle ticks and erasures of a few customers over many
    churn horizons, the partition restarted halfway: what it sent (wall-clock fields aside),
    and its tables."""
    fleet = LocalFleet(lambda: decider, population=PopulationState(ModelSuite(LIGHT)))
    store = DictStore()
    part = session(store, decider, fleet, schedules())
    rng = random.Random(seed)
    ts, decisions, sent = T0, [], []
    for i in range(steps):
        ts += rng.choice([1_000, 20_000, 200_000, 700_000])
        cid, r = f"c{rng.randrange(12)}", rng.random()
        if i == steps // 2:
            part.close()
            part = session(store, decider, fleet, schedules(), epoch=2)
        if r < 0.5:
            emitted = part.process("interactions", [login(cid, ts, i)])
        elif r < 0.75:
            msg = {"request_id": f"r{i}", "customer_id": cid, "ts": ts, "channel": "app",
                   "use_case": "default"}
            emitted = part.process("decision-requests", [InputRecord(cid.encode(),
                                                                     orjson.dumps(msg))])
            decisions += [(d["customer_id"], d["decision_id"]) for d in emitted.decisions]
        elif r < 0.9 and decisions:
            who, decision_id = rng.choice(decisions)
            msg = {"outcome_id": f"o{i}", "decision_id": decision_id, "customer_id": who,
                   "ts": ts, "type": "clicked"}
            emitted = part.process("outcomes", [InputRecord(who.encode(), orjson.dumps(msg))])
        elif r < 0.97:
            ts += rng.choice([500_000, 2_000_000, 4_000_000])
            emitted = part.tick(ts)
        else:
            msg = {"request_id": f"x{i}", "customer_id": cid, "ts": ts}
            emitted = part.process(ERASURE, [InputRecord(cid.encode(), orjson.dumps(msg))])
        fleet.take(emitted.records)
        for topic, key, value in emitted.records:
            doc = orjson.loads(value) if value is not None else None
            if isinstance(doc, dict):
                for wall_clock in ("latency_ms", "erased_at", "failed_at"):
                    doc.pop(wall_clock, None)
            sent.append((topic, key, doc))
    part.close()
    return sent, {t: dict(rows) for t, rows in store.tables.items()}


def test_a_partition_is_the_same_with_its_silences_on_disk_or_in_memory(tmp_path):
    decider = Decider(parse_config(default_engine_config()), seed=2)

    def schedules_of(kind: str):
        made = []

        def make():
            if kind == "memory":
                return None
            made.append(RocksSilence(tmp_path / kind / f"life-{len(made)}"))
            return made[-1]
        return make

    in_memory = partition_run(decider, schedules_of("memory"), seed=7, steps=160)
    on_disk = partition_run(decider, schedules_of("disk"), seed=7, steps=160)
    assert on_disk == in_memory
    sent = in_memory[0]
    kinds = [lesson["k"] for topic, _, doc in sent if topic == "learning"
             for lesson in doc["lessons"]]
    assert kinds.count("s") >= 20 and kinds.count("o") >= 10  # silences and settled decisions
    assert any(topic == "erasure-audit" for topic, _, _ in sent)


def test_observe_silence_is_learn_then_profile_after():
    suite = ModelSuite(replace(LIGHT))
    p = apply_interaction(Profile.empty(), {"ts": T0, "type": "login"})
    due = suite.silence_due_ms(p)
    after, _ = suite.observe_silence(p, due)
    assert after.churn_labelled_ms > p.churn_labelled_ms
    # the checkpoints strictly inside the horizon after the last interaction: 250, 500, 750 s
    assert suite.churn_model.n_updates == 3 and due == T0 + int((750 + HORIZON_S) * 1000)
    assert suite.silence_due_ms(after) is None
