"""Target policies for ``stream-app evaluate``: what a candidate would have done on logged rows.

A target has ``probs(context, actions) -> probabilities`` (one per available action) and
``learn(context, action, reward)``. Two kinds:

- *fixed* targets, a function of the context only: ``uniform``; ``static`` (``{"ranking": [...]}``:
  the first available offer of the ranking); ``by_context`` (``{"key": "page", "map":
  {"travel": "travel_miles_boost"}, "default": "grocery_cashback"}``: the offer the context value
  maps to, else the default, else uniform). Each takes ``"epsilon"``: that share of uniform
  exploration.
- *engine policies* (``thompson``, ``ucb``, ``epsilon_greedy``, ... with their constructor
  ``params``, or the use cases of an engine config): the policy over per-customer Beta evidence,
  as ``evaluation.agents.PolicyAgent`` runs it. Its probabilities at a row are those it had
  *after learning from every earlier logged row* (Monte Carlo over ``draws`` seeded draws), so
  IPS / SNIPS / DR estimate "this policy, given the evidence the logger gathered". The replay
  method instead lets it learn only from the rows it matched (Li et al.), i.e. from its own
  choices; the two answer slightly different questions and are reported side by side.

>>> t = make_target("by_context", {"key": "page", "map": {"travel": "b"}, "epsilon": 0.2})
>>> t.probs({"page": "travel"}, ("a", "b")).tolist(), t.probs({"page": "home"}, ("a", "b")).tolist()
([0.1, 0.9], [0.5, 0.5])
>>> make_target("static", {"ranking": ["c", "b"]}).probs({}, ("a", "b")).tolist()
[0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stream_app.core.catalogue import EngineConfig, Offer

FIXED = ("uniform", "static", "by_context")
CUSTOMER_KEYS = ("_customer", "customer_id")  # where a context names its customer
TIME_KEYS = ("_ts", "ts")


class TargetError(ValueError):
    """A target that cannot be built (unknown name, bad params); one readable line."""


def _with_epsilon(chosen: np.ndarray, epsilon: float) -> np.ndarray:
    return (1.0 - epsilon) * chosen + epsilon / len(chosen)


class FixedTarget:
    """A target that is a function of the context (see the module docstring)."""

    def __init__(self, name: str, params: Mapping[str, Any]) -> None:
        allowed = {"uniform": {"epsilon"}, "static": {"ranking", "epsilon"},
                   "by_context": {"key", "map", "default", "epsilon"}}[name]
        unknown = set(params) - allowed
        if unknown:
            raise TargetError(f"target {name!r} has no parameter(s) {sorted(unknown)}; "
                              f"accepts {sorted(allowed)}")
        self.name = name
        self.epsilon = float(params.get("epsilon", 0.0))
        if not 0.0 <= self.epsilon <= 1.0:
            raise TargetError("epsilon must be in [0, 1]")
        self.ranking = list(params.get("ranking") or [])
        if name == "static" and not self.ranking:
            raise TargetError("target 'static' needs params {\"ranking\": [offer ids]}")
        self.key = params.get("key")
        self.map = dict(params.get("map") or {})
        self.default = params.get("default")
        if name == "by_context" and (not isinstance(self.key, str) or not self.map):
            raise TargetError("target 'by_context' needs params {\"key\": ..., \"map\": {...}}")

    def probs(self, context: Mapping[str, Any], actions: Sequence[str]) -> np.ndarray:
        k = len(actions)
        pick: str | None = None
        if self.name == "static":
            pick = next((a for a in self.ranking if a in actions), None)
        elif self.name == "by_context":
            pick = self.map.get(str(context.get(self.key)), self.default)
        if pick is None or pick not in actions:
            return np.full(k, 1.0 / k)
        return _with_epsilon(np.array([float(a == pick) for a in actions]), self.epsilon)

    def learn(self, context: Mapping[str, Any], action: str, reward: float) -> None:
        pass

    def fresh(self) -> FixedTarget:
        return self


class EngineTarget:
    """Engine policies (one per use case) over per-customer Beta evidence."""

    def __init__(self, policies: Mapping[str, tuple[str, Mapping[str, Any]]],
                 offers: Sequence[Offer], half_life_s: Mapping[str, float | None] | None = None,
                 draws: int = 50, seed: int = 0) -> None:
        from stream_app.evaluation.agents import PolicyAgent
        from stream_app.policies.registry import CONTEXTUAL_POLICY_NAMES, make_policy

        self.name = ",".join(sorted({p for p, _ in policies.values()}))
        self._spec = (dict(policies), list(offers), dict(half_life_s or {}), draws, seed)
        self.draws = max(1, draws)
        self._rng = np.random.default_rng(seed)
        self._agents: dict[str, Any] = {}
        for use_case, (name, params) in policies.items():
            if name in CONTEXTUAL_POLICY_NAMES:
                raise TargetError(f"policy {name!r} needs profile features, which logs do not carry")
            try:
                policy = make_policy(name, params)
            except ValueError as exc:
                raise TargetError(str(exc)) from None
            self._agents[use_case] = PolicyAgent(policy, offers, name=name,
                                                 half_life_s=(half_life_s or {}).get(use_case))
        self._default = next(iter(self._agents))

    def fresh(self) -> EngineTarget:
        policies, offers, half_life, draws, seed = self._spec
        return EngineTarget(policies, offers, half_life, draws, seed)

    def _agent(self, context: Mapping[str, Any], actions: Sequence[str]) -> Any:
        return self._agents.get(str(context.get("use_case")), self._agents[self._default])

    @staticmethod
    def _request(context: Mapping[str, Any]) -> dict[str, Any]:
        customer = next((context[k] for k in CUSTOMER_KEYS if context.get(k) is not None), "all")
        ts = next((context[k] for k in TIME_KEYS if isinstance(context.get(k), (int, float))), 0)
        return {"customer_id": str(customer), "ts": int(ts)}

    def probs(self, context: Mapping[str, Any], actions: Sequence[str]) -> np.ndarray:
        agent, request = self._agent(context, actions), self._request(context)
        counts = dict.fromkeys(actions, 0)
        for _ in range(self.draws):
            counts[agent.act(request, tuple(actions), self._rng)[0]] += 1
        return np.array([counts[a] / self.draws for a in actions])

    def pick(self, context: Mapping[str, Any], actions: Sequence[str]) -> str:
        return self._agent(context, actions).act(self._request(context), tuple(actions), self._rng)[0]

    def learn(self, context: Mapping[str, Any], action: str, reward: float) -> None:
        self._agent(context, [action]).learn(self._request(context), action, reward)


def make_target(name: str | None, params: Mapping[str, Any] | None = None,
                config: EngineConfig | None = None, actions: Sequence[str] = (),
                draws: int = 50, seed: int = 0) -> Any:
    """A target by name (fixed or engine policy), or the use cases of an engine config.
    ``actions``: the logged action ids; those the config does not know are offers of value 1,
    neutral framing."""
    from stream_app.policies.registry import POLICY_NAMES

    known = {o.id: o for o in (config.offers if config is not None else ())}
    offers = [*known.values(), *(Offer(id=a) for a in actions if a not in known)]
    if config is not None:
        policies = {uc.id: (uc.policy, dict(uc.params)) for uc in config.use_cases.values()}
        half_life = {uc.id: uc.half_life_s for uc in config.use_cases.values()}
        return EngineTarget(policies, offers, half_life, draws, seed)
    if name in FIXED:
        return FixedTarget(name, params or {})
    if name in POLICY_NAMES:
        return EngineTarget({"*": (name, dict(params or {}))}, offers, draws=draws, seed=seed)
    raise TargetError(f"unknown policy {name!r}; known: {', '.join(FIXED + tuple(POLICY_NAMES))}")


def target_probabilities(data: Any, target: Any) -> np.ndarray:
    """The ``(n, n_actions)`` matrix of the target's probabilities, row by row in log order; a
    learning target learns each row's logged action and reward after it is scored."""
    space = data.action_space
    pi = np.zeros((len(data), len(space)))
    for i, ctx in enumerate(data.contexts):
        avail = np.flatnonzero(data.available[i])
        pi[i, avail] = target.probs(ctx, tuple(space[j] for j in avail))
        target.learn(ctx, space[data.actions[i]], float(data.rewards[i]))
    return pi


def replay_pick(target: Any, seed: int = 0) -> Any:
    """A ``pick(context, actions)`` for ``evaluation.replay``: a draw from the target."""
    if hasattr(target, "pick"):
        return target.pick
    rng = np.random.default_rng(seed)

    def pick(context: Mapping[str, Any], actions: tuple[str, ...]) -> str:
        return actions[int(rng.choice(len(actions), p=target.probs(context, actions)))]
    return pick
