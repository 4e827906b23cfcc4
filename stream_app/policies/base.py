"""What every policy takes and returns.

A policy sees the candidate offers of one request as aligned numpy arrays (posterior Beta
parameters, business values, framing flags, optional context features) and returns a ``Choice``:
the offer it picked, a score per candidate, and the probability with which it picked that offer
given the state (the *propensity*, logged for off-policy evaluation). Where the propensity has no
closed form it is estimated by Monte Carlo and ``propensity_se`` states the standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PolicyInput:
    alpha: np.ndarray  # Beta posterior alpha per candidate
    beta: np.ndarray  # Beta posterior beta per candidate
    values: np.ndarray  # business value per candidate
    urgent: np.ndarray  # bool: urgency / scarcity framing per candidate
    features: np.ndarray | None = None  # context + profile features, shared by all candidates

    def __len__(self) -> int:
        return len(self.alpha)


@dataclass(frozen=True, slots=True)
class Choice:
    index: int  # position in the candidate arrays
    scores: np.ndarray  # the score each candidate got in this draw (higher is better)
    propensity: float  # P(policy picks `index` | state)
    propensity_se: float = 0.0  # standard error of `propensity` (0 when exact)
    explore: bool = False  # picked something other than the current best mean
