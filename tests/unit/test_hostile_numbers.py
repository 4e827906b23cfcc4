"""Hostile numbers: every number of an input message is finite and bounded (schemas), and the
profile and the models refuse what is not, instead of learning it."""

from __future__ import annotations

import math
import time

import orjson
import pytest

from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider
from stream_app.core.delta import outcome_rows
from stream_app.models.labels import capacity_target, from_capacity_target
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.profile import Profile, apply_interaction
from stream_app.schemas import Contract, InvalidMessage
from stream_app.simulator import default_engine_config

CONTRACT = Contract.load()
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def decider() -> Decider:
    return Decider(parse_config(default_engine_config()), seed=5)


def rec(message: dict, offset: int = 0) -> InputRecord:
    return InputRecord(message["customer_id"].encode(), orjson.dumps(message), offset, None, "in")


def transaction(i: int, cid: str, amount: float, ts: int) -> dict:
    return {"event_id": f"e{i}", "customer_id": cid, "ts": ts, "type": "transaction",
            "channel": "app", "amount": amount, "category": "groceries"}


def test_the_schemas_bound_amounts_values_and_free_numbers():
    bad = [
        ("interactions", {"event_id": "e", "customer_id": "c", "ts": 1, "type": "transaction",
                          "amount": 1e308}),
        ("interactions", {"event_id": "e", "customer_id": "c", "ts": 1, "type": "login",
                          "attributes": {"x": 1e300}}),
        ("outcomes", {"outcome_id": "o", "decision_id": "d", "customer_id": "c", "ts": 1,
                      "type": "converted", "value": 1e308}),
        ("outcomes", {"outcome_id": "o", "decision_id": "d", "customer_id": "c", "ts": 1,
                      "type": "converted", "value": -1e308}),
        ("decision-requests", {"request_id": "r", "customer_id": "c", "ts": 1, "channel": "app",
                               "use_case": "default", "context": {"score": -1e200}}),
    ]
    for topic, message in bad:
        with pytest.raises(InvalidMessage, match="must be (smaller|bigger)"):
            CONTRACT.decode(topic, orjson.dumps(message))
    for raw in (b'{"amount": 1e400}', b'{"amount": NaN}', b'{"amount": Infinity}'):
        with pytest.raises(InvalidMessage, match="not JSON"):
            CONTRACT.decode("interactions", raw)


def test_the_profile_and_the_schema_agree_on_the_largest_amount():
    from stream_app.profile import MAX_AMOUNT

    assert CONTRACT.schemas["interactions"]["properties"]["amount"]["maximum"] == MAX_AMOUNT


def test_the_profile_refuses_an_amount_it_cannot_keep_finite():
    for amount in (1e308, float("inf"), float("nan"), -1.0, 1e9 + 1):
        with pytest.raises(ValueError, match="amount must be a finite number"):
            apply_interaction(Profile.empty(), {"ts": 0, "type": "transaction", "amount": amount})
    p = apply_interaction(Profile.empty(), {"ts": 0, "type": "transaction", "amount": 1e9})
    assert bool(float(p.vector.max()) == 1e9)


def test_the_capacity_model_refuses_non_finite_targets_and_never_overflows():
    for amount in (1e308, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            capacity_target(amount)
    assert capacity_target(0.0) == 0.0 and capacity_target(1e9) == pytest.approx(math.log(1e9 + 1))
    # a model taught log1p(1e308) ~ 709.8 (a poisoned checkpoint) predicts past expm1's range:
    # the prediction is read as the largest amount, not an OverflowError at every interaction
    for prediction in (709.0, 709.8, 800.0, 1e300, float("inf")):
        assert from_capacity_target(prediction) == 1e9
    assert from_capacity_target(float("nan")) == 0.0 and from_capacity_target(-3.0) == 0.0


def test_an_amount_of_1e308_is_dead_lettered_and_later_customers_keep_finite_scores(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    t0 = int(time.time() * 1000) - DAY_MS
    hostile = session.process("interactions", [rec(transaction(0, "h", 1e308, t0))])
    assert hostile.dead_letters == 1
    scores = []
    for i in range(1, 120):
        out = session.process("interactions", [rec(transaction(i, f"c{i % 30}", 20.0 + i,
                                                               t0 + i * 60_000), i)])
        assert out.dead_letters == 0
        scores += [orjson.loads(v) for t, _, v in out.records if t == "customer-scores"]
    assert scores, "customer scores are published"
    for s in scores:
        for name in ("engagement", "churn", "capacity"):
            assert s[name] is not None and math.isfinite(s[name]), s


def test_an_outcome_value_of_1e308_is_dead_lettered_and_rollups_stay_finite(decider):
    session = PartitionSession(0, DictStore(), lambda: decider)
    t0 = int(time.time() * 1000) - DAY_MS
    made = session.process("decision-requests", [rec({
        "request_id": f"r{i}", "customer_id": f"c{i}", "ts": t0, "channel": "app",
        "use_case": "default"}) for i in range(2)]).decisions
    hostile = session.process("outcomes", [rec({
        "outcome_id": "o0", "decision_id": made[0]["decision_id"], "customer_id": "c0",
        "ts": t0 + 10, "type": "converted", "value": 1e308})])
    assert hostile.dead_letters == 1
    session.process("outcomes", [rec({
        "outcome_id": "o1", "decision_id": made[1]["decision_id"], "customer_id": "c1",
        "ts": t0 + 20, "type": "converted", "value": 12.5})])
    later = session.tick(t0 + 10 * 60_000)  # the roll-up window closes
    rollups = [orjson.loads(v) for t, k, v in later.records if k == b"rollup"]
    assert rollups
    for r in rollups:
        for name, value in r.items():
            if isinstance(value, float):
                assert math.isfinite(value), (name, value)
    values = [r["value"] for t, _, v in later.records if t == "delta-metrics"
              for r in outcome_rows(orjson.loads(v)) if orjson.loads(v)["kind"] == "outcomes"]
    assert all(math.isfinite(v) for v in values)
