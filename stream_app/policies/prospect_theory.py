"""Prospect theory: choose the offer with the best prospect value, not the best expected value.

An offer is a two-outcome prospect for the customer relationship: with response probability
``theta`` it realises its business ``value``, otherwise nothing. Outcomes are judged relative to a
``reference`` point (what the business expects from a contact), through the Kahneman-Tversky value
function with curvature ``alpha`` for gains, ``beta`` for losses and loss weight ``loss_aversion``
(lambda)::

    v(x) = x ** alpha                  if x >= 0
    v(x) = -lambda * (-x) ** beta      if x < 0

    prospect(theta) = pi(theta) * v(value - reference) + pi(1 - theta) * v(-reference)

with the probability weighting ``pi(p) = p^g / (p^g + (1 - p)^g)^(1 / g)`` (``g = gamma``;
``gamma = 1`` means no weighting), in the separable form of the original 1979 theory. ``theta``
is drawn from each offer's Beta posterior (one draw per offer decides, as in Thompson sampling),
so the policy keeps exploring; the propensity is a Monte-Carlo estimate over ``propensity_draws``
further joint draws. With a reference point above zero a non-response is a loss, so a loss-averse
policy prefers a likely response to a long shot of higher expected value.

Linear value function, reference 0.5: a sure-ish 1.0 offer against a long shot worth 6.0:

>>> policy = ProspectTheory(alpha=1.0, beta=1.0, loss_aversion=2.25, reference=0.5)
>>> policy.prospect(np.array([[0.5, 0.1]]), np.array([1.0, 6.0])).round(4).tolist()
[[-0.3125, -0.4625]]
"""

from __future__ import annotations

import numpy as np

from stream_app.policies.base import Choice, PolicyInput, check, monte_carlo_choice


class ProspectTheory:
    name = "prospect_theory"

    def __init__(
        self,
        alpha: float = 0.88,
        beta: float = 0.88,
        loss_aversion: float = 2.25,
        reference: float = 0.0,
        gamma: float = 1.0,
        propensity_draws: int = 512,
    ) -> None:
        check(0.0 < alpha <= 1.0, "alpha (gain curvature) must be in (0, 1]")
        check(0.0 < beta <= 1.0, "beta (loss curvature) must be in (0, 1]")
        check(loss_aversion > 0.0, "loss_aversion (lambda) must be > 0")
        check(reference >= 0.0, "reference must be >= 0")
        # Below about 0.28 the Tversky-Kahneman weighting function is no longer monotone.
        check(0.3 <= gamma <= 1.0, "gamma (probability weighting) must be in [0.3, 1]")
        check(int(propensity_draws) >= 1, "propensity_draws must be >= 1")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.loss_aversion = float(loss_aversion)
        self.reference = float(reference)
        self.gamma = float(gamma)
        self.propensity_draws = int(propensity_draws)

    def value(self, x: np.ndarray) -> np.ndarray:
        """The Kahneman-Tversky value function, vectorised."""
        x = np.asarray(x, np.float64)
        gains = np.maximum(x, 0.0) ** self.alpha
        losses = -self.loss_aversion * np.maximum(-x, 0.0) ** self.beta
        return np.where(x >= 0.0, gains, losses)

    def weight(self, p: np.ndarray) -> np.ndarray:
        """Probability weighting; the identity when ``gamma == 1``."""
        if self.gamma == 1.0:
            return p
        pg = p**self.gamma
        return pg / (pg + (1.0 - p) ** self.gamma) ** (1.0 / self.gamma)

    def prospect(self, theta: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Prospect value of each offer for response probabilities ``theta`` (any leading shape)."""
        v_respond = self.value(values - self.reference)
        v_ignore = float(self.value(np.array(-self.reference)))
        score = self.weight(theta) * v_respond
        if v_ignore != 0.0:
            score += self.weight(1.0 - theta) * v_ignore
        return score

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        theta = rng.beta(inp.alpha, inp.beta, size=(self.propensity_draws + 1, len(inp)))
        return monte_carlo_choice(
            self.prospect(theta, inp.values), self.prospect(inp.mean(), inp.values)
        )
