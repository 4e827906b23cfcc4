"""ExperimentStats: streaming accumulators, lift with anytime-valid intervals, sample-ratio
mismatch, guardrail alarms, codec and merge."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from stream_app.experiments import (
    ExperimentStats,
    StatsCodecError,
    assign_index,
    diff_cs,
    parse_experiment,
    sample_ratio_check,
)

CUSTOMERS = [f"cust-{i}" for i in range(100_000)]
WITH_CONTROL = {
    "id": "retention-nudge",
    "control": {"share": 0.5, "mode": "no_action"},
    "arms": [{"name": "nudge", "treatment": {"message": "we miss you"}}],
    "plan_n": 5000,
    "guardrails": [{"metric": "opt_out", "max_rate": 0.01, "max_increase": 0.005}],
}


def stream(exp, rates, users, seed, guardrail_rates=None):
    """Assign ``users`` customers by the experiment's hash and stream their outcomes."""
    rng = np.random.default_rng(seed)
    st = ExperimentStats(exp)
    arms = assign_index(exp, CUSTOMERS[:users])
    for i in arms:
        arm = exp.arms[i].name
        st.add_exposure(arm)
        r = float(rng.random() < rates[i])
        st.add_outcome(arm, reward=r, value=r * 20.0)
        if guardrail_rates and rng.random() < guardrail_rates[i]:
            st.add_guardrail_event(arm, "opt_out")
    return st


# -- sample-ratio mismatch -------------------------------------------------------------------
def test_srm_matches_pearsons_chi_square():
    r = sample_ratio_check([5200, 4800], [1, 1])
    assert r.chi2 == pytest.approx(2 * 200**2 / 5000)
    assert r.p_value == pytest.approx(stats.chisquare([5200, 4800]).pvalue)
    three = sample_ratio_check([1000, 3100, 5900], [0.1, 0.3, 0.6])
    scipy_p = stats.chisquare([1000, 3100, 5900], [1000, 3000, 6000]).pvalue
    assert three.p_value == pytest.approx(scipy_p)
    assert not sample_ratio_check([3, 0], [0.5, 0.5]).flagged  # too few to judge


@pytest.mark.parametrize(("d", "flagged"), [(160, False), (165, True)])
def test_srm_flags_exactly_below_the_threshold(d, flagged):
    # 2 d^2 / 5000 against the chi-square(1) 0.001 critical value 10.83: 10.24 passes, 10.89 flags
    counts = [5000 + d, 5000 - d]
    assert bool(stats.chisquare(counts).pvalue < 0.001) is flagged
    assert sample_ratio_check(counts, [0.5, 0.5]).flagged is flagged
    assert sample_ratio_check(counts, [0.5, 0.5], threshold=1e-6).flagged is False


def test_balanced_assignment_passes_and_an_injected_mismatch_is_flagged():
    exp = parse_experiment({"id": "srm", "control": {"share": 0.5}, "arms": [{"name": "B"}]})
    arms = assign_index(exp, CUSTOMERS)
    counts = np.bincount(arms, minlength=2)
    healthy = ExperimentStats(exp)
    for i, n in enumerate(counts):
        healthy.add_exposure(exp.arms[i].name, n=int(n))
    assert not healthy.srm().flagged and healthy.srm().p_value > 0.001
    assert not healthy.snapshot(0)["alarm"]
    # the treatment silently loses 5% of its exposures (e.g. a crashing renderer)
    broken = ExperimentStats(exp)
    broken.add_exposure("control", n=int(counts[0]))
    broken.add_exposure("B", n=int(counts[1] * 0.95))
    srm = broken.snapshot(0)["srm"]
    assert srm["flagged"] and srm["p_value"] < 1e-6
    assert broken.snapshot(0)["alarm"]


# -- lift -------------------------------------------------------------------------------------
def test_a_known_lift_is_covered_and_detected():
    exp = parse_experiment(WITH_CONTROL)
    st = stream(exp, rates=[0.10, 0.13], users=20_000, seed=3)
    snap = st.snapshot(ts_ms=123)
    nudge = snap["arms"][1]
    lo, hi = nudge["lift"]["cs"]
    assert lo <= 0.03 <= hi
    assert nudge["lift"]["significant"] and lo > 0
    assert nudge["lift"]["relative"] == pytest.approx(nudge["lift"]["diff"] / snap["arms"][0][
        "response_rate"])  # fmt: skip
    vlo, vhi = nudge["value_lift"]["cs"]
    assert vlo <= 0.03 * 20.0 <= vhi  # value is 20 per response
    assert snap["baseline"] == "control" and "lift" not in snap["arms"][0]


