"""Answering a decision request, and learning from its outcome: the engine's state transitions.

Both are pure functions of (state, message) -> (state, outputs), so the Faust agents only load
state, call them, store state and send what they return (the Bytewax shape). Each decision draws
its randomness from a generator seeded by (engine seed, request id), so replaying the same request
against the same state gives the same decision, at any speed and in any process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from stream_app.core.arms import Arms
from stream_app.core.catalogue import ConfigError, EngineConfig, UseCase
from stream_app.policies.base import PolicyInput
from stream_app.policies.thompson import ThompsonSampling

REWARD = {"clicked": 1.0, "accepted": 1.0, "converted": 1.0, "dismissed": 0.0, "ignored": 0.0}
MODEL_VERSION = "beta-arms-v1"


def stable_seed(seed: int, request_id: str) -> int:
    """63-bit seed from the engine seed and the request id (same request -> same draw)."""
    digest = hashlib.blake2b(f"{seed}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def decision_id_for(request_id: str) -> str:
    return "dc-" + hashlib.blake2b(request_id.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class Decided:
    decision: dict[str, Any]  # the `decisions` message (latency is stamped by the caller)
    pending: dict[str, Any] | None  # what the outcome will be joined to; None for no_action


@dataclass(frozen=True, slots=True)
class Learned:
    arms: Arms
    delta: dict[str, Any]  # the `delta-metrics` outcome record
    pending: dict[str, Any]  # the pending decision, now marked resolved


class Decider:
    """The decision core for one configuration version."""

    def __init__(self, config: EngineConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self._candidates: dict[str, np.ndarray] = {}
        for uc in config.use_cases.values():
            ids = uc.offers if uc.offers is not None else config.offer_ids
            self._candidates[uc.id] = np.array([config.index_of(o) for o in ids], np.intp)

    def _prior(self, uc: UseCase) -> tuple[float, float]:
        return float(uc.params.get("prior_alpha", 1.0)), float(uc.params.get("prior_beta", 1.0))

    def _half_life(self, uc: UseCase) -> float | None:
        hl = uc.params.get("half_life_s")
        return float(hl) if hl else None

    def _candidate_indices(self, uc: UseCase, request: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        base = self._candidates[uc.id]
        reasons: dict[str, list[str]] = {}
        asked = request.get("candidates")
        if asked:
            known = {self.config.offer_ids[i] for i in base}
            for oid in asked:
                if oid not in known:
                    reasons.setdefault(oid, []).append("not an offer of this use case")
            wanted = set(asked)
            base = np.array([i for i in base if self.config.offer_ids[i] in wanted], np.intp)
        channel = request["channel"]
        keep = np.array([channel in self.config.offers[i].channels for i in base], bool)
        for i in base[~keep]:
            reasons.setdefault(self.config.offer_ids[i], []).append(f"not offered on {channel}")
        return base[keep], reasons

    def decide(self, request: Mapping[str, Any], arms: Arms) -> Decided:
        """Answer a (schema-valid) decision request for a customer whose arms are ``arms``."""
        cfg = self.config
        request_id = request["request_id"]
        seed = stable_seed(self.seed, request_id)
        base = {
            "schema_version": 1,
            "decision_id": decision_id_for(request_id),
            "request_id": request_id,
            "customer_id": request["customer_id"],
            "ts": request["ts"],
            "use_case": request["use_case"],
            "channel": request["channel"],
            "config_version": cfg.version,
            "model_version": MODEL_VERSION,
            "seed": seed,
            "latency_ms": 0.0,
        }
        try:
            uc = cfg.use_case(request["use_case"])
        except ConfigError as exc:
            return Decided(_no_action(base, "none", f"{exc}", {"*": [str(exc)]}), None)
        idx, reasons = self._candidate_indices(uc, request)
        if len(idx) == 0:
            return Decided(_no_action(base, uc.policy, f"use case {uc.id}", reasons), None)
        now = int(request["ts"])
        succ, fail = arms.evidence(cfg.offer_keys[idx], now, self._half_life(uc))
        a0, b0 = self._prior(uc)
        inp = PolicyInput(
            alpha=a0 + succ, beta=b0 + fail, values=cfg.offer_values[idx], urgent=cfg.offer_urgent[idx]
        )
        choice = ThompsonSampling(
            propensity_draws=int(uc.params.get("propensity_draws", 512))
        ).choose(inp, np.random.default_rng(seed))
        chosen = int(idx[choice.index])
        mean = inp.alpha / (inp.alpha + inp.beta)
        order = np.argsort(-choice.scores)
        offer_id = cfg.offer_ids[chosen]
        decision = {
            **base,
            "action": "offer",
            "offer_id": offer_id,
            "ranked": [
                {"offer_id": cfg.offer_ids[idx[j]], "score": round(float(choice.scores[j]), 6)}
                for j in order
            ],
            "propensity": choice.propensity,
            "propensity_se": round(choice.propensity_se, 6),
            "predicted": float(mean[choice.index]),
            "policy": "thompson",
            "routed_because": f"use case {uc.id}",
            "explore": choice.explore,
            "rule_reasons": reasons,
        }
        pending = {
            "decision_id": decision["decision_id"],
            "customer_id": request["customer_id"],
            "offer_id": offer_id,
            "offer_key": int(cfg.offer_keys[chosen]),
            "use_case": uc.id,
            "policy": "thompson",
            "predicted": decision["predicted"],
            "propensity": choice.propensity,
            "decided_at": now,
            "expires_at": now + int(uc.attribution_window_s * 1000),
            "resolved": False,
        }
        return Decided(decision, pending)

    def learn(self, arms: Arms, pending: Mapping[str, Any], outcome: Mapping[str, Any]) -> Learned:
        """Join an outcome to its pending decision, update the arm, and measure the delta."""
        reward = REWARD[outcome["type"]]
        try:
            half_life = self._half_life(self.config.use_case(pending["use_case"]))
        except ConfigError:
            half_life = None
        now = int(outcome["ts"])
        new_arms = arms.updated(pending["offer_key"], reward, now, half_life)
        predicted = float(pending["predicted"])
        delta = {
            "schema_version": 1,
            "kind": "outcome",
            "ts": now,
            "decision_id": pending["decision_id"],
            "customer_id": pending["customer_id"],
            "offer_id": pending["offer_id"],
            "policy": pending["policy"],
            "use_case": pending["use_case"],
            "predicted": predicted,
            "actual": reward,
            "delta": reward - predicted,
            "value": float(outcome.get("value", 0.0)),
            "ignored": outcome["type"] == "ignored",
        }
        return Learned(new_arms, delta, {**pending, "resolved": True, "outcome_id": outcome.get("outcome_id")})


def _no_action(base: dict, policy: str, because: str, reasons: dict) -> dict[str, Any]:
    return {
        **base,
        "action": "no_action",
        "offer_id": None,
        "ranked": [],
        "propensity": 1.0,
        "propensity_se": 0.0,
        "predicted": 0.0,
        "policy": policy,
        "routed_because": because,
        "explore": False,
        "rule_reasons": reasons,
    }
