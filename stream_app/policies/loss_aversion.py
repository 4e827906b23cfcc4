"""Loss aversion: urgency framing for customers who respond to scarcity.

An urgency- or scarcity-framed offer ("only today", "3 left") presents *not* acting as a loss.
Prospect theory says losses weigh ``loss_aversion`` (about 2.25) times as much as gains, but only
customers whose history shows they react to such framing are moved by it. The policy draws a
response rate per offer from its Beta posterior (Thompson sampling), then multiplies the draws of
urgent offers by::

    w = 1 + (loss_aversion - 1) * clip(scarcity_affinity / affinity_scale, 0, 1)

so a customer with no or negative scarcity affinity gets plain Thompson sampling, and a customer
whose urgent response rate exceeds their neutral one by ``affinity_scale`` or more gets the full
loss-aversion weight. ``scarcity_affinity`` (below) computes the affinity from the customer's
evidence; it generalises to urgent offers the customer has never seen. The propensity is a
Monte-Carlo estimate over ``propensity_draws`` joint draws, as in Thompson sampling.

>>> from stream_app.policies.base import PolicyInput
>>> succ, fail, urgent = np.array([8.0, 1.0]), np.array([2.0, 9.0]), np.array([True, False])
>>> round(scarcity_affinity(succ, fail, urgent, strength=2.0), 4)  # (8 - 1) / (10 + 2)
0.5833
>>> LossAversion(loss_aversion=2.0, affinity_scale=0.2).weights(urgent, 0.05).tolist()
[1.25, 1.0]
"""

from __future__ import annotations

import numpy as np

from stream_app.policies.base import Choice, PolicyInput, check, flag, monte_carlo_choice


def scarcity_affinity(
    succ: np.ndarray, fail: np.ndarray, urgent: np.ndarray, strength: float = 2.0
) -> float:
    """Customer's response rate on urgent offers minus that on neutral offers.

    ``succ`` / ``fail`` are the customer's evidence (``Arms.evidence``) over the offers flagged by
    ``urgent`` (best: the whole catalogue, ``EngineConfig.offer_urgent``). Each rate is pooled over
    its framing and shrunk toward the customer's overall rate ``r = (S + 1) / (N + 2)`` with
    ``strength`` pseudo-observations, so a handful of outcomes cannot make a large affinity:
    ``r_u = (S_u + strength * r) / (N_u + strength)``, likewise ``r_n``; the result is
    ``r_u - r_n``, 0 for a customer without evidence.
    """
    urgent = np.asarray(urgent, bool)
    s_u, s_n = float(succ[urgent].sum()), float(succ[~urgent].sum())
    n_u, n_n = s_u + float(fail[urgent].sum()), s_n + float(fail[~urgent].sum())
    overall = (s_u + s_n + 1.0) / (n_u + n_n + 2.0)
    r_u = (s_u + strength * overall) / (n_u + strength)
    r_n = (s_n + strength * overall) / (n_n + strength)
    return r_u - r_n


class LossAversion:
    name = "loss_aversion"

    def __init__(
        self,
        loss_aversion: float = 2.25,
        affinity_scale: float = 0.2,
        propensity_draws: int = 512,
        value_weighted: bool = False,
    ) -> None:
        check(loss_aversion >= 1.0, "loss_aversion must be >= 1")
        check(affinity_scale > 0.0, "affinity_scale must be > 0")
        check(int(propensity_draws) >= 1, "propensity_draws must be >= 1")
        self.loss_aversion = float(loss_aversion)
        self.affinity_scale = float(affinity_scale)
        self.propensity_draws = int(propensity_draws)
        self.value_weighted = flag(value_weighted, "value_weighted")

    def weights(self, urgent: np.ndarray, affinity: float) -> np.ndarray:
        """Weight per candidate: above 1 only for urgent offers shown to responsive customers."""
        s = min(max(affinity / self.affinity_scale, 0.0), 1.0)
        return 1.0 + (self.loss_aversion - 1.0) * s * np.asarray(urgent, np.float64)

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        draws = rng.beta(inp.alpha, inp.beta, size=(self.propensity_draws + 1, len(inp)))
        w = self.weights(inp.urgent, inp.scarcity_affinity)
        if self.value_weighted:
            w = w * inp.values
        draws *= w
        return monte_carlo_choice(draws, inp.mean() * w)
