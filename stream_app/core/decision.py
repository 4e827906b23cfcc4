"""Answering a decision request, and learning from its outcome: the engine's state transitions.

Both are pure functions of (state, message) -> (state, outputs), so the Faust agents only load
state, call them, store state and send what they return. Each decision draws its randomness from a
generator seeded by (engine seed, request id), so replaying the same request against the same
state gives the same decision, at any speed and in any process.

State is three levels of Beta evidence (``Evidence``): the customer's own arms, the arms of the
customer's segment and the population's arms. The population levels are *partition-local*: each
partition sees a random sample of customers (keys are hashed), so its aggregates are unbiased
estimates of the whole population's, and a partition never waits for another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from stream_app.core.arms import Arms
from stream_app.core.catalogue import CHANNELS, ConfigError, EngineConfig, UseCase
from stream_app.core.feedback import Feedback, PendingDecision, ignored, resolve
from stream_app.core.priors import HierarchicalPrior
from stream_app.core.router import Router
from stream_app.policies.base import PolicyInput
from stream_app.policies.loss_aversion import scarcity_affinity
from stream_app.policies.registry import CONTEXTUAL_POLICY_NAMES, make_policy

MODEL_VERSION = "beta-arms-v2"
DEFAULT_SEGMENT = "all"


def stable_seed(seed: int, request_id: str) -> int:
    """63-bit seed from the engine seed and the request id (same request -> same draw)."""
    digest = hashlib.blake2b(f"{seed}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def decision_id_for(request_id: str) -> str:
    return "dc-" + hashlib.blake2b(request_id.encode(), digest_size=10).hexdigest()


def segment_of(request: Mapping[str, Any]) -> str:
    """The request's segment: ``context.segment`` when the caller knows it, else one segment."""
    seg = (request.get("context") or {}).get("segment")
    return str(seg) if seg not in (None, "") else DEFAULT_SEGMENT


@dataclass(frozen=True, slots=True)
class Evidence:
    customer: Arms
    segment: Arms
    population: Arms

    def updated(self, key: int, reward: float, now_ms: int, half_life_s: float | None) -> Evidence:
        return Evidence(*(a.updated(key, reward, now_ms, half_life_s)
                          for a in (self.customer, self.segment, self.population)))

    @classmethod
    def empty(cls) -> Evidence:
        return cls(Arms.empty(), Arms.empty(), Arms.empty())


@dataclass(frozen=True, slots=True)
class Decided:
    decision: dict[str, Any]  # the `decisions` message (latency is stamped by the caller)
    pending: PendingDecision | None  # what the outcome will be joined to; None for no_action


@dataclass(frozen=True, slots=True)
class Learned:
    evidence: Evidence  # unchanged when the feedback carries no reward (late outcome)
    pending: PendingDecision  # settled
    records: tuple[dict[str, Any], ...]  # `delta-metrics` outcome records


