"""Epsilon-greedy and UCB: exact propensities and bounds computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.policies import EpsilonGreedy, PolicyInput, UpperConfidenceBound


def _inp(alpha, beta, pulls=0.0, values=None) -> PolicyInput:
    k = len(alpha)
    values = np.ones(k) if values is None else np.asarray(values, float)
    return PolicyInput(np.asarray(alpha, float), np.asarray(beta, float), values,
                       np.zeros(k, bool), pulls=pulls)


@pytest.mark.parametrize(
    "pulls, want", [(0.0, 0.3), (20.0, 0.1), (50.0, 0.05), (1000.0, 0.05)]
)
def test_epsilon_decays_with_evidence_down_to_its_floor(pulls, want):
    # 0.3 / (1 + 0.1 n): 0.3 at n = 0, 0.1 at n = 20, 0.05 at n = 50, then the floor 0.05
    policy = EpsilonGreedy(epsilon=0.3, decay=0.1, min_epsilon=0.05)
    assert policy.epsilon_at(pulls) == pytest.approx(want)


def test_epsilon_greedy_propensities_are_exact_with_and_without_ties():
    policy = EpsilonGreedy(epsilon=0.2, decay=0.0, min_epsilon=0.0)
    rng = np.random.default_rng(4)
    unique = _inp([8, 2, 2, 2], [2, 8, 8, 8])
    tied = _inp([8, 8, 2, 2], [2, 2, 8, 8])
    # k = 4, epsilon = 0.2: unique best 0.8 + 0.05, others 0.05; two tied best 0.4 + 0.05 each.
    want_unique = {0: 0.85, 1: 0.05, 2: 0.05, 3: 0.05}
    want_tied = {0: 0.45, 1: 0.45, 2: 0.05, 3: 0.05}
    for inp, want in ((unique, want_unique), (tied, want_tied)):
        seen = {}
        for _ in range(3000):
            c = policy.choose(inp, rng)
            assert c.propensity == pytest.approx(want[c.index], abs=1e-12)
            assert c.propensity_se == 0.0
            assert c.explore == (want[c.index] == 0.05)
            seen[c.index] = seen.get(c.index, 0) + 1
        for i, n in seen.items():  # and the frequencies agree, within 4 sd
            assert abs(n / 3000 - want[i]) < 4 * np.sqrt(want[i] * (1 - want[i]) / 3000)
        assert set(seen) == {0, 1, 2, 3}


def test_epsilon_greedy_explores_less_as_evidence_grows():
    policy = EpsilonGreedy(epsilon=0.5, decay=1.0, min_epsilon=0.0)
    rng = np.random.default_rng(6)
    fresh = [policy.choose(_inp([8, 2], [2, 8], pulls=0), rng).explore for _ in range(2000)]
    known = [policy.choose(_inp([8, 2], [2, 8], pulls=99), rng).explore for _ in range(2000)]
    # explore probability epsilon / k: 0.5 / 2 = 0.25 fresh, 0.005 / 2 = 0.0025 after 99 pulls
    assert abs(np.mean(fresh) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 2000)
    assert np.mean(known) < 0.01


def test_ucb1_bound_by_hand_and_optimism_for_the_little_known_offer():
    inp = _inp([60, 2], [40, 2])
    # t = 104; 0.6 + sqrt(2 ln 104 / 100) = 0.90478; 0.5 + sqrt(2 ln 104 / 4) = 2.02388
    bounds = UpperConfidenceBound(variant="ucb1", c=1.0).bounds(inp)
    np.testing.assert_allclose(bounds, [0.904775, 2.023875], atol=1e-6)
    c = UpperConfidenceBound(variant="ucb1").choose(inp, np.random.default_rng(0))
    assert (c.index, c.propensity, c.explore) == (1, 1.0, True)
    # Without the confidence term UCB1 is greedy.
    c = UpperConfidenceBound(variant="ucb1", c=0.0).choose(inp, np.random.default_rng(0))
    assert (c.index, c.explore) == (0, False)


def test_bayes_ucb_is_the_posterior_quantile_at_one_minus_one_over_t():
    # Beta(1, 1) is uniform: its q-quantile is q. Here t = 2 + 2 + 6 = 10, q = 0.9.
    inp = _inp([1, 1, 3], [1, 1, 3])
    bounds = UpperConfidenceBound(variant="bayes").bounds(inp)
    assert bounds[0] == pytest.approx(0.9, abs=1e-12)
    # Beta(3, 3) has mean 0.5 but a narrower posterior, so a lower 0.9 quantile than Beta(1, 1).
    assert 0.5 < bounds[2] < 0.9


def test_value_weighted_ucb_multiplies_the_bound_by_value():
    inp = _inp([50, 50], [50, 50], values=[1.0, 2.0])
    c = UpperConfidenceBound(value_weighted=True).choose(inp, np.random.default_rng(0))
    assert c.index == 1 and c.propensity == 1.0
