"""Thompson sampling over Beta-Bernoulli arms.

One posterior draw per candidate picks the offer. The probability that an offer wins a draw has
no closed form for more than two arms, so the propensity is estimated from ``propensity_draws``
further joint draws (Monte Carlo); its standard error is ``sqrt(p (1 - p) / draws)``, at most
``0.5 / sqrt(draws)`` and reported with the choice.

With ``value_weighted`` each draw is multiplied by the offer's business value, so the policy
maximises sampled expected value rather than sampled response rate.

>>> import numpy as np
>>> from stream_app.policies.base import PolicyInput
>>> inp = PolicyInput(alpha=np.array([90.0, 2.0]), beta=np.array([10.0, 50.0]),
...                   values=np.ones(2), urgent=np.zeros(2, bool))
>>> choice = ThompsonSampling().choose(inp, np.random.default_rng(7))
>>> choice.index, choice.propensity
(0, 1.0)
"""

from __future__ import annotations

import numpy as np

from stream_app.policies.base import Choice, PolicyInput, check, flag, monte_carlo_choice


class ThompsonSampling:
    name = "thompson"

    def __init__(self, propensity_draws: int = 512, value_weighted: bool = False) -> None:
        check(int(propensity_draws) >= 1, "propensity_draws must be >= 1")
        self.propensity_draws = int(propensity_draws)
        self.value_weighted = flag(value_weighted, "value_weighted")

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        draws = rng.beta(inp.alpha, inp.beta, size=(self.propensity_draws + 1, len(inp)))
        if self.value_weighted:
            draws *= inp.values
        return monte_carlo_choice(draws, inp.mean(self.value_weighted))
