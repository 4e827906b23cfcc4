"""The fleet's per-offer propensity models as a customer's cold-start prior
(``prior.propensity_strength``)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.core.catalogue import ConfigError, parse_config
from stream_app.core.decision import Decider
from stream_app.core.priors import HierarchicalPrior
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.profile import Profile, apply_interaction
from stream_app.simulator import default_engine_config

DAY = 86_400_000


def test_the_model_adds_k_times_its_maturity_pseudo_observations():
    none = (np.zeros(2), np.zeros(2))
    plain = HierarchicalPrior(prior_strength=10.0)
    modelled = HierarchicalPrior(prior_strength=10.0, propensity_strength=20.0)
    p, trust = np.array([0.9, 0.2]), np.array([1.0, 0.5])
    a0, b0 = plain.posterior(none, none, none, (p, trust))  # off: the model is not read
    a1, b1 = modelled.posterior(none, none, none, (p, trust))
    np.testing.assert_allclose(a1 - a0, 20.0 * trust * p)
    np.testing.assert_allclose(b1 - b0, 20.0 * trust * (1 - p))
    np.testing.assert_allclose(modelled.posterior(none, none, none), plain.posterior(none))


def test_offer_propensities_trust_a_model_by_what_it_learned():
    suite = ModelSuite(SuiteConfig(classifiers=("logreg",), regressors=("mean",),
                                   propensity_prior=50.0))
    profile = apply_interaction(Profile.empty(), {"ts": 0, "type": "transaction",
                                                  "amount": 30.0, "category": "dining"})
    offers = [("gold", False), ("new", True)]
    p, trust = suite.offer_propensities(profile, {"channel": "app"}, offers, DAY)
    assert trust.tolist() == [0.0, 0.0]  # no model yet: no pull on the prior
    for i in range(50):
        suite.learn_outcome(profile, "gold", False, float(i % 2), DAY + i)
    p, trust = suite.offer_propensities(profile, {"channel": "app"}, offers, 2 * DAY)
    assert trust[0] == pytest.approx(0.5) and trust[1] == 0.0
    assert 0.0 <= p[0] <= 1.0 and p[1] == 0.5  # the untrained offer: neutral, and not trusted


def test_propensity_strength_is_checked():
    doc = default_engine_config()
    doc["use_cases"][0]["prior"] = {"propensity_strength": -1}
    with pytest.raises(ConfigError, match="propensity_strength"):
        Decider(parse_config(doc))
