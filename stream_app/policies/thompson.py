"""Thompson sampling over Beta-Bernoulli arms.

One posterior draw per candidate picks the offer. Its propensity, the probability that the offer
wins such a draw, has no closed form for more than two arms; by default it is computed by
numerical integration (``beta_max.win_probabilities``: deterministic, error below 3e-3, reported
as ``propensity_se = 0``). With ``propensity_draws`` set it is instead estimated from that many
further joint draws (Monte Carlo), with standard error ``sqrt(p (1 - p) / draws)``; a caller that
only needs the choice (``propensity_draws=1``) pays for two draws.

With ``value_weighted`` each draw is multiplied by the offer's business value, so the policy
maximises sampled expected value rather than sampled response rate; the integral then no longer
reduces to one CDF per arm, so its propensity is Monte Carlo (512 draws unless set).

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

from stream_app.policies.base import (
    Choice,
    PolicyInput,
    check,
    flag,
    is_explore,
    monte_carlo_choice,
)
from stream_app.policies.beta_max import win_probabilities

DEFAULT_DRAWS = 512  # Monte Carlo draws where the propensity is not integrated
MIN_PROPENSITY = 1e-9  # floor of an integrated propensity (an offer that was drawn had a chance)


class ThompsonSampling:
    name = "thompson"

    def __init__(self, propensity_draws: int | None = None, value_weighted: bool = False) -> None:
        check(propensity_draws is None or int(propensity_draws) >= 1,
              "propensity_draws must be >= 1")
        self.propensity_draws = None if propensity_draws is None else int(propensity_draws)
        self.value_weighted = flag(value_weighted, "value_weighted")

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        if self.propensity_draws is None and not self.value_weighted:
            scores = rng.beta(inp.alpha, inp.beta)
            index = int(scores.argmax())
            p = max(float(win_probabilities(inp.alpha, inp.beta)[index]), MIN_PROPENSITY)
            return Choice(index=index, scores=scores, propensity=min(p, 1.0),
                          explore=is_explore(inp.mean(), index))
        draws = rng.beta(inp.alpha, inp.beta,
                         size=((self.propensity_draws or DEFAULT_DRAWS) + 1, len(inp)))
        if self.value_weighted:
            draws *= inp.values
        return monte_carlo_choice(draws, inp.mean(self.value_weighted))
