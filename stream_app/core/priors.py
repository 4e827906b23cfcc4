"""Hierarchical Beta prior: a customer's arms shrunk toward their segment, the segment toward all.

``Arms`` store evidence only (decayed success / failure counts). A policy needs a posterior, and a
new customer should not start from a flat prior but from what their segment responds to. Three
levels, vectorised over the candidate offers (all arrays aligned to the same offer keys)::

    global posterior     a_g = a0 + S_g                       b_g = b0 + F_g
                         mu_g = a_g / (a_g + b_g)
    segment posterior    a_s = m_g * mu_g + S_s               b_s = m_g * (1 - mu_g) + F_s
                         mu_s = a_s / (a_s + b_s)
    customer posterior   alpha = m_s * mu_s + S_c             beta = m_s * (1 - mu_s) + F_c

``m_g`` (``segment_strength``) is how many pseudo-observations of the global mean a segment's
estimate starts from; ``m_s`` (``prior_strength``) is how many pseudo-observations of the segment
mean a customer starts from. A new customer (no evidence) therefore has posterior mean ``mu_s``,
their segment's shrunk response rate per offer, and their own evidence takes over once it
outweighs ``m_s`` observations.

With ``propensity_strength`` ``k > 0`` the customer level also starts from the fleet's per-offer
propensity model (``ModelSuite.offer_propensities``: P(respond | this customer's profile, the
offer)): ``k * t`` more pseudo-observations of the model's prediction ``p``, ``t`` the model's
maturity in [0, 1]::

    alpha = m_s * mu_s + k t p + S_c        beta = m_s * (1 - mu_s) + k t (1 - p) + F_c

``drift_half_life_s`` / ``drift_window_s`` say how the use case's pooled evidence forgets after
a drift alarm (``models/reward_drift.py``).

>>> prior = HierarchicalPrior(a0=1.0, b0=1.0, segment_strength=10.0, prior_strength=10.0)
>>> population = (np.array([9.0, 1.0]), np.array([9.0, 17.0]))   # mu_g = [0.5, 0.1]
>>> segment = (np.array([0.0, 9.0]), np.array([10.0, 1.0]))      # mu_s = [5/20, 10/20]
>>> alpha, beta = prior.posterior((np.zeros(2), np.zeros(2)), segment, population)
>>> alpha.tolist(), beta.tolist()                                 # new customer: 10 * mu_s
([2.5, 5.0], [7.5, 5.0])
>>> customer = (np.array([1.0, 0.0]), np.array([0.0, 2.0]))
>>> alpha, beta = prior.posterior(customer, segment, population)
>>> alpha.tolist(), beta.tolist()
([3.5, 5.0], [7.5, 7.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping

import numpy as np

Evidence = tuple[np.ndarray, np.ndarray]  # (successes, failures), as returned by Arms.evidence


@dataclass(frozen=True, slots=True)
class HierarchicalPrior:
    a0: float = 1.0
    b0: float = 1.0
    segment_strength: float = 20.0  # m_g
    prior_strength: float = 10.0  # m_s
    propensity_strength: float = 0.0  # k: pseudo-observations of the propensity model (0: off)
    # after a drift alarm of the use case, its pooled evidence forgets faster for a while
    # (``models.reward_drift.pooled_half_life``); None: no response to an alarm
    drift_half_life_s: float | None = None
    drift_window_s: float = 43_200.0

    def __post_init__(self) -> None:
        for name in ("a0", "b0", "segment_strength", "prior_strength"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
                raise ValueError(f"prior setting {name} must be a number > 0, got {value!r}")
        for name in ("drift_half_life_s", "drift_window_s"):
            value = getattr(self, name)
            if value is None and name == "drift_half_life_s":
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
                raise ValueError(f"prior setting {name} must be a number > 0, got {value!r}")
        k = self.propensity_strength
        if isinstance(k, bool) or not isinstance(k, Real) or not k >= 0:
            raise ValueError(f"prior setting propensity_strength must be a number >= 0, got {k!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> HierarchicalPrior:
        """Build from configuration (a use case's ``params["prior"]``), or raise ``ValueError``."""
        params = dict(params or {})
        unknown = set(params) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown prior settings {sorted(unknown)}")
        return cls(**params)

    def segment_mean(self, segment: Evidence, population: Evidence) -> np.ndarray:
        """``mu_s``: the segment's response rate per offer, shrunk toward the global one."""
        a_g, b_g = self.a0 + population[0], self.b0 + population[1]
        m = self.segment_strength / (a_g + b_g)
        a_s, b_s = m * a_g + segment[0], m * b_g + segment[1]
        return a_s / (a_s + b_s)

    def posterior(
        self,
        customer: Evidence,
        segment: Evidence | None = None,
        population: Evidence | None = None,
        propensity: Evidence | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beta ``(alpha, beta)`` per offer for one customer; a missing level has no evidence.
        ``propensity``: the model's ``(p, maturity)`` per offer, read when
        ``propensity_strength > 0``."""
        k = len(customer[0])
        if segment is None or population is None:
            none = (np.zeros(k), np.zeros(k))
            segment = none if segment is None else segment
            population = none if population is None else population
        for evidence in (customer, segment, population):
            _check_aligned(evidence, k)
        mu_s = self.segment_mean(segment, population)
        m = self.prior_strength
        alpha, beta = m * mu_s + customer[0], m * (1.0 - mu_s) + customer[1]
        if propensity is not None and self.propensity_strength > 0:
            _check_aligned(propensity, k)
            p, n = propensity[0], self.propensity_strength * propensity[1]
            alpha, beta = alpha + n * p, beta + n * (1.0 - p)
        return alpha, beta


def _check_aligned(evidence: Evidence, k: int) -> None:
    if len(evidence) != 2 or len(evidence[0]) != k or len(evidence[1]) != k:
        raise ValueError(f"evidence must be (successes, failures) of length {k}")
