"""Contextual state and policies: ridge algebra, codec, bounded size, context-dependent choice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.policies import (
    LinearArms,
    LinearArmsCodecError,
    LinearThompson,
    LinUCB,
    PolicyInput,
)


def test_sherman_morrison_state_equals_the_ridge_solution():
    rng = np.random.default_rng(3)
    d, ridge = 4, 2.0
    X = rng.normal(size=(60, d))
    y = X @ np.array([0.5, -1.0, 0.2, 0.0]) + 0.1 * rng.normal(size=60)
    state = LinearArms(dim=d, ridge=ridge)
    for x, r in zip(X, y):
        state.update(5, x, r)
    # Independent: theta = (X^T X + ridge I)^-1 X^T y, by a linear solve.
    a = X.T @ X + ridge * np.eye(d)
    theta = np.linalg.solve(a, X.T @ y)
    np.testing.assert_allclose(state.theta(5), theta, rtol=1e-9, atol=1e-12)
    x = rng.normal(size=d)
    mean, var = state.estimate(np.array([5, 6], np.uint32), x)
    assert mean[0] == pytest.approx(x @ theta, rel=1e-9)
    assert var[0] == pytest.approx(x @ np.linalg.solve(a, x), rel=1e-9)
    assert (mean[1], var[1]) == (0.0, pytest.approx(x @ x / ridge))  # never seen: the prior


updates = st.lists(
    st.tuples(
        st.sampled_from([3, 17, 2**32 - 1, 123456]),
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3),
        st.floats(-2, 2, allow_nan=False),
    ),
    max_size=30,
)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(updates, st.integers(1, 4))
def test_codec_round_trip(events, max_offers):
    state = LinearArms(dim=3, ridge=0.5, max_offers=max_offers)
    for key, x, r in events:
        state.update(key, np.array(x), r)
    blob = state.encode()
    back = LinearArms.decode(blob)
    assert back == state and back.encode() == blob
    x = np.array([1.0, -0.5, 2.0])
    keys = np.array([3, 17, 99], np.uint32)
    for got, want in zip(back.estimate(keys, x), state.estimate(keys, x)):
        np.testing.assert_array_equal(got, want)


def test_state_size_is_bounded_and_evicts_the_least_recently_updated_offer():
    d, cap = 5, 8
    state = LinearArms(dim=d, max_offers=cap)
    x = np.ones(d)
    for key in range(20):
        state.update(key, x, 1.0)
        state.update(0, x, 1.0)  # offer 0 stays recent, so it is never evicted
    assert len(state) == cap
    assert state.keys.tolist() == [0, 13, 14, 15, 16, 17, 18, 19]
    # header 36 bytes; a record holds key, updates, last tick, last event time, b (d) and the
    # upper triangle of S (the data part of A)
    record = 4 + 4 + 8 + 8 + 8 * d + 8 * d * (d + 1) // 2
    assert len(state.encode()) == 36 + cap * record


def test_pruned_forgets_retired_offers():
    state = LinearArms(dim=2)
    for key in (1, 2, 3):
        state.update(key, np.array([1.0, 0.0]), 1.0)
    state.pruned(np.array([1, 3], np.uint32))
    assert state.keys.tolist() == [1, 3]


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda b: b[:10], "shorter than its header"),
        (lambda b: bytes([9]) + b[1:], "unknown contextual state version"),
        (lambda b: b[:-8], "length does not match"),
    ],
)
def test_corrupt_state_raises_a_codec_error(mangle, reason):
    state = LinearArms(dim=2)
    state.update(1, np.array([1.0, 2.0]), 1.0)
    with pytest.raises(LinearArmsCodecError, match=reason):
        LinearArms.decode(mangle(state.encode()))


def test_bad_updates_are_rejected():
    state = LinearArms(dim=2)
    with pytest.raises(ValueError, match="features"):
        state.update(1, np.array([1.0, np.nan]), 1.0)
    with pytest.raises(ValueError, match="features"):
        state.update(1, np.array([1.0, 2.0, 3.0]), 1.0)
    assert len(state) == 0


def _trained_state(seed: int) -> LinearArms:
    # Features [1, s]: offer 1 responds at 0.7 when s = 0 and 0.2 when s = 1; offer 2 the reverse.
    rng = np.random.default_rng(seed)
    state = LinearArms(dim=2)
    rates = {1: (0.7, 0.2), 2: (0.2, 0.7)}
    for _ in range(300):
        s = int(rng.integers(2))
        for key, rate in rates.items():
            state.update(key, np.array([1.0, s]), float(rng.random() < rate[s]))
    return state


@pytest.mark.parametrize("policy", [LinUCB(alpha=1.0), LinearThompson(exploration=0.5)])
def test_contextual_policy_picks_the_offer_that_suits_the_context(policy):
    state = _trained_state(seed=12)
    rng = np.random.default_rng(0)
    for s, best in ((0.0, 0), (1.0, 1)):
        inp = PolicyInput(np.ones(2), np.ones(2), np.ones(2), np.zeros(2, bool),
                          features=np.array([1.0, s]), offer_keys=np.array([1, 2], np.uint32),
                          linear=state)
        picks = [policy.choose(inp, rng).index for _ in range(200)]
        # ~150 outcomes per offer and context: the 0.5 gap is > 10 posterior sd, so ~always right
        assert np.mean(np.array(picks) == best) > 0.95


def test_linear_thompson_explores_an_unseen_offer_and_reports_its_propensity():
    state = _trained_state(seed=12)
    inp = PolicyInput(np.ones(3), np.ones(3), np.ones(3), np.zeros(3, bool),
                      features=np.array([1.0, 0.0]), offer_keys=np.array([1, 2, 77], np.uint32),
                      linear=state)
    rng = np.random.default_rng(1)
    choices = [LinearThompson(exploration=0.5).choose(inp, rng) for _ in range(1000)]
    unseen = [c for c in choices if c.index == 2]
    # Prior for the unseen offer: N(0, 0.5^2 * 1) against ~N(0.7, small) -> P(win) ~ 8 %.
    assert 0.03 < len(unseen) / 1000 < 0.15
    assert all(c.explore and c.propensity_se > 0 for c in unseen)


def test_forgetting_is_an_exponentially_weighted_ridge_that_never_decays_the_prior():
    rng = np.random.default_rng(8)
    d, ridge, half_life_s = 3, 1.5, 7200.0
    state = LinearArms(dim=d, ridge=ridge, half_life_s=half_life_s)
    X = rng.normal(size=(40, d))
    y = rng.normal(size=40)
    ts = np.sort(rng.integers(0, 20 * 3_600_000, 40))
    for x, r, t in zip(X, y, ts):
        state.update(4, x, r, now_ms=int(t))
    now = int(ts[-1]) + 5 * 3_600_000
    w = 0.5 ** ((now - ts) / 1000.0 / half_life_s)  # independent: weighted ridge at ``now``
    a = (X * w[:, None]).T @ X + ridge * np.eye(d)
    theta = np.linalg.solve(a, (X * w[:, None]).T @ y)
    np.testing.assert_allclose(state.theta(4, now_ms=now), theta, rtol=1e-8, atol=1e-12)
    x = rng.normal(size=d)
    mean, var = state.estimate(np.array([4], np.uint32), x, now_ms=now)
    assert mean[0] == pytest.approx(x @ theta, rel=1e-8)
    assert var[0] == pytest.approx(x @ np.linalg.solve(a, x), rel=1e-8)
    # long unseen: back to the prior (variance |x|^2 / ridge), never beyond it
    far = now + 1000 * int(half_life_s * 1000)
    mean, var = state.estimate(np.array([4], np.uint32), x, now_ms=far)
    assert abs(mean[0]) < 1e-9 and var[0] == pytest.approx(x @ x / ridge, rel=1e-9)
    back = LinearArms.decode(state.encode())
    assert back == state and back.half_life_s == half_life_s


def test_version_1_state_still_decodes():
    import struct
    d, ridge = 2, 1.0
    x1, x2 = np.array([1.0, 0.5]), np.array([0.0, 2.0])
    a = ridge * np.eye(d) + np.outer(x1, x1) + np.outer(x2, x2)
    b = 1.0 * x1 + 0.0 * x2
    iu = np.triu_indices(d)
    rec = np.zeros(1, [("key", "<u4"), ("updates", "<u4"), ("last", "<u8"), ("b", "<f8", (d,)),
                       ("ainv", "<f8", (3,))])
    rec["key"], rec["updates"], rec["last"], rec["b"] = 9, 2, 2, b
    rec["ainv"] = np.linalg.inv(a)[iu]
    blob = struct.pack("<BxHIIQd", 1, d, 256, 1, 2, ridge) + rec.tobytes()
    state = LinearArms.decode(blob)
    np.testing.assert_allclose(state.theta(9), np.linalg.solve(a, b), rtol=1e-9)
    state.update(9, x1, 1.0)  # and it keeps learning
    assert state.keys.tolist() == [9]
