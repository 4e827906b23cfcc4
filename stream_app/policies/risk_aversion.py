"""Risk aversion: rank offers by a lower credible bound of their response rate.

A risk-averse decision maker prefers a known quantity: at equal posterior mean, the offer with more
evidence (lower posterior variance) has the higher lower bound and wins. The bound is the
``lower_quantile`` quantile of the Beta posterior (``scipy.special.betaincinv``). The policy is
deterministic; ties split uniformly at random with exact propensity ``1 / (number tied)``.

Two offers with mean 0.5, one well known (Beta(50, 50)) and one barely tried (Beta(2, 2)):

>>> from stream_app.policies.base import PolicyInput
>>> inp = PolicyInput(alpha=np.array([2.0, 50.0]), beta=np.array([2.0, 50.0]),
...                   values=np.ones(2), urgent=np.zeros(2, bool))
>>> policy = RiskAversion(lower_quantile=0.05)
>>> np.round(policy.lower_bounds(inp), 3).tolist()
[0.135, 0.418]
>>> c = policy.choose(inp, np.random.default_rng(0))
>>> c.index, c.propensity
(1, 1.0)
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaincinv

from stream_app.policies.base import Choice, PolicyInput, check, flag, deterministic_choice


class RiskAversion:
    name = "risk_aversion"

    def __init__(self, lower_quantile: float = 0.05, value_weighted: bool = False) -> None:
        check(0.0 < lower_quantile < 0.5, "lower_quantile must be in (0, 0.5)")
        self.lower_quantile = float(lower_quantile)
        self.value_weighted = flag(value_weighted, "value_weighted")

    def lower_bounds(self, inp: PolicyInput) -> np.ndarray:
        """The ``lower_quantile`` quantile of each candidate's Beta posterior."""
        return betaincinv(inp.alpha, inp.beta, self.lower_quantile)

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        scores = self.lower_bounds(inp)
        if self.value_weighted:
            scores *= inp.values
        return deterministic_choice(scores, inp.mean(self.value_weighted), rng)
