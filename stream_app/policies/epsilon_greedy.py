"""Epsilon-greedy with a decaying exploration rate.

With probability ``1 - epsilon`` the offer with the best posterior mean is shown (ties split
uniformly), otherwise an offer drawn uniformly from all ``k`` candidates. The rate decays with the
customer's amount of evidence ``n = inp.pulls``::

    epsilon(n) = max(min_epsilon, epsilon / (1 + decay * n))

Because ``pulls`` is the *decayed* evidence count, a customer who has been away long enough for
their evidence to fade is explored more again. The propensity is exact: for one of ``g`` tied best
offers ``(1 - epsilon) / g + epsilon / k``, for any other offer ``epsilon / k``.

>>> from stream_app.policies.base import PolicyInput
>>> inp = PolicyInput(alpha=np.array([8.0, 2.0, 2.0, 2.0]), beta=np.array([2.0, 8.0, 8.0, 8.0]),
...                   values=np.ones(4), urgent=np.zeros(4, bool), pulls=20.0)
>>> policy = EpsilonGreedy(epsilon=0.3, decay=0.1, min_epsilon=0.05)
>>> round(policy.epsilon_at(20.0), 12)  # 0.3 / (1 + 0.1 * 20)
0.1
>>> c = policy.choose(inp, np.random.default_rng(1))
>>> c.index, round(c.propensity, 6)  # 0.9 + 0.1 / 4
(0, 0.925)
"""

from __future__ import annotations

import numpy as np

from stream_app.policies.base import Choice, PolicyInput, check, flag, is_explore, tied_best


class EpsilonGreedy:
    name = "epsilon_greedy"

    def __init__(
        self,
        epsilon: float = 0.1,
        decay: float = 0.0,
        min_epsilon: float = 0.01,
        value_weighted: bool = False,
    ) -> None:
        check(0.0 <= epsilon <= 1.0, "epsilon must be in [0, 1]")
        check(decay >= 0.0, "decay must be >= 0")
        check(0.0 <= min_epsilon <= 1.0, "min_epsilon must be in [0, 1]")
        self.epsilon = float(epsilon)
        self.decay = float(decay)
        self.min_epsilon = float(min_epsilon)
        self.value_weighted = flag(value_weighted, "value_weighted")

    def epsilon_at(self, pulls: float) -> float:
        """Exploration rate after ``pulls`` observed outcomes."""
        return max(self.min_epsilon, self.epsilon / (1.0 + self.decay * max(pulls, 0.0)))

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice:
        k = len(inp)
        greedy = inp.mean(self.value_weighted)
        best = tied_best(greedy)
        eps = self.epsilon_at(inp.pulls)
        if rng.random() < eps:
            index = int(rng.integers(k))
        else:
            index = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        explore = is_explore(greedy, index)
        p = eps / k if explore else (1.0 - eps) / len(best) + eps / k
        return Choice(index=index, scores=greedy, propensity=p, explore=explore)
