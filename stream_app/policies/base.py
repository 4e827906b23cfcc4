"""What every policy takes and returns, and the two ways a propensity is computed.

A policy sees the candidate offers of one request as aligned numpy arrays (posterior Beta
parameters, business values, framing flags, optional context features) and returns a ``Choice``:
the offer it picked, a score per candidate, and the probability with which it picked that offer
given the state (the *propensity*, logged for off-policy evaluation). Where the propensity has no
closed form it is estimated by Monte Carlo and ``propensity_se`` states the standard error.

Every policy follows one protocol (River-like): settings are constructor arguments, ``name`` is a
class attribute, ``choose(inp, rng)`` is pure (it neither mutates ``inp`` nor keeps state) and takes
all its randomness from ``rng``, so the same seed gives the same choice.

Deterministic rankings break ties uniformly at random, so the propensity stays exact:

>>> argmax_ties(np.array([0.2, 0.7, 0.7]), np.random.default_rng(0))[1]
0.5

Monte-Carlo propensities count the deciding draw among the draws (row 0 of ``draws``):

>>> draws = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
>>> c = monte_carlo_choice(draws, greedy=np.array([0.5, 0.5]))
>>> c.index, c.propensity
(0, 0.75)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from stream_app.policies.linear_arms import LinearArms

# Relative tolerance under which two deterministic scores count as a tie.
TIE_RTOL = 1e-12


@dataclass(frozen=True, slots=True)
class PolicyInput:
    alpha: np.ndarray  # Beta posterior alpha per candidate
    beta: np.ndarray  # Beta posterior beta per candidate
    values: np.ndarray  # business value per candidate
    urgent: np.ndarray  # bool: urgency / scarcity framing per candidate
    features: np.ndarray | None = None  # context + profile features, shared by all candidates
    pulls: float = 0.0  # the customer's (decayed) number of observed outcomes: sum of evidence
    scarcity_affinity: float = 0.0  # urgent minus neutral response rate, see ``scarcity_affinity``
    offer_keys: np.ndarray | None = None  # uint32 offer keys per candidate (contextual policies)
    linear: LinearArms | None = None  # population-level contextual state (contextual policies)
    now_ms: int | None = None  # event time of the request (contextual state forgets by it)

    def __len__(self) -> int:
        return len(self.alpha)

    def mean(self, value_weighted: bool = False) -> np.ndarray:
        """Posterior mean response rate per candidate (times its value if ``value_weighted``)."""
        m = self.alpha / (self.alpha + self.beta)
        return m * self.values if value_weighted else m


@dataclass(frozen=True, slots=True)
class Choice:
    index: int  # position in the candidate arrays
    scores: np.ndarray  # the score each candidate got in this draw (higher is better)
    propensity: float  # P(policy picks `index` | state)
    propensity_se: float = 0.0  # standard error of `propensity` (0 when exact)
    explore: bool = False  # picked something other than the current best mean


class Policy(Protocol):
    name: str

    def choose(self, inp: PolicyInput, rng: np.random.Generator) -> Choice: ...


def tied_best(scores: np.ndarray) -> np.ndarray:
    """Positions whose score equals the maximum (up to ``TIE_RTOL``)."""
    best = scores.max()
    return np.flatnonzero(scores >= best - TIE_RTOL * abs(best))


def argmax_ties(scores: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    """The best position, ties broken uniformly at random, and its exact propensity."""
    best = tied_best(scores)
    if len(best) == 1:
        return int(best[0]), 1.0
    return int(best[rng.integers(len(best))]), 1.0 / len(best)


def is_explore(greedy: np.ndarray, index: int) -> bool:
    """True when ``index`` is not among the best by the greedy (posterior-mean) score (the
    test of ``tied_best`` for one position)."""
    best = greedy.max()
    return not bool(greedy[index] >= best - TIE_RTOL * abs(best))


def deterministic_choice(
    scores: np.ndarray, greedy: np.ndarray, rng: np.random.Generator
) -> Choice:
    """Choice of a deterministic ranking: exact propensity 1 / number of tied best scores."""
    index, p = argmax_ties(scores, rng)
    return Choice(index=index, scores=scores, propensity=p, explore=is_explore(greedy, index))


def monte_carlo_choice(draws: np.ndarray, greedy: np.ndarray) -> Choice:
    """Choice of a randomised ranking from ``draws`` of shape ``(n, k)``: row 0 decides.

    The propensity is the share of rows whose argmax is the chosen offer, row 0 included, with
    standard error ``sqrt(p (1 - p) / n)``. Counting the deciding row keeps the estimate above
    zero, and makes its inverse an almost unbiased inverse-propensity weight: the other ``n - 1``
    rows are independent of row 0, so ``n p_hat - 1 ~ Binomial(n - 1, p)`` given the choice, and
    ``E[1 / p_hat | chosen] = (1 - (1 - p)^n) / p``, i.e. ``E[1{chosen} / p_hat] = 1 - (1 - p)^n``.
    """
    scores = draws[0]
    index = int(np.argmax(scores))
    n = draws.shape[0]
    p = float(np.count_nonzero(np.argmax(draws, axis=1) == index)) / n
    se = float(np.sqrt(p * (1.0 - p) / n))
    return Choice(index=index, scores=scores, propensity=p, propensity_se=se,
                  explore=is_explore(greedy, index))


def flag(value: object, name: str) -> bool:
    """A boolean setting; a string such as ``"false"`` is a configuration error, not ``True``."""
    check(isinstance(value, (bool, np.bool_)), f"{name} must be true or false")
    return bool(value)


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: settings fail loudly at construction."""
    if not condition:
        raise ValueError(message)
