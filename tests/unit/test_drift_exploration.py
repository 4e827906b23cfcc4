"""A use case's drift alarm: raised by the fleet's learner when its response rate falls, carried
in the snapshot, and read by every partition as faster forgetting of the use case's pooled
evidence for a while."""

from __future__ import annotations

import math

import orjson
import pytest

from stream_app.core.catalogue import offer_key, parse_config
from stream_app.core.decision import Decider, decision_id_for
from stream_app.core.population import PopulationState
from stream_app.fleet import FleetSnapshot
from stream_app.fleet.learner import FleetLearner
from stream_app.models.reward_drift import RewardDrift, pooled_half_life
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule
from stream_app.simulator import default_engine_config

T0 = 1_700_000_000_000
DAY_S, DRIFT_HL_S, WINDOW_S = 86_400.0, 3_600.0, 43_200.0


def decider_with(prior: dict) -> Decider:
    doc = default_engine_config()
    doc["use_cases"][0].update({"policy": "thompson", "half_life_s": DAY_S, "prior": prior})
    return Decider(parse_config(doc), seed=4)


def outcome_lessons(rewards, start_ms: int = T0) -> list[dict]:
    return [{"source": "p0", "epoch": 1, "seq": i + 1, "ts": start_ms + i * 1000, "lessons": [
        {"k": "o", "p": None, "offer": "a", "key": offer_key("a"), "urgent": False, "r": r,
         "ts": start_ms + i * 1000, "seg": "all", "hl": DAY_S, "x": None, "uc": "default"}]}
        for i, r in enumerate(rewards)]


def feed(learner: FleetLearner, records: list[dict]) -> list[dict]:
    return [rec for record in records for rec in learner.apply(record)
            if rec.get("model") == "use-case/default"]


def test_a_falling_response_rate_raises_one_alarm_carried_in_the_snapshot():
    decider = decider_with({})
    steady = [float(i % 3 == 0) for i in range(3000)]
    learner = FleetLearner(lambda: decider)
    assert feed(learner, outcome_lessons(steady)) == []  # a steady rate: no alarm
    records = outcome_lessons(steady + [0.0] * 2000)[3000:]
    [alarm] = feed(learner, records)
    assert alarm["action"] == "explore" and alarm["error_after"] > alarm["error_before"]
    snapshot = FleetSnapshot.decode(learner.snapshot().encode())
    assert snapshot.population.suite.reward_drift.alarm_ms("default") == alarm["ts"]
    again = FleetLearner(lambda: decider)  # the same lessons in the same order: the same alarm
    assert feed(again, outcome_lessons(steady + [0.0] * 2000)) == [alarm]


def test_a_rise_is_learning_not_drift():
    drift = RewardDrift()
    rising = [float(i % 10 == 0) for i in range(2000)] + [float(i % 2 == 0) for i in range(2000)]
    assert [r for i, v in enumerate(rising) for r in drift.learn("u", v, i)] == []


def test_the_extra_forgetting_falls_back_over_the_window():
    at = [pooled_half_life(DAY_S, DRIFT_HL_S, WINDOW_S, 0, int(f * WINDOW_S * 1000))
          for f in (0.0, 0.5, 0.99, 1.0)]
    assert at[0] < at[1] < at[2] < DAY_S == at[3]
    assert math.isclose(1 / at[0], 1 / DAY_S + 1 / DRIFT_HL_S)
    assert pooled_half_life(None, DRIFT_HL_S, WINDOW_S, 0, 0) == DRIFT_HL_S  # no own forgetting
    assert pooled_half_life(None, DRIFT_HL_S, WINDOW_S, 0, int(WINDOW_S * 1000)) is None
    assert pooled_half_life(DAY_S, None, WINDOW_S, 0, 0) == DAY_S  # no response configured
    with pytest.raises(Exception, match="drift_half_life_s"):
        decider_with({"drift_half_life_s": 0})


def taught_half_life(decider: Decider, ts: int) -> float | None:
    """The half-life an outcome lesson teaches the pooled evidence with, for a decision at
    ``ts`` answered at once, on a partition whose snapshot holds an alarm at ``T0``."""
    population = PopulationState()
    population.suite.reward_drift.alarms["default"] = T0
    snapshot = FleetSnapshot(1, {}, T0, population)
    session = PartitionSession(0, DictStore(), lambda: decider, fleet=lambda: snapshot, seed=4,
                               epoch=1, event_time=EventTimeRule(max_future_ms=0))
    request = {"request_id": f"r{ts}", "customer_id": "c1", "ts": ts, "channel": "app",
               "use_case": "default"}
    out = session.process("decision-requests", [InputRecord(b"c1", orjson.dumps(request))])
    assert out.decisions[0]["action"] == "offer"
    answer = {"outcome_id": f"o{ts}", "decision_id": decision_id_for(f"r{ts}"),
              "customer_id": "c1", "ts": ts + 1000, "type": "clicked"}
    out = session.process("outcomes", [InputRecord(b"c1", orjson.dumps(answer))])
    [lesson] = [lesson for topic, _, value in out.records if topic == "learning"
                for lesson in orjson.loads(value)["lessons"] if lesson["k"] == "o"]
    return lesson["hl"]


def test_a_partition_forgets_the_pooled_evidence_faster_after_the_alarm():
    responsive = decider_with({"drift_half_life_s": DRIFT_HL_S, "drift_window_s": WINDOW_S})
    soon = taught_half_life(responsive, T0 + 3_600_000)
    assert DRIFT_HL_S < soon < 2 * DRIFT_HL_S
    assert taught_half_life(responsive, T0 + int(WINDOW_S * 1000) + 3_600_000) == DAY_S
    assert taught_half_life(decider_with({}), T0 + 3_600_000) == DAY_S  # not configured