def test_streaming_lift_is_exactly_the_vectorised_sequence():
    """What the A/A simulations check (``diff_cs`` on cumulative counts) is what is served."""
    exp = parse_experiment({**WITH_CONTROL, "id": "consistency",
                            "arms": [{"name": "a"}, {"name": "b"}]})  # fmt: skip
    st = stream(exp, rates=[0.2, 0.25, 0.2], users=6000, seed=5)
    t = st.table
    b = diff_cs(t[2, 1], t[2, 2], None, t[0, 1], t[0, 2], None, alpha=exp.alpha / 2,
                plan_n=exp.plan_n, min_n=exp.min_n, binary=True)  # fmt: skip
    snap_b = st.snapshot(0)["arms"][2]["lift"]
    assert snap_b["cs"] == [pytest.approx(float(b.low)), pytest.approx(float(b.high))]
    assert snap_b["diff"] == pytest.approx(t[2, 2] / t[2, 1] - t[0, 2] / t[0, 1])
    # two comparisons against control: Bonferroni halves alpha, so intervals are wider
    single = diff_cs(t[2, 1], t[2, 2], None, t[0, 1], t[0, 2], None, alpha=exp.alpha,
                     plan_n=exp.plan_n, min_n=exp.min_n, binary=True)  # fmt: skip
    assert float(b.high - b.low) > float(single.high - single.low)


def test_counts_in_the_snapshot():
    exp = parse_experiment({"id": "e", "arms": [{"name": "A"}, {"name": "B"}], "min_n": 2})
    st = ExperimentStats(exp)
    for arm, reward, value in [("A", 1, 5.0), ("A", 0, 0.0), ("A", 0, 0.0), ("B", 1, 2.0)]:
        st.add_exposure(arm)
        st.add_outcome(arm, reward, value)
    st.add_exposure("B")  # exposed, outcome still pending
    a, b = st.snapshot(0)["arms"]
    assert (a["exposures"], a["outcomes"], a["responses"], a["value"]) == (3, 3, 1.0, 5.0)
    assert a["response_rate"] == pytest.approx(1 / 3)
    assert a["value_per_outcome"] == pytest.approx(5 / 3)
    assert (b["exposures"], b["outcomes"], b["response_rate"]) == (2, 1, 1.0)
    assert b["response_rate_cs"] == [None, None]  # below min_n: no claim, JSON null
    assert b["lift"]["cs"] == [None, None] and not b["lift"]["significant"]
    with pytest.raises(ValueError, match="reward"):
        st.add_outcome("A", 2.0)
    with pytest.raises(KeyError, match="no arm"):
        st.add_exposure("C")


# -- guardrails ------------------------------------------------------------------------------
def test_guardrail_alarms_when_a_treatment_drives_opt_outs():
    exp = parse_experiment(WITH_CONTROL)
    bad = stream(exp, rates=[0.1, 0.1], users=20_000, seed=9, guardrail_rates=[0.002, 0.03])
    snap = bad.snapshot(0)
    alarms = {(g["metric"], g["arm"]): g for g in snap["guardrails"]}
    nudge = alarms[("opt_out", "nudge")]
    assert nudge["alarm"] and snap["alarm"]
    assert nudge["reasons"] == ["opt_out rate above 0.01", "opt_out rate above baseline by > 0.005"]
    assert nudge["cs"][0] <= 0.03 <= nudge["cs"][1]
    assert not alarms[("opt_out", "control")]["alarm"]


def test_no_guardrail_alarm_when_rates_are_within_limits():
    exp = parse_experiment(WITH_CONTROL)
    fine = stream(exp, rates=[0.1, 0.1], users=20_000, seed=10, guardrail_rates=[0.004, 0.005])
    snap = fine.snapshot(0)
    assert not any(g["alarm"] for g in snap["guardrails"]) and not snap["alarm"]
    with pytest.raises(KeyError, match="no guardrail"):
        fine.add_guardrail_event("nudge", "complaint")


# -- state -----------------------------------------------------------------------------------
def test_codec_round_trip_merge_and_json():
    exp = parse_experiment(WITH_CONTROL)
    a = stream(exp, rates=[0.1, 0.2], users=3000, seed=1, guardrail_rates=[0.01, 0.01])
    back = ExperimentStats.decode(exp, a.encode())
    assert np.array_equal(back.table, a.table) and back.snapshot(5) == a.snapshot(5)
    assert len(a.encode()) == 12 + 2 * 7 * 8  # header + 2 arms x (6 columns + 1 guardrail)
    assert ExperimentStats.decode(exp, None).table.sum() == 0
    b = stream(exp, rates=[0.1, 0.2], users=2000, seed=2)
    merged = a.merge(b)
    assert np.array_equal(merged.table, a.table + b.table)
    json.dumps(merged.snapshot(7), allow_nan=False)  # JSON-ready: no NaN / inf anywhere
    json.dumps(ExperimentStats(exp).snapshot(7), allow_nan=False)
    other = parse_experiment({**WITH_CONTROL, "arms": [{"name": "renamed"}]})
    with pytest.raises(StatsCodecError, match="different experiment"):
        ExperimentStats.decode(other, a.encode())
    with pytest.raises(StatsCodecError, match="version"):
        ExperimentStats.decode(exp, b"\x07" + a.encode()[1:])
    with pytest.raises(StatsCodecError, match="length"):
        ExperimentStats.decode(exp, a.encode()[:-8])
    with pytest.raises(ValueError, match="different experiments"):
        a.merge(ExperimentStats(other))
