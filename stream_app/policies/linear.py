"""Contextual policies on the request's features: linear Thompson sampling and LinUCB.

Both read the per-offer ridge regressions in ``inp.linear`` (``LinearArms``, keyed by
``inp.offer_keys``) at the feature vector ``x = inp.features`` shared by all candidates. For each
offer that gives a predicted reward ``m_a = x . theta_a`` and a variance factor
``s_a = x A_a^-1 x``. Without state (``inp.linear is None``) every offer has the ridge-1 prior.

- ``LinearThompson`` (Agrawal & Goyal 2013): with disjoint per-offer models the sampled score
  ``x . theta~_a``, ``theta~_a ~ N(theta_a, v^2 A_a^-1)``, is exactly ``N(m_a, v^2 s_a)`` and
  independent across offers, so one normal draw per offer suffices. The propensity is a
  Monte-Carlo estimate over ``propensity_draws`` further joint draws, with its standard error.
- ``LinUCB`` (Li et al. 2010): ``m_a + alpha sqrt(s_a)``, deterministic, ties split uniformly
  with exact propensity ``1 / (number tied)``.

>>> from stream_app.policies.base import PolicyInput
>>> from stream_app.policies.linear_arms import LinearArms
>>> state = LinearArms(dim=2)
>>> for _ in range(50):
...     state.update(1, np.array([1.0, 1.0]), reward=1.0)
...     state.update(2, np.array([1.0, 1.0]), reward=0.0)
>>> inp = PolicyInput(alpha=np.ones(2), beta=np.ones(2), values=np.ones(2),
...                   urgent=np.zeros(2, bool), features=np.array([1.0, 1.0]),
...                   offer_keys=np.array([1, 2], np.uint32), linear=state)
>>> LinUCB(alpha=1.0).choose(inp, np.random.default_rng(0)).index
0
"""

from __future__ import annotations

import numpy as np

from stream_app.policies.base import (
    Choice,
    PolicyInput,
    check,
    deterministic_choice,
    monte_carlo_choice,
)
from stream_app.policies.linear_arms import LinearArms


def linear_estimate(inp: PolicyInput) -> tuple[np.ndarray, np.ndarray]:
    """Predicted reward and variance factor per candidate, from ``inp.linear`` at the features."""
    if inp.features is None:
        raise ValueError("contextual policies need request features (PolicyInput.features)")
    x = np.asarray(inp.features, np.float64)
    if inp.linear is None:
        return LinearArms(dim=len(x)).estimate(np.zeros(len(inp), np.uint32), x)
    if inp.offer_keys is None or len(inp.offer_keys) != len(inp):
        raise ValueError("contextual policies need one offer key per candidate (offer_keys)")
    return inp.linear.estimate(inp.offer_keys, x, now_ms=inp.now_ms)


class LinearThompson:
    name = "linear_thompson"

    def __init__(self, exploration: float = 0.5, propensity_draws: int = 512) -> None:
        check(exploration > 0.0, "exploration must be > 0")
        check(int(propensity_draws) >= 1, "propensity_draws must be >= 1")
        self.exploration = float(exploration)
        self.propensity_draws = int(propensity_draws)

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        mean, var = linear_estimate(inp)
        draws = rng.standard_normal((self.propensity_draws + 1, len(inp)))
        draws *= self.exploration * np.sqrt(var)
        draws += mean
        return monte_carlo_choice(draws, mean)


class LinUCB:
    name = "linucb"

    def __init__(self, alpha: float = 1.0) -> None:
        check(alpha >= 0.0, "alpha must be >= 0")
        self.alpha = float(alpha)

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        mean, var = linear_estimate(inp)
        return deterministic_choice(mean + self.alpha * np.sqrt(var), mean, rng)
