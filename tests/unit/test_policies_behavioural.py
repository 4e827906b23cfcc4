"""Risk aversion, loss aversion and prospect theory: each bends the choice the way it should."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from stream_app.policies import (
    LossAversion,
    PolicyInput,
    ProspectTheory,
    RiskAversion,
    ThompsonSampling,
    scarcity_affinity,
)


def _inp(alpha, beta, urgent=None, values=None, affinity=0.0) -> PolicyInput:
    k = len(alpha)
    return PolicyInput(
        np.asarray(alpha, float),
        np.asarray(beta, float),
        np.ones(k) if values is None else np.asarray(values, float),
        np.zeros(k, bool) if urgent is None else np.asarray(urgent, bool),
        scarcity_affinity=affinity,
    )


# --- risk aversion ---------------------------------------------------------------------------


def test_risk_aversion_picks_the_low_variance_arm_at_equal_mean():
    # All three have mean 0.4; Beta(40, 60) has by far the most evidence.
    inp = _inp([2, 40, 4], [3, 60, 6])
    policy = RiskAversion(lower_quantile=0.05)
    np.testing.assert_allclose(
        policy.lower_bounds(inp), stats.beta.ppf(0.05, [2, 40, 4], [3, 60, 6]), rtol=1e-9
    )
    for seed in range(10):
        c = policy.choose(inp, np.random.default_rng(seed))
        assert (c.index, c.propensity, c.propensity_se) == (1, 1.0, 0.0)
    # Thompson sampling, by contrast, often picks the uncertain arms at equal mean.
    rng = np.random.default_rng(0)
    ts = [ThompsonSampling(propensity_draws=1).choose(inp, rng).index for _ in range(1000)]
    assert np.mean(np.array(ts) != 1) > 0.4


def test_risk_aversion_still_prefers_a_clearly_better_arm():
    inp = _inp([80, 40], [20, 60])  # 0.8 vs 0.4, both well known
    assert RiskAversion().choose(inp, np.random.default_rng(0)).index == 0


# --- loss aversion ---------------------------------------------------------------------------


def test_scarcity_affinity_by_hand():
    succ = np.array([6.0, 2.0, 1.0])
    fail = np.array([4.0, 8.0, 9.0])
    urgent = np.array([True, False, False])
    # overall r = (9 + 1) / (30 + 2) = 0.3125; urgent (6 + 2r) / 12; neutral (3 + 2r) / 22
    want = (6 + 0.625) / 12 - (3 + 0.625) / 22
    assert scarcity_affinity(succ, fail, urgent, strength=2.0) == pytest.approx(want)
    assert scarcity_affinity(np.zeros(3), np.zeros(3), urgent) == 0.0
    assert scarcity_affinity(fail, succ, urgent) < 0  # the mirror customer dislikes urgency


def _urgent_share(affinity: float, seed: int) -> float:
    # A neutral and an urgency-framed offer with the same posterior.
    inp = _inp([20, 20], [20, 20], urgent=[False, True], affinity=affinity)
    rng = np.random.default_rng(seed)
    policy = LossAversion(loss_aversion=2.25, affinity_scale=0.2, propensity_draws=8)
    return float(np.mean([policy.choose(inp, rng).index == 1 for _ in range(2000)]))


def test_loss_aversion_favours_urgency_for_scarcity_responsive_customers():
    # History: responds to urgent offers 9 / 12, to neutral ones 2 / 12.
    affinity = scarcity_affinity(
        np.array([9.0, 2.0]), np.array([3.0, 10.0]), np.array([True, False])
    )
    assert affinity > 0.2
    # Weight 2.25 on the urgent draw: P(2.25 X > Y) for X, Y ~ Beta(20, 20) is ~1.
    assert _urgent_share(affinity, seed=1) > 0.95


@pytest.mark.parametrize("affinity", [0.0, -0.3])
def test_loss_aversion_leaves_other_customers_alone(affinity):
    # Weight 1: symmetric offers, so each is picked half of the time (within 4 sd).
    assert abs(_urgent_share(affinity, seed=2) - 0.5) < 4 * np.sqrt(0.25 / 2000)


def test_loss_aversion_weight_grows_with_affinity_up_to_lambda():
    policy = LossAversion(loss_aversion=3.0, affinity_scale=0.2)
    urgent = np.array([True, False])
    assert policy.weights(urgent, 0.1).tolist() == [2.0, 1.0]  # 1 + 2 * 0.5
    assert policy.weights(urgent, 0.9).tolist() == [3.0, 1.0]  # capped at lambda


# --- prospect theory -------------------------------------------------------------------------


def test_value_function_by_hand():
    pt = ProspectTheory(alpha=0.5, beta=0.5, loss_aversion=2.0)
    np.testing.assert_allclose(pt.value(np.array([4.0, 0.0, -9.0])), [2.0, 0.0, -6.0])


def _concentrated(rates, n=20_000):
    rates = np.asarray(rates, float)
    return rates * n, (1 - rates) * n


def test_loss_averse_reference_point_prefers_the_likely_response():
    # A: rate 0.5, value 1 (EV 0.5). B: rate 0.1, value 6 (EV 0.6). Reference 0.5, linear v:
    #   lambda 2.25: A = 0.5 * 0.5 - 0.5 * 2.25 * 0.5 = -0.3125
    #                B = 0.1 * 5.5 - 0.9 * 1.125 = -0.4625
    #   lambda 1:    A = 0.25 - 0.25 = 0;                         B = 0.55 - 0.45 = 0.1
    alpha, beta = _concentrated([0.5, 0.1])
    inp = _inp(alpha, beta, values=[1.0, 6.0])
    averse = ProspectTheory(alpha=1.0, beta=1.0, loss_aversion=2.25, reference=0.5)
    neutral = ProspectTheory(alpha=1.0, beta=1.0, loss_aversion=1.0, reference=0.5)
    c = averse.choose(inp, np.random.default_rng(0))
    assert c.index == 0 and c.propensity == 1.0
    assert neutral.choose(inp, np.random.default_rng(0)).index == 1


def test_concave_gains_prefer_the_sure_thing():
    # No losses (reference 0). A: rate 0.8, value 1 -> 0.8; B: rate 0.2, value 4.5 -> EV 0.9,
    # but with alpha 0.5: 0.2 * sqrt(4.5) = 0.424 < 0.8 * 1 = 0.8.
    alpha, beta = _concentrated([0.8, 0.2])
    inp = _inp(alpha, beta, values=[1.0, 4.5])
    assert ProspectTheory(alpha=0.5).choose(inp, np.random.default_rng(0)).index == 0
    assert ProspectTheory(alpha=1.0).choose(inp, np.random.default_rng(0)).index == 1


def test_probability_weighting_overweights_small_probabilities():
    pt = ProspectTheory(gamma=0.61)
    w = pt.weight(np.array([0.01, 0.5, 0.99]))
    # Tversky-Kahneman 1992, scalar by hand: w(0.01) = 0.0553 > 0.01, w(0.99) = 0.9116 < 0.99
    def tk(p, g=0.61):
        return p**g / (p**g + (1 - p) ** g) ** (1 / g)

    np.testing.assert_allclose(w, [tk(0.01), tk(0.5), tk(0.99)], rtol=1e-12)
    assert w[0] == pytest.approx(0.0553, abs=1e-4) and w[2] == pytest.approx(0.9116, abs=1e-4)
    assert w[1] < 0.5
