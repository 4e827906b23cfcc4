"""Anytime-valid intervals: peeking after every update does not inflate the error rate.

Whole histories are simulated at once with numpy (runs x users) and the same vectorised
functions the streaming statistics call are evaluated at *every* prefix — i.e. a dashboard
refreshed after each user. ``test_experiments_stats.py`` checks that ``ExperimentStats`` reads
exactly these functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.experiments.sequential import (
    boundary,
    cs_half_width,
    diff_cs,
    mean_cs,
    normal_half_width,
    rate_variance,
)

ALPHA = 0.05
RUNS, USERS = 500, 2000
# Monte-Carlo slack: 3 binomial standard deviations at the nominal level.
SLACK = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def simulate(p_control, p_treatment, seed, runs=RUNS, users=USERS):
    """Cumulative per-arm counts after every user; users are split 50/50 at random."""
    rng = np.random.default_rng(seed)
    treated = rng.random((runs, users)) < 0.5
    u = rng.random((runs, users))
    y = np.where(treated, u < p_treatment, u < p_control)
    return (
        np.cumsum(treated, 1), np.cumsum(y & treated, 1),
        np.cumsum(~treated, 1), np.cumsum(y & ~treated, 1),
    )  # fmt: skip


def test_boundary_matches_the_normal_mixture_formula():
    # sqrt((v + rho) * log((v + rho) / (rho * alpha^2))) at v=100, rho=50, alpha=0.05
    expected = math.sqrt(150 * math.log(150 / (50 * 0.0025)))
    assert float(boundary(100, 0.05, 50)) == pytest.approx(expected)
    # wider than a one-look interval everywhere, and the relative width shrinks like sqrt(log v / v)
    v = np.array([10, 100, 1000, 10_000, 100_000])
    half = cs_half_width(1 / np.sqrt(v), v, 0.05, plan_n=1000)
    assert np.all(half > normal_half_width(1 / np.sqrt(v), 0.05))
    assert np.all(np.diff(half) < 0)
    assert np.isinf(cs_half_width(1.0, 0, 0.05, 1000))


@pytest.mark.parametrize(("p", "plan_n"), [(0.10, 2000), (0.30, 500), (0.03, 2000)])
def test_aa_tests_with_peeking_at_every_update_stay_within_alpha(p, plan_n):
    n_t, s_t, n_c, s_c = simulate(p, p, seed=int(p * 1000) + plan_n)
    b = diff_cs(n_t, s_t, None, n_c, s_c, None, alpha=ALPHA, plan_n=plan_n, binary=True)
    ever = ((b.low > 0) | (b.high < 0)).any(axis=1).mean()
    assert ever <= ALPHA + SLACK
    # The check has teeth: the usual fixed-sample z interval read at every update declares a
    # difference in a large share of these identical-arm runs.
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(rate_variance(n_t, s_t) / n_t + rate_variance(n_c, s_c) / n_c)
    ready = (n_t >= 30) & (n_c >= 30)
    naive = (ready & (np.abs(b.estimate) > normal_half_width(se, ALPHA))).any(axis=1).mean()
    assert naive > 3 * ALPHA


def test_the_interval_covers_a_known_lift_at_every_update():
    n_t, s_t, n_c, s_c = simulate(0.10, 0.13, seed=7, users=4000)
    b = diff_cs(n_t, s_t, None, n_c, s_c, None, alpha=ALPHA, plan_n=2000, binary=True)
    ever_missed = ((b.low > 0.03) | (b.high < 0.03)).any(axis=1).mean()
    assert ever_missed <= ALPHA + SLACK
    # and it is informative: most runs have detected the lift by 4000 users
    assert (b.low[:, -1] > 0).mean() > 0.3


def test_value_lift_waits_for_enough_non_zero_values():
    """Revenue is mostly zeros with a heavy tail; before each arm has ``min_events`` non-zero
    values the sample variance understates the truth and the interval would mislead."""
    rng = np.random.default_rng(11)
    n_t, e_t, n_c, e_c = simulate(0.02, 0.04, seed=11, runs=300, users=3000)
    # revenue of each response: lognormal, mean exp(3 + 1.5^2 / 2)
    mean_value = math.exp(3 + 1.5**2 / 2)
    # per-arm sums of values given response counts (sum of e lognormals, drawn incrementally)
    def value_sums(events):
        inc = np.diff(events, axis=1, prepend=0)
        v = np.where(inc > 0, rng.lognormal(3, 1.5, inc.shape), 0.0)
        return np.cumsum(v, 1), np.cumsum(v * v, 1)
    v_t, v2_t = value_sums(e_t)
    v_c, v2_c = value_sums(e_c)
    truth = (0.04 - 0.02) * mean_value
    kw = dict(alpha=ALPHA, plan_n=2000)
    gated = diff_cs(n_t, v_t, v2_t, n_c, v_c, v2_c, events_t=e_t, events_c=e_c, min_events=20, **kw)
    ungated = diff_cs(n_t, v_t, v2_t, n_c, v_c, v2_c, **kw)
    miss = lambda b: ((b.low > truth) | (b.high < truth)).any(axis=1).mean()  # noqa: E731
    assert miss(gated) <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / 300)
    assert miss(ungated) > 2 * miss(gated)  # without the gate, early zero-variance claims miss


@pytest.mark.parametrize("p", [0.005, 0.05, 0.4])
def test_single_rate_sequence_covers_at_every_update_even_for_rare_events(p):
    rng = np.random.default_rng(int(p * 10_000))
    y = rng.random((RUNS, USERS)) < p
    n = np.arange(1, USERS + 1)
    b = mean_cs(n, np.cumsum(y, 1), alpha=ALPHA, plan_n=1000, binary=True)
    assert ((b.low > p) | (b.high < p)).any(axis=1).mean() <= ALPHA + SLACK
    assert np.all(b.low[:, -1] >= 0) and np.all(b.high[:, -1] <= 1)


def test_no_claim_before_min_n():
    b = diff_cs(29, 29, None, 29, 0, None, alpha=ALPHA, plan_n=100, binary=True)
    assert float(b.estimate) == 1.0 and np.isinf(b.low) and np.isinf(b.high)
    m = mean_cs(10, 5, 3.0, alpha=ALPHA, plan_n=100, min_n=11)
    assert np.isinf(m.low) and np.isinf(m.high)
