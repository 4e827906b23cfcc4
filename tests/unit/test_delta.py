"""Delta metrics: hand-computed calibration, log loss and AUC; event-time windows closing once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.delta import DeltaAggregator, GroupMetrics
from stream_app.core.feedback import PendingDecision, ignored, resolve


def rec(ts, predicted, actual, **extra):
    return {"kind": "outcome", "ts": ts, "predicted": predicted, "actual": actual,
            "offer_id": extra.pop("offer_id", "cashback"), "value": 0.0, "regret": 0.0,
            "late": False, "ignored": False, **extra}


def rollup(agg, watermark, dimension="all", group="*"):
    [row] = [r for r in agg.flush(watermark) if (r["dimension"], r["group"]) == (dimension, group)]
    return row


def test_hand_computed_calibration_log_loss_and_means():
    agg = DeltaAggregator(window_s=60, bins=10)
    for p, y in [(0.15, 1.0), (0.15, 0.0), (0.15, 0.0), (0.85, 1.0)]:
        agg.add(rec(1_000, p, y))
    r = rollup(agg, 60_000)
    # Bin [0.1, 0.2): 3 records, mean predicted 0.15, rate 1/3 -> |0.15 - 1/3| = 0.18333...
    # Bin [0.8, 0.9): 1 record, 0.85 vs 1 -> 0.15.  ECE = 3/4 * 0.183333 + 1/4 * 0.15 = 0.175
    assert r["calibration_error"] == pytest.approx(0.175)
    # Log loss: -(ln 0.15 + ln 0.85 + ln 0.85 + ln 0.85) / 4
    assert r["log_loss"] == pytest.approx(-(math.log(0.15) + 3 * math.log(0.85)) / 4)
    assert (r["count"], r["responses"], r["response_rate"]) == (4, 2, 0.5)
    assert r["mean_predicted"] == pytest.approx(1.3 / 4)
    assert r["mean_delta"] == pytest.approx(0.5 - 1.3 / 4)


def test_perfectly_calibrated_bins_have_zero_calibration_error():
    agg = DeltaAggregator(window_s=60)
    for y in (1.0, 0.0, 0.0, 0.0):
        agg.add(rec(0, 0.25, y))
    assert rollup(agg, 60_000)["calibration_error"] == pytest.approx(0.0)


@pytest.mark.parametrize(("pos", "neg", "auc"), [
    ([0.7, 0.9, 0.95], [0.05, 0.1, 0.3], 1.0),  # perfectly separating
    ([0.05, 0.1], [0.7, 0.9], 0.0),  # perfectly wrong
])
def test_auc_of_separating_predictors(pos, neg, auc):
    agg = DeltaAggregator(window_s=60)
    for p in pos:
        agg.add(rec(0, p, 1.0))
    for p in neg:
        agg.add(rec(0, p, 0.0))
    assert rollup(agg, 60_000)["roc_auc"] == pytest.approx(auc)


def test_auc_matches_pair_counting_when_the_threshold_grid_is_fine_enough():
    agg = DeltaAggregator(window_s=60, auc_thresholds=20)
    pos, neg = [0.35, 0.8], [0.1, 0.4]
    for p in pos:
        agg.add(rec(0, p, 1.0))
    for p in neg:
        agg.add(rec(0, p, 0.0))
    pairs = sum(p > n for p in pos for n in neg) / (len(pos) * len(neg))  # 3/4
    assert rollup(agg, 60_000)["roc_auc"] == pytest.approx(pairs)


def test_auc_is_undefined_with_a_single_class():
    agg = DeltaAggregator(window_s=60)
    agg.add(rec(0, 0.3, 0.0))
    agg.add(rec(0, 0.6, 0.0))
    assert rollup(agg, 60_000)["roc_auc"] is None


def test_windows_close_exactly_once_in_event_time():
    agg = DeltaAggregator(window_s=60, dimensions=())
    agg.add(rec(59_999, 0.5, 1.0))
    agg.add(rec(60_000, 0.5, 0.0))
    assert agg.flush(59_999) == []
    [first] = agg.flush(60_000)
    assert (first["window_start"], first["window_end"], first["ts"], first["count"]) == (
        0, 60_000, 60_000, 1)
    assert agg.flush(60_000) == [] and agg.flush(119_999) == []
    [second] = agg.flush(10**6)
    assert (second["window_start"], second["responses"]) == (60_000, 0)
    assert agg.flush(10**7) == [] and agg.open_windows == 0


def test_watermark_never_goes_back_and_records_for_flushed_windows_are_refused():
    agg = DeltaAggregator(window_s=60, dimensions=())
    agg.flush(120_000)
    agg.flush(0)
    assert agg.watermark_ms == 120_000
    assert agg.add(rec(119_999, 0.5, 1.0)) is False
    assert agg.too_late == 1
    assert agg.add(rec(120_000, 0.5, 1.0)) is True
    assert [r["window_start"] for r in agg.flush(180_000)] == [120_000]


def test_allowed_lateness_keeps_a_window_open_longer():
    agg = DeltaAggregator(window_s=60, allowed_lateness_s=30, dimensions=())
    agg.add(rec(1_000, 0.5, 1.0))
    assert agg.flush(89_999) == []
    assert agg.add(rec(5_000, 0.5, 0.0)) is True
    [r] = agg.flush(90_000)
    assert r["count"] == 2


def test_output_does_not_depend_on_how_often_flush_is_called():
    rng = np.random.default_rng(7)
    ts = np.sort(rng.integers(0, 600_000, 400))
    records = [rec(int(t), float(p), float(rng.random() < p), offer_id=f"o{int(t) % 3}",
                   segment=["young", "old"][int(t) % 2])
               for t, p in zip(ts, rng.random(400))]
    eager, lazy = DeltaAggregator(window_s=60), DeltaAggregator(window_s=60)
    out_eager = []
    for r in records:  # fast replay: flush after every message
        assert eager.add(r)
        out_eager += eager.flush(r["ts"])
    for r in records:  # slow batches: flush once at the end
        lazy.add(r)
    out_eager += eager.flush(10**9)
    assert out_eager == lazy.flush(10**9)
    assert sum(r["count"] for r in out_eager if r["dimension"] == "all") == 400
    assert eager.open_windows == lazy.open_windows == 0


def test_groups_per_dimension_and_records_without_a_dimension_are_not_grouped_on_it():
    agg = DeltaAggregator(window_s=60)
    agg.add(rec(0, 0.2, 1.0, offer_id="a", segment="young", policy="ucb", use_case="default",
                experiment_arm="B"))
    agg.add(rec(0, 0.4, 0.0, offer_id="b", segment="young", policy="ucb", use_case="default"))
    rows = agg.flush(60_000)
    keys = [(r["dimension"], r["group"], r["count"]) for r in rows]
    assert keys == [("all", "*", 2), ("offer_id", "a", 1), ("offer_id", "b", 1),
                    ("segment", "young", 2), ("policy", "ucb", 2), ("use_case", "default", 2),
                    ("experiment_arm", "B", 1)]


def test_late_outcomes_are_counted_apart_and_value_and_regret_are_summed():
    agg = DeltaAggregator(window_s=60, dimensions=())
    agg.add({**rec(0, 0.2, 0.0), "ignored": True, "regret": 0.1})
    agg.add({**rec(0, 0.6, 1.0), "value": 5.0, "regret": 0.3})
    agg.add({**rec(0, 0.2, 1.0), "late": True, "value": 2.0})
    r = rollup(agg, 60_000)
    assert (r["count"], r["responses"], r["ignored"]) == (2, 1, 1)
    assert (r["late"], r["late_responses"], r["value_sum"]) == (1, 1, 7.0)
    assert r["regret"] == pytest.approx(0.4) and r["mean_regret"] == pytest.approx(0.2)


def test_feedback_records_roll_up_one_count_per_decision():
    agg = DeltaAggregator(window_s=60, dimensions=("policy",))
    decisions = [PendingDecision(f"dc-{i}", "c", "cashback", "default", "thompson", "s",
                                 predicted=0.5, propensity=1.0, decided_at_ms=0,
                                 expires_at_ms=30_000) for i in range(3)]
    records = list(resolve(decisions[0], {"decision_id": "dc-0", "ts": 10_000,
                                          "type": "clicked"}).records)
    timed_out = ignored(decisions[1])
    records += timed_out.records
    records += resolve(timed_out.pending, {"decision_id": "dc-1", "ts": 40_000,
                                           "type": "converted"}).records
    records += resolve(decisions[2], {"decision_id": "dc-2", "ts": 20_000,
                                      "type": "dismissed"}).records
    for r in sorted(records, key=lambda r: r["ts"]):
        assert agg.add(r)
    r = rollup(agg, 60_000, "policy", "thompson")
    assert (r["count"], r["responses"], r["ignored"], r["late"]) == (3, 1, 1, 1)
    assert r["mean_delta"] == pytest.approx((0.5 - 0.5 - 0.5) / 3)


def test_bad_input_is_refused():
    agg = DeltaAggregator()
    with pytest.raises(ValueError, match="outcome records"):
        agg.add({"kind": "rollup", "ts": 0})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agg.add(rec(0, 1.5, 1.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agg.add(rec(0, float("nan"), 1.0))
    with pytest.raises(ValueError):
        DeltaAggregator(window_s=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=60),
       st.integers(2, 15))
def test_log_loss_and_auc_equal_rivers_metrics(pairs, thresholds):
    """The counting implementation gives what river.metrics.LogLoss / ROCAUC give."""
    from river import metrics

    group, ll, auc = GroupMetrics(auc_thresholds=thresholds), metrics.LogLoss(), \
        metrics.ROCAUC(n_thresholds=thresholds)
    for p, y in pairs:
        group.add(p, float(y))
        ll.update(y, p)
        auc.update(y, p)
    s = group.summary()
    assert s["log_loss"] == pytest.approx(ll.get(), rel=1e-9, abs=1e-12)
    if 0 < s["responses"] < s["count"]:
        assert s["roc_auc"] == pytest.approx(auc.get(), abs=1e-12)
