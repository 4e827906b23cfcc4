"""Decision makers the benchmark can run against the simulator, behind one small interface.

An agent has a ``name``, ``act(request, candidates, rng) -> (offer_id, propensity)`` and
``learn(request, offer_id, reward)``. ``propensity`` is the probability the agent had of picking
that offer (NaN when it cannot say, as for River's policies).

- ``PolicyAgent``: any engine policy (``choose(PolicyInput, rng) -> Choice``, e.g.
  ``ThompsonSampling``) over a per-customer ``Arms`` table, optionally shrunk toward a pooled
  arm (``prior_strength`` pseudo-observations at the pooled mean; pooled over everyone, or
  per group with ``pool_by(request) -> key``, e.g. a segment);
- ``RiverAgent``: a ``river.bandit`` policy (``pull`` / ``update``), one for the whole population;
- ``RandomAgent``, ``StaticAgent`` (a fixed ranking, e.g. best on average in hindsight),
  ``OracleAgent`` (reads the ground truth) and ``EpsilonAgent`` (epsilon-uniform around another
  deterministic agent: a logging policy with known propensities).

>>> rng = np.random.default_rng(0)
>>> req = {"customer_id": "c1", "ts": 0, "channel": "app", "context": {}}
>>> RandomAgent().act(req, ("a", "b", "c", "d"), rng)[1]
0.25
>>> EpsilonAgent(StaticAgent(["b", "a"]), epsilon=0.2).act(req, ("a", "b"), rng)
('b', 0.9)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from stream_app.core.arms import Arms
from stream_app.core.catalogue import Offer, offer_key
from stream_app.policies.base import PolicyInput

Request = Mapping[str, Any]


class Agent(Protocol):
    name: str

    def act(
        self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator
    ) -> tuple[str, float]: ...

    def learn(self, request: Request, offer_id: str, reward: float) -> None: ...


class RandomAgent:
    name = "random"

    def act(self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator):
        return candidates[int(rng.integers(len(candidates)))], 1.0 / len(candidates)

    def learn(self, request: Request, offer_id: str, reward: float) -> None:
        pass


class StaticAgent:
    """Always the first available offer of a fixed ranking."""

    def __init__(self, ranking: Sequence[str], name: str = "static_best") -> None:
        self.ranking = list(ranking)
        self.name = name

    def act(self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator):
        for offer in self.ranking:
            if offer in candidates:
                return offer, 1.0
        return candidates[0], 1.0

    def learn(self, request: Request, offer_id: str, reward: float) -> None:
        pass


class OracleAgent:
    """The offer with the highest true response probability (``simulation.true_probs``)."""

    name = "oracle"

    def __init__(self, simulation: Any) -> None:
        self.simulation = simulation
        self._ids = simulation.population.offer_ids

    def act(self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator):
        probs = self.simulation.true_probs(request)
        allowed = np.isin(self._ids, candidates)
        return self._ids[int(np.argmax(np.where(allowed, probs, -1.0)))], 1.0

    def learn(self, request: Request, offer_id: str, reward: float) -> None:
        pass


class EpsilonAgent:
    """With probability ``epsilon`` a uniform pick, otherwise the (deterministic) base agent's."""

    def __init__(self, base: Agent, epsilon: float, name: str | None = None) -> None:
        self.base, self.epsilon = base, epsilon
        self.name = name or f"epsilon_{base.name}"

    def act(self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator):
        greedy, _ = self.base.act(request, candidates, rng)
        explore = rng.random() < self.epsilon
        offer = candidates[int(rng.integers(len(candidates)))] if explore else greedy
        p = self.epsilon / len(candidates) + (1.0 - self.epsilon) * (offer == greedy)
        return offer, p

    def learn(self, request: Request, offer_id: str, reward: float) -> None:
        self.base.learn(request, offer_id, reward)


class PolicyAgent:
    """An engine policy over per-customer Beta evidence, as the worker would run it."""

    def __init__(
        self,
        policy: Any,
        offers: Sequence[Offer],
        half_life_s: float | None = None,
        prior_strength: float = 0.0,
        name: str | None = None,
        pool_by: Callable[[Request], Any] | None = None,
    ) -> None:
        self.policy = policy
        self.half_life_s = half_life_s
        self.prior_strength = prior_strength
        self.pool_by = pool_by
        self.name = name or getattr(policy, "name", type(policy).__name__)
        self._offers = {o.id: o for o in offers}
        self._arms: dict[str, Arms] = {}
        self._pooled: dict[Any, Arms] = {}

    def _posterior(self, request: Request, candidates: tuple[str, ...]) -> PolicyInput:
        keys = np.array([offer_key(c) for c in candidates], np.uint32)
        now = int(request["ts"])
        arms = self._arms.get(request["customer_id"], Arms.empty())
        succ, fail = arms.evidence(keys, now, self.half_life_s)
        alpha, beta = 1.0 + succ, 1.0 + fail
        if self.prior_strength:
            pooled = self._pooled.get(self._group(request), Arms.empty())
            ps, pf = pooled.evidence(keys, now, self.half_life_s)
            mean = (1.0 + ps) / (2.0 + ps + pf)
            alpha += self.prior_strength * mean
            beta += self.prior_strength * (1.0 - mean)
        offers = [self._offers[c] for c in candidates]
        return PolicyInput(
            alpha=alpha, beta=beta,
            values=np.array([o.value for o in offers]),
            urgent=np.array([o.urgent for o in offers]),
        )  # fmt: skip

    def act(self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator):
        choice = self.policy.choose(self._posterior(request, candidates), rng)
        return candidates[choice.index], float(choice.propensity)

    def learn(self, request: Request, offer_id: str, reward: float) -> None:
        key, now, cid = offer_key(offer_id), int(request["ts"]), request["customer_id"]
        arms = self._arms.get(cid, Arms.empty())
        self._arms[cid] = arms.updated(key, reward, now, self.half_life_s)
        if self.prior_strength:
            group = self._group(request)
            pooled = self._pooled.get(group, Arms.empty())
            self._pooled[group] = pooled.updated(key, reward, now, self.half_life_s)

    def _group(self, request: Request) -> Any:
        return None if self.pool_by is None else self.pool_by(request)


class RiverAgent:
    """A ``river.bandit`` policy shared by the whole population (no personalisation)."""

    def __init__(self, policy: Any, name: str) -> None:
        self.policy, self.name = policy, name

    def act(self, request: Request, candidates: tuple[str, ...], rng: np.random.Generator):
        return self.policy.pull(list(candidates)), float("nan")

    def learn(self, request: Request, offer_id: str, reward: float) -> None:
        self.policy.update(offer_id, reward)
