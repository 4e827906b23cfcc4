"""Hierarchical prior: the formula by hand, and a new customer starting at their segment's best."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.core.arms import Arms, offer_key
from stream_app.core.priors import HierarchicalPrior
from stream_app.policies import PolicyInput, ThompsonSampling

KEYS = np.array([offer_key(o) for o in ("cashback", "travel", "fuel")], np.uint32)


def _arms(counts: dict[str, tuple[int, int]]) -> Arms:
    arms, t = Arms.empty(), 0
    for offer, (succ, fail) in counts.items():
        for reward in [1.0] * succ + [0.0] * fail:
            arms = arms.updated(offer_key(offer), reward, now_ms=t, half_life_s=None)
    return arms


def test_posterior_matches_hand_computed_formula():
    prior = HierarchicalPrior(a0=2.0, b0=2.0, segment_strength=8.0, prior_strength=4.0)
    population = (np.array([18.0, 2.0]), np.array([18.0, 34.0]))
    segment = (np.array([6.0, 0.0]), np.array([2.0, 8.0]))
    customer = (np.array([1.0, 3.0]), np.array([0.0, 1.0]))
    alpha, beta = prior.posterior(customer, segment, population)
    # global: a=[20, 4], b=[20, 36] -> mu_g=[0.5, 0.1]
    # segment: a=8*mu_g+S=[4+6, 0.8+0], b=8*(1-mu_g)+F=[4+2, 7.2+8] -> mu_s=[10/16, 0.8/16]
    # customer: a=4*mu_s+S=[2.5+1, 0.2+3], b=4*(1-mu_s)+F=[1.5+0, 3.8+1]
    np.testing.assert_allclose(alpha, [3.5, 3.2], rtol=1e-12)
    np.testing.assert_allclose(beta, [1.5, 4.8], rtol=1e-12)


def test_missing_levels_fall_back_to_the_flat_global_prior():
    prior = HierarchicalPrior(a0=1.0, b0=3.0, prior_strength=6.0)
    alpha, beta = prior.posterior((np.array([2.0]), np.array([1.0])))
    # mu_g = 1/4 and no segment evidence, so mu_s = 1/4: alpha = 6/4 + 2, beta = 18/4 + 1
    np.testing.assert_allclose([alpha[0], beta[0]], [3.5, 5.5], rtol=1e-12)


def test_segment_evidence_is_shrunk_toward_global_by_segment_strength():
    population = (np.array([0.0]), np.array([0.0]))  # mu_g = 1/2 under Beta(1, 1)
    segment = (np.array([10.0]), np.array([0.0]))
    weak = HierarchicalPrior(segment_strength=1.0).segment_mean(segment, population)
    strong = HierarchicalPrior(segment_strength=90.0).segment_mean(segment, population)
    assert weak[0] == pytest.approx(10.5 / 11.0)  # (0.5 + 10) / (1 + 10)
    assert strong[0] == pytest.approx(55.0 / 100.0)  # (45 + 10) / (90 + 10)


def test_new_customer_starts_near_the_segments_best_offer():
    # The population likes cashback; this segment (say, frequent travellers) likes travel.
    population = _arms({"cashback": (40, 60), "travel": (10, 90), "fuel": (20, 80)})
    segment = _arms({"cashback": (5, 45), "travel": (30, 20), "fuel": (10, 40)})
    prior = HierarchicalPrior()
    alpha, beta = prior.posterior(
        Arms.empty().evidence(KEYS, 0, None),
        segment.evidence(KEYS, 0, None),
        population.evidence(KEYS, 0, None),
    )
    mean = alpha / (alpha + beta)
    assert int(np.argmax(mean)) == 1  # travel, although the population prefers cashback
    # mu_g(travel) = 11/102; mu_s(travel) = (20 * 11/102 + 30) / 70 ~= 0.459
    assert mean[1] == pytest.approx((20 * 11 / 102 + 30) / 70, rel=1e-9)
    assert alpha.sum() + beta.sum() == pytest.approx(3 * prior.prior_strength)
    # Thompson sampling from that prior shows travel to most new customers of the segment.
    inp = PolicyInput(alpha, beta, np.ones(3), np.zeros(3, bool))
    rng = np.random.default_rng(11)
    picks = [ThompsonSampling(propensity_draws=1).choose(inp, rng).index for _ in range(2000)]
    assert np.mean(np.array(picks) == 1) > 0.7


def test_customer_evidence_overrides_the_segment_once_it_outweighs_prior_strength():
    segment = (np.array([30.0, 5.0]), np.array([20.0, 45.0]))  # segment prefers offer 0
    customer = (np.array([0.0, 25.0]), np.array([25.0, 5.0]))  # this customer prefers offer 1
    alpha, beta = HierarchicalPrior(prior_strength=10.0).posterior(customer, segment)
    assert np.argmax(alpha / (alpha + beta)) == 1


@pytest.mark.parametrize(
    "params",
    [{"a0": 0}, {"prior_strength": -1.0}, {"segment_strength": "strong"}, {"bogus": 1}],
)
def test_bad_settings_are_rejected(params):
    with pytest.raises(ValueError):
        HierarchicalPrior.from_params(params)


def test_misaligned_evidence_is_rejected():
    with pytest.raises(ValueError, match="length 2"):
        HierarchicalPrior().posterior((np.zeros(2), np.zeros(2)), (np.zeros(3), np.zeros(3)))
