"""Churn learns from silence: a partition's silence timer (one per customer, moved by each
interaction) sends one silence lesson when a customer's churn labels become final, and the
fleet's learner learns them."""

from __future__ import annotations

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


def session(store, decider, fleet) -> PartitionSession:
    return PartitionSession(0, store, lambda: decider, fleet=fleet, seed=2, epoch=1,
                            event_time=EventTimeRule(max_future_ms=0))


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


def test_the_silence_timer_is_rebuilt_after_a_restart(world):
    decider, fleet, store = world
    part = session(store, decider, fleet)
    fleet.take(part.process("interactions", [login("c", T0, 0)]).records)
    due = part.view.suite.silence_due_ms(stored_profile(store, "c"))
    restarted = session(store, decider, fleet)  # a new life of the partition on the same tables
    assert lessons(restarted.tick(due - 1), "s") == []
    assert len(lessons(restarted.tick(due), "s")) == 1
    assert lessons(restarted.tick(due + int(10 * HORIZON_S * 1000)), "s") == []


def test_observe_silence_is_learn_then_profile_after():
    suite = ModelSuite(replace(LIGHT))
    p = apply_interaction(Profile.empty(), {"ts": T0, "type": "login"})
    due = suite.silence_due_ms(p)
    after, _ = suite.observe_silence(p, due)
    assert after.churn_labelled_ms > p.churn_labelled_ms
    # the checkpoints strictly inside the horizon after the last interaction: 250, 500, 750 s
    assert suite.churn_model.n_updates == 3 and due == T0 + int((750 + HORIZON_S) * 1000)
    assert suite.silence_due_ms(after) is None
