"""One contract, every policy in the registry.

Reproducible (same seed, same choice), pure (the input is not mutated), well-formed (a score per
candidate, propensity in (0, 1]), and honest: the propensity it logs for an offer matches how
often it actually picks that offer.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.policies import (
    CONTEXTUAL_POLICY_NAMES,
    POLICY_NAMES,
    LinearArms,
    PolicyInput,
    make_policy,
)

CALLS = 4000
KEYS = np.array([11, 22, 33, 44], np.uint32)


def _linear_state() -> LinearArms:
    rng = np.random.default_rng(99)
    state = LinearArms(dim=3, ridge=1.0)
    for _ in range(40):
        x = np.array([1.0, *rng.normal(size=2)])
        for key, slope in zip(KEYS[:3], (0.2, 0.25, -0.1)):
            state.update(int(key), x, reward=float(rng.random() < 0.5 + slope * x[1]))
    return state


def _input() -> PolicyInput:
    # Offers 0 and 1 are identical and best by mean: deterministic policies must split the tie.
    return PolicyInput(
        alpha=np.array([5.0, 5.0, 2.0, 3.0]),
        beta=np.array([2.0, 2.0, 4.0, 3.0]),
        values=np.array([1.0, 1.0, 2.0, 1.5]),
        urgent=np.array([False, False, True, True]),
        features=np.array([1.0, 0.3, -0.2]),
        pulls=7.0,
        scarcity_affinity=0.1,
        offer_keys=KEYS,
        linear=_linear_state(),
    )


def _copy(inp: PolicyInput) -> dict:
    return {
        f: (getattr(inp, f).copy() if isinstance(getattr(inp, f), np.ndarray) else getattr(inp, f))
        for f in ("alpha", "beta", "values", "urgent", "features", "offer_keys")
    }


@pytest.fixture(scope="module")
def inp() -> PolicyInput:
    return _input()


def test_registry_lists_every_policy_once():
    assert len(POLICY_NAMES) == len(set(POLICY_NAMES)) == 8
    assert set(CONTEXTUAL_POLICY_NAMES) <= set(POLICY_NAMES)
    for name in POLICY_NAMES:
        assert make_policy(name, {}).name == name


@pytest.mark.parametrize(
    "name, params, reason",
    [
        ("nope", {}, "unknown policy 'nope'"),
        ("thompson", {"draws": 3}, "no parameter 'draws'"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon must be in"),
        ("epsilon_greedy", {"epsilon": "lots"}, "epsilon_greedy"),
        ("ucb", {"variant": "kl"}, "variant must be one of"),
        ("risk_aversion", {"lower_quantile": 0.7}, "lower_quantile"),
        ("prospect_theory", {"gamma": 0.1}, "gamma"),
        ("linucb", {"alpha": -1}, "alpha must be"),
        ("thompson", {"value_weighted": "false"}, "value_weighted must be true or false"),
    ],
)
def test_bad_names_and_params_raise_value_error(name, params, reason):
    with pytest.raises(ValueError, match=reason):
        make_policy(name, params)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_same_seed_same_choice(name, inp):
    policy = make_policy(name, {})
    for seed in range(20):
        a = policy.choose(inp, np.random.default_rng(seed))
        b = make_policy(name, {}).choose(inp, np.random.default_rng(seed))
        assert (a.index, a.propensity, a.propensity_se, a.explore) == (
            b.index, b.propensity, b.propensity_se, b.explore)
        np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_choose_is_pure_and_well_formed(name, inp):
    before, state = _copy(inp), inp.linear.encode()
    np.random.seed(0)  # the global generator must play no part
    c = make_policy(name, {}).choose(inp, np.random.default_rng(1))
    assert 0 <= c.index < len(inp) and isinstance(c.index, int)
    assert c.scores.shape == (len(inp),) and np.isfinite(c.scores).all()
    assert 0.0 < c.propensity <= 1.0 and 0.0 <= c.propensity_se <= 0.5
    for field, value in before.items():
        np.testing.assert_array_equal(getattr(inp, field), value)
    assert inp.linear.encode() == state


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_single_candidate_is_chosen_with_certainty(name, inp):
    one = PolicyInput(inp.alpha[:1], inp.beta[:1], inp.values[:1], inp.urgent[:1],
                      features=inp.features, offer_keys=inp.offer_keys[:1], linear=inp.linear)
    c = make_policy(name, {}).choose(one, np.random.default_rng(0))
    assert (c.index, c.propensity, c.propensity_se, c.explore) == (0, 1.0, 0.0, False)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_logged_propensities_match_choice_frequencies(name, inp):
    policy = make_policy(name, {})
    rng = np.random.default_rng(20240)
    index = np.empty(CALLS, int)
    logged, se = np.empty(CALLS), np.empty(CALLS)
    for t in range(CALLS):
        c = policy.choose(inp, rng)
        index[t], logged[t], se[t] = c.index, c.propensity, c.propensity_se
    # A Monte-Carlo propensity (se > 0) from n = 513 draws, the deciding one included, is biased
    # upward by at most 1 / n, on top of the sampling noise of the frequency (4 standard
    # deviations); an exact one (se == 0) has no bias.
    bias = 1.0 / 513 if np.any(se > 0) else 0.0
    total = 0.0
    for arm in np.unique(index):
        freq = np.mean(index == arm)
        p_logged = logged[index == arm].mean()
        assert abs(p_logged - freq) <= 4 * np.sqrt(freq * (1 - freq) / CALLS) + bias + 1e-12, arm
        total += p_logged
    # Propensities of the offers a policy can pick sum to one (offers it never picked in 4000
    # calls have probability < 1e-3 with overwhelming confidence).
    assert total == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("name", ["ucb", "risk_aversion"])
def test_deterministic_policies_split_a_tie_exactly(name, inp):
    rng = np.random.default_rng(8)
    choices = [make_policy(name, {}).choose(inp, rng) for _ in range(400)]
    assert {c.index for c in choices} == {0, 1}
    assert {c.propensity for c in choices} == {0.5}


@pytest.mark.parametrize("name", CONTEXTUAL_POLICY_NAMES)
def test_contextual_policies_need_features(name, inp):
    no_features = PolicyInput(inp.alpha, inp.beta, inp.values, inp.urgent)
    with pytest.raises(ValueError, match="features"):
        make_policy(name, {}).choose(no_features, np.random.default_rng(0))
