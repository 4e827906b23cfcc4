"""Upper confidence bound policies on the Beta pseudo-counts: Bayes-UCB and UCB1.

Both are deterministic: the offer with the highest upper bound is shown, ties split uniformly at
random, so the propensity is exactly ``1 / (number of tied offers)``. The "round" ``t`` is the
total pseudo-count ``sum(alpha + beta)`` and an offer's pull count is ``n = alpha + beta``, so the
bound reads only the posterior (prior pseudo-counts included) and needs no extra state.

- ``bayes`` (Kaufmann et al. 2012): the ``1 - 1 / t`` quantile of the Beta posterior.
- ``ucb1`` (Auer et al. 2002): ``mean + c * sqrt(2 ln t / n)``.

An offer with little evidence gets a wide bound and is tried even if its mean is lower:

>>> from stream_app.policies.base import PolicyInput
>>> inp = PolicyInput(alpha=np.array([60.0, 2.0]), beta=np.array([40.0, 2.0]),
...                   values=np.ones(2), urgent=np.zeros(2, bool))
>>> c = UpperConfidenceBound(variant="ucb1").choose(inp, np.random.default_rng(0))
>>> c.index, c.propensity, c.explore
(1, 1.0, True)
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaincinv

from stream_app.policies.base import Choice, PolicyInput, check, flag, deterministic_choice

VARIANTS = ("bayes", "ucb1")


class UpperConfidenceBound:
    name = "ucb"

    def __init__(self, variant: str = "bayes", c: float = 1.0, value_weighted: bool = False):
        check(variant in VARIANTS, f"variant must be one of {VARIANTS}")
        check(c >= 0.0, "c must be >= 0")
        self.variant = variant
        self.c = float(c)
        self.value_weighted = flag(value_weighted, "value_weighted")

    def bounds(self, inp: PolicyInput) -> np.ndarray:
        """Upper bound on the response rate of every candidate."""
        n = inp.alpha + inp.beta
        t = max(float(n.sum()), 2.0)
        if self.variant == "bayes":
            return betaincinv(inp.alpha, inp.beta, 1.0 - 1.0 / t)
        return inp.alpha / n + self.c * np.sqrt(2.0 * np.log(t) / n)

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        scores = self.bounds(inp)
        if self.value_weighted:
            scores *= inp.values
        return deterministic_choice(scores, inp.mean(self.value_weighted), rng)
