"""Expected value: the probability of a response times what the response is worth.

``expected_value`` scores every candidate at once; ``rank_eligible`` orders the ones the rules
left standing, best first (ties keep catalogue order, so the ranking is deterministic).

>>> ev = expected_value(np.array([0.10, 0.05, 0.30]), np.array([5.0, 20.0, 1.0]))
>>> ev.tolist()
[0.5, 1.0, 0.3]
>>> rank_eligible(ev, np.array([True, False, True])).tolist()
[0, 2]
"""

from __future__ import annotations

import numpy as np

__all__ = ["expected_value", "rank_eligible"]


def expected_value(
    propensity: np.ndarray, offer_values: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """``propensity * value`` per offer, times an optional business weight per offer."""
    p = np.asarray(propensity, np.float64)
    v = np.asarray(offer_values, np.float64)
    if p.shape != v.shape:
        raise ValueError(f"propensity {p.shape} and offer_values {v.shape} must align")
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("propensities must be probabilities in [0, 1]")
    ev = p * v
    if weights is not None:
        w = np.asarray(weights, np.float64)
        if w.shape != p.shape or np.any(w < 0):
            raise ValueError("weights must align with the offers and be >= 0")
        ev = ev * w
    return ev


def rank_eligible(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Indices of the eligible offers, highest score first (stable for ties)."""
    idx = np.flatnonzero(np.asarray(eligible, bool))
    order = np.argsort(-np.asarray(scores, np.float64)[idx], kind="stable")
    return idx[order]