class Decider:
    """The decision core for one configuration version (raises ConfigError if it cannot run it)."""

    def __init__(self, config: EngineConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.router = Router.from_config(config)
        # per (use case, channel): the offers it may show and why the others are out; built once
        # per configuration so a request pays nothing per offer for channel availability
        self._candidates: dict[tuple[str, str], tuple[np.ndarray, dict[str, list[str]]]] = {}
        self._offer_ids: dict[str, frozenset[str]] = {}
        self._priors: dict[str, HierarchicalPrior] = {}
        self._policies: dict[tuple, Any] = {}
        for uc in config.use_cases.values():
            ids = uc.offers if uc.offers is not None else config.offer_ids
            idx = np.array([config.index_of(o) for o in ids], np.intp)
            self._offer_ids[uc.id] = frozenset(ids)
            for channel in CHANNELS:
                shown = np.array([channel in config.offers[i].channels for i in idx], bool)
                reasons = {config.offer_ids[i]: [f"not offered on {channel}"] for i in idx[~shown]}
                self._candidates[uc.id, channel] = (idx[shown], reasons)
            try:
                self._priors[uc.id] = HierarchicalPrior.from_params(uc.prior)
                self._policy(uc.policy, uc.params)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"use case {uc.id!r}: {exc}") from None
        for rule in self.router.rules:
            self._policy(rule.policy, rule.params)

    def _policy(self, name: str, params: Mapping[str, Any]) -> Any:
        key = (name, tuple(sorted(params.items())))
        policy = self._policies.get(key)
        if policy is None:
            if name in CONTEXTUAL_POLICY_NAMES:
                raise ConfigError(f"policy {name!r} needs profile features, not wired yet")
            try:
                policy = self._policies[key] = make_policy(name, params)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return policy

    def _candidate_indices(self, uc: UseCase, request: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        idx, channel_reasons = self._candidates[uc.id, request["channel"]]
        asked = request.get("candidates")
        if not asked:
            return idx, {oid: list(r) for oid, r in channel_reasons.items()}
        wanted = set(asked)
        reasons = {oid: list(r) for oid, r in channel_reasons.items() if oid in wanted}
        for oid in asked:
            if oid not in self._offer_ids[uc.id]:
                reasons.setdefault(oid, []).append("not an offer of this use case")
        keep = np.fromiter((self.config.offer_ids[i] in wanted for i in idx), bool, len(idx))
        return idx[keep], reasons

    def decide(self, request: Mapping[str, Any], evidence: Evidence) -> Decided:
        """Answer a (schema-valid) decision request given the customer's evidence."""
        cfg = self.config
        request_id = request["request_id"]
        seed = stable_seed(self.seed, request_id)
        segment = segment_of(request)
        base = {
            "schema_version": 1, "decision_id": decision_id_for(request_id),
            "request_id": request_id, "customer_id": request["customer_id"], "ts": request["ts"],
            "use_case": request["use_case"], "channel": request["channel"],
            "config_version": cfg.version, "model_version": MODEL_VERSION, "seed": seed,
            "segment": segment, "latency_ms": 0.0,
        }
        try:
            uc = cfg.use_case(request["use_case"])
        except ConfigError as exc:
            return Decided(_no_action(base, "none", str(exc), {"*": [str(exc)]}), None)
        route = self.router.route(uc.id, segment=segment, channel=request["channel"],
                                  objective=(request.get("context") or {}).get("objective"))
        idx, reasons = self._candidate_indices(uc, request)
        if len(idx) == 0:
            return Decided(_no_action(base, route.policy, route.because, reasons), None)
        now = int(request["ts"])
        keys = cfg.offer_keys[idx]
        hl = uc.half_life_s
        all_own = evidence.customer.evidence(cfg.offer_keys, now, hl)  # whole catalogue, read once
        own = (all_own[0][idx], all_own[1][idx])
        alpha, beta = self._priors[uc.id].posterior(
            own, evidence.segment.evidence(keys, now, hl), evidence.population.evidence(keys, now, hl))
        inp = PolicyInput(
            alpha=alpha, beta=beta, values=cfg.offer_values[idx], urgent=cfg.offer_urgent[idx],
            pulls=float(own[0].sum() + own[1].sum()),
            scarcity_affinity=scarcity_affinity(*all_own, cfg.offer_urgent),
        )
        choice = self._policy(route.policy, route.params).choose(inp, np.random.default_rng(seed))
        chosen = int(idx[choice.index])
        mean = alpha / (alpha + beta)
        order = np.argsort(-choice.scores, kind="stable")
        decision = {
            **base, "action": "offer", "offer_id": cfg.offer_ids[chosen],
            "ranked": [{"offer_id": cfg.offer_ids[idx[j]], "score": round(float(choice.scores[j]), 6)}
                       for j in order],
            "propensity": float(choice.propensity), "propensity_se": round(choice.propensity_se, 6),
            "predicted": float(mean[choice.index]), "policy": route.policy,
            "routed_because": route.because, "explore": bool(choice.explore), "rule_reasons": reasons,
        }
        pending = PendingDecision.from_decision(
            decision, segment=segment, attribution_window_s=uc.attribution_window_s,
            best_predicted=float(mean.max()))
        return Decided(decision, pending)

    def _half_life(self, use_case: str) -> float | None:
        uc = self.config.use_cases.get(use_case)
        return uc.half_life_s if uc is not None else None

    def _apply(self, evidence: Evidence, fb: Feedback, now_ms: int) -> Learned:
        if fb.reward is not None:
            evidence = evidence.updated(fb.pending.offer_key, fb.reward, now_ms,
                                        self._half_life(fb.pending.use_case))
        return Learned(evidence, fb.pending, fb.records)

    def learn(self, evidence: Evidence, pending: PendingDecision, outcome: Mapping[str, Any]) -> Learned:
        """Join an outcome to its pending decision: update the arms once, measure the delta."""
        return self._apply(evidence, resolve(pending, outcome), int(outcome["ts"]))

    def expire(self, evidence: Evidence, pending: PendingDecision) -> Learned:
        """The attribution window closed without an outcome: the offer was ignored (reward 0)."""
        return self._apply(evidence, ignored(pending), pending.expires_at_ms)


def _no_action(base: dict, policy: str, because: str, reasons: dict) -> dict[str, Any]:
    return {
        **base, "action": "no_action", "offer_id": None, "ranked": [], "propensity": 1.0,
        "propensity_se": 0.0, "predicted": 0.0, "policy": policy, "routed_because": because,
        "explore": False, "rule_reasons": reasons,
    }


__all__ = ["Decided", "Decider", "Evidence", "Learned", "decision_id_for", "segment_of",
           "stable_seed"]
