"""Thompson sampling: learns the best offer, reports a correct propensity, re-learns under drift."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from stream_app.core.arms import Arms
from stream_app.policies import PolicyInput, ThompsonSampling

pytestmark = pytest.mark.simulation


def _inp(alpha, beta, values=None) -> PolicyInput:
    k = len(alpha)
    values = np.ones(k) if values is None else np.asarray(values, float)
    return PolicyInput(np.asarray(alpha, float), np.asarray(beta, float), values, np.zeros(k, bool))


def test_concentrates_on_the_best_arm_of_a_bernoulli_bandit():
    p = np.array([0.1, 0.2, 0.35])
    rng = np.random.default_rng(2024)
    policy = ThompsonSampling(propensity_draws=1)
    succ, fail, picks = np.zeros(3), np.zeros(3), np.empty(2000, int)
    for t in range(2000):
        i = policy.choose(_inp(1 + succ, 1 + fail), rng).index
        reward = rng.random() < p[i]
        succ[i] += reward
        fail[i] += 1 - reward
        picks[t] = i
    assert np.mean(picks[-500:] == 2) > 0.8


def test_two_arm_propensity_matches_the_integral():
    # P(X > Y) for X ~ Beta(6, 4), Y ~ Beta(5, 5): integral of f_X(x) F_Y(x) over [0, 1].
    exact, _ = integrate.quad(lambda x: stats.beta.pdf(x, 6, 4) * stats.beta.cdf(x, 5, 5), 0, 1)
    policy = ThompsonSampling(propensity_draws=20_000)
    rng = np.random.default_rng(5)
    for _ in range(5):
        c = policy.choose(_inp([6, 5], [4, 5]), rng)
        want = exact if c.index == 0 else 1 - exact
        assert 0 < c.propensity_se < 0.5 / np.sqrt(20_000) + 1e-12
        assert abs(c.propensity - want) < 4 * c.propensity_se


def test_value_weighting_prefers_the_valuable_offer_at_a_lower_rate():
    # Concentrated posteriors: rates 0.5 and 0.3, values 1 and 3 -> expected values 0.5 and 0.9.
    inp = _inp([500, 300], [500, 700], values=[1.0, 3.0])
    rng = np.random.default_rng(3)
    assert ThompsonSampling().choose(inp, rng).index == 0
    assert ThompsonSampling(value_weighted=True).choose(inp, rng).index == 1


def _drifting_run(seed: int, half_life_s: float | None, before: int = 1500, after: int = 600):
    """Two offers swap response rates (0.7 / 0.3) after ``before`` decisions, one per second."""
    keys = np.array([1, 2], np.uint32)
    rng = np.random.default_rng(seed)
    policy = ThompsonSampling(propensity_draws=1)
    arms, picks = Arms.empty(), np.empty(before + after, int)
    for t in range(before + after):
        rates = (0.7, 0.3) if t < before else (0.3, 0.7)
        succ, fail = arms.evidence(keys, t * 1000, half_life_s)
        i = policy.choose(_inp(1 + succ, 1 + fail), rng).index
        reward = float(rng.random() < rates[i])
        arms = arms.updated(int(keys[i]), reward, now_ms=t * 1000, half_life_s=half_life_s)
        picks[t] = i
    learned = np.mean(picks[before - 300 : before] == 0)
    relearned = np.mean(picks[before + 100 : before + 400] == 1)
    return learned, relearned


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decay_reconverges_after_the_best_arm_changes(seed):
    # With a 60 s half-life, evidence 300 events old weighs 0.5**5 ~ 3 %, so 100 events after the
    # swap the posterior already reflects the new rates. Without decay offer 0 carries ~1000
    # outcomes at 0.7: after m more pulls at 0.3 its mean is (700 + 0.3 m) / (1000 + m) >= 0.55
    # for m <= 600, while offer 1 (a few dozen pulls at 0.3) rarely samples that high.
    before_decay, after_decay = _drifting_run(seed, half_life_s=60.0)
    before_flat, after_flat = _drifting_run(seed, half_life_s=None)
    assert before_decay > 0.85 and before_flat > 0.85  # both had learned the first regime
    assert after_decay > 0.8
    assert after_flat < 0.3


def test_integrated_two_arm_propensity_matches_quadrature():
    exact, _ = integrate.quad(lambda x: stats.beta.pdf(x, 6, 4) * stats.beta.cdf(x, 5, 5), 0, 1)
    rng = np.random.default_rng(5)
    for _ in range(5):
        c = ThompsonSampling().choose(_inp([6, 5], [4, 5]), rng)
        want = exact if c.index == 0 else 1 - exact
        assert c.propensity_se == 0.0
        assert abs(c.propensity - want) < 3e-3


def _posteriors(rng: np.random.Generator, kind: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == 0:  # young customers: a few pseudo-observations, rates near zero, alpha < 1
        return rng.uniform(0.1, 3.0, n), rng.uniform(2.0, 30.0, n)
    if kind == 1:  # well-known arms: hundreds to thousands of observations
        return rng.uniform(1.0, 500.0, n), rng.uniform(100.0, 5000.0, n)
    if kind == 2:  # one sharp arm among flat ones
        return np.r_[rng.uniform(0.1, 2.0, n - 1), 2000.0], np.r_[rng.uniform(1.0, 50.0, n - 1), 8000.0]
    alpha = np.full(n, 2.0)  # near ties
    alpha[0] = 2.5
    return alpha, np.full(n, 8.0)


@pytest.mark.parametrize("kind", [0, 1, 2, 3])
def test_integrated_propensities_match_a_large_monte_carlo(kind):
    """P(arm wins a joint draw) by integration vs 400k joint draws (se <= 8e-4 per arm)."""
    from stream_app.policies.beta_max import win_probabilities

    rng = np.random.default_rng(100 + kind)
    for n in (2, 7, 20):
        alpha, beta = _posteriors(rng, kind, n)
        p = win_probabilities(alpha, beta)
        draws = rng.beta(alpha, beta, size=(400_000, n))
        mc = np.bincount(draws.argmax(axis=1), minlength=n) / 400_000
        assert p.sum() == pytest.approx(1.0, abs=1e-12) and (p >= 0).all()
        assert np.abs(p - mc).max() < 5e-3, (alpha, beta, p, mc)


def test_integrated_choice_is_seeded_and_its_propensity_is_the_win_probability():
    from stream_app.policies.beta_max import win_probabilities

    alpha, beta = np.array([1.5, 2.0, 0.4, 3.0]), np.array([9.0, 12.0, 4.0, 30.0])
    policy = ThompsonSampling()
    a = policy.choose(_inp(alpha, beta), np.random.default_rng(11))
    b = policy.choose(_inp(alpha, beta), np.random.default_rng(11))
    assert (a.index, a.propensity) == (b.index, b.propensity)
    assert a.propensity == pytest.approx(win_probabilities(alpha, beta)[a.index])
    # the choice follows the win probabilities: frequencies over many seeds
    picks = np.bincount([policy.choose(_inp(alpha, beta), np.random.default_rng(s)).index
                         for s in range(4000)], minlength=4) / 4000
    assert np.abs(picks - win_probabilities(alpha, beta)).max() < 0.03


@pytest.mark.parametrize("alpha, beta", [
    # repeated arms (offers never shown to the customer share their prior) next to others
    ([5.0, 5.0, 8.3, 5.0, 1.7, 8.3], [5.0, 5.0, 1.7, 5.0, 8.3, 1.7]),
    # very sharp arms whose CDF underflows to exactly 0 over part of the grid
    ([225.8, 2588.8, 1.6], [0.2, 0.7, 0.3]),
    ([874.3, 232.5, 4068.2], [0.2, 0.1, 0.3]),
])
def test_integrated_propensities_of_repeated_and_sharp_arms_match_a_large_monte_carlo(alpha, beta):
    from stream_app.policies.beta_max import win_probabilities

    alpha, beta = np.array(alpha), np.array(beta)
    p = win_probabilities(alpha, beta)
    draws = np.random.default_rng(3).beta(alpha, beta, size=(400_000, len(alpha)))
    mc = np.bincount(draws.argmax(axis=1), minlength=len(alpha)) / 400_000
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.abs(p - mc).max() < 5e-3, (p, mc)
    for i in range(len(p)):
        for j in range(i):
            if (alpha[i], beta[i]) == (alpha[j], beta[j]):
                assert p[i] == p[j]


def test_identical_arms_split_exactly():
    from stream_app.policies.beta_max import win_probabilities

    assert win_probabilities(np.full(20, 5.0), np.full(20, 5.0)) == pytest.approx(np.full(20, 0.05),
                                                                                abs=1e-15)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 5000.0), st.floats(0.05, 5000.0)), min_size=2,
                max_size=30),
       st.integers(0, 2**32 - 1))
def test_win_probabilities_are_a_distribution_that_follows_the_arms(arms, seed):
    """Whatever the posteriors (repeated, flat, sharp): non-negative, summing to one, equal for
    equal arms, and permuting the arms permutes the probabilities."""
    from stream_app.policies.beta_max import win_probabilities

    rng = np.random.default_rng(seed)
    arms = arms + [arms[i] for i in rng.integers(len(arms), size=len(arms) // 2)]  # repeats
    alpha, beta = np.array(arms).T
    p = win_probabilities(alpha, beta)
    assert (p >= 0).all() and p.sum() == pytest.approx(1.0, abs=1e-12)
    order = rng.permutation(len(arms))
    assert win_probabilities(alpha[order], beta[order]) == pytest.approx(p[order], abs=1e-12)
    for i, j in zip(*np.nonzero((alpha[:, None] == alpha) & (beta[:, None] == beta))):
        assert p[i] == p[j]


def test_a_remembered_win_probability_is_the_one_computed_and_cannot_be_changed():
    from stream_app.policies import beta_max

    alpha, beta = np.array([2.0, 5.0, 1.5]), np.array([7.0, 3.0, 1.5])
    beta_max._remembered.clear()
    first = beta_max.win_probabilities(alpha, beta)
    again = beta_max.win_probabilities(alpha.copy(), beta.copy())
    assert again is first  # remembered by its inputs' values
    fresh = beta_max._win_probabilities(alpha, beta, 17, 6.0, 32)
    assert np.array_equal(first, fresh)
    assert beta_max.win_probabilities(alpha, beta, per_arm=9) is not first  # other inputs
    with pytest.raises(ValueError):
        first[0] = 1.0
