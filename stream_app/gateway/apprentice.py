"""Apprentice mode: the caller's baseline serves while the engine proves itself, then the engine.

Personalizer's apprentice answered the caller's baseline (the first action) and imitated it.
Imitation says nothing about whether the engine is *better*: with a baseline that always picks the
same action, the reward of any other action is never observed, so no estimator can tell what the
engine's own choices would have earned where they differ from it. The gateway therefore
randomises who serves: a share ``explore`` of the use case's events (picked by a hash of the event
id, so a retry or another gateway instance picks the same) is served by the engine's own decision,
the rest by the baseline. The logging policy is the known mixture, so each policy's value has an
importance-sampling estimate: the engine's is ``sum(1{engine served} r) / explore`` per event,
whose self-normalised form is the mean reward of the engine's share (likewise the baseline's with
``1 - explore``). Both shares are random samples of the same traffic, whatever its drift.

Each share's mean gets a one-sided anytime-valid bound by testing by betting
(``experiments/betting.py``, level ``alpha / 2`` each): the engine's lower bound and the baseline's
upper bound (one minus the lower bound of ``1 - r``). The engine takes over at the first look where

    engine lower bound - baseline upper bound > margin

with at least ``min_n`` rewards in each share (and the point estimates agreeing). Both bounds hold
at every look at once with probability at least ``1 - alpha``, so an engine that does not beat the
baseline by ``margin`` is switched to with probability at most ``alpha``, however often the rule is
checked. The engine learns from both shares meanwhile: it decides every event (the baseline's only
among the baseline action), so every reward updates the arm of the offer that was really shown.

>>> rule = ApprenticeRule(margin=0.0, explore=0.5, alpha=0.05, min_n=50)
>>> app = Apprentice("default", rule)
>>> rng = np.random.default_rng(0)
>>> for i in range(2000):
...     arm = app.arm(f"ev-{i}")
...     if arm is None:
...         break
...     _ = app.record(arm, float(rng.random() < (0.6 if arm == "engine" else 0.2)), now_ms=i)
>>> app.switched, 100 < app.status()["switched_at_event"] < 2000
(True, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_app.experiments.betting import BettingLowerBound

__all__ = ["ENGINE", "BASELINE", "Apprentice", "ApprenticeRule"]

ENGINE, BASELINE = "engine", "baseline"


@dataclass(frozen=True, slots=True)
class ApprenticeRule:
    """When the engine takes over: beats the baseline by ``margin`` at level ``alpha``, with
    ``min_n`` rewards in each share; ``explore`` is the share of events the engine serves."""

    margin: float = 0.0
    explore: float = 0.1
    alpha: float = 0.05
    min_n: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.explore < 1.0:
            raise ValueError("apprentice explore share must be in (0, 1)")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("apprentice alpha must be in (0, 1)")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError("apprentice margin must be in [0, 1)")
        if self.min_n < 1:
            raise ValueError("apprentice min_n must be >= 1")


class Apprentice:
    """One use case in apprentice mode: which share serves an event, the evidence, the switch."""

    def __init__(self, use_case: str, rule: ApprenticeRule, grid_size: int = 200) -> None:
        self.use_case = use_case
        self.rule = rule
        # per share: lower bounds of the mean of r and of 1 - r (the upper bound of r)
        self._bounds = {arm: BettingLowerBound(rule.alpha / 2, grid_size, shape=(2,))
                        for arm in (ENGINE, BASELINE)}
        self._n = {ENGINE: 0, BASELINE: 0}
        self._total = {ENGINE: 0.0, BASELINE: 0.0}
        self._events = 0
        self.switched_at_ms: int | None = None
        self._switched_at_event: int | None = None

    @property
    def switched(self) -> bool:
        return self.switched_at_ms is not None

    def arm(self, event_id: str) -> str | None:
        """Who serves this event: ``"engine"`` (its share), ``"baseline"``, or None once the
        engine has taken over (no more bookkeeping)."""
        if self.switched:
            return None
        digest = hashlib.blake2b(f"{self.use_case}:{event_id}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "little") / 2.0**64
        return ENGINE if u < self.rule.explore else BASELINE

    def record(self, arm: str, reward: float, now_ms: int) -> bool:
        """The reward (in [0, 1]) of an event that ``arm`` served; True when it made the engine
        take over. Rewards arriving after the switch are not counted."""
        if self.switched:
            return False
        if arm not in self._n:
            raise ValueError(f"unknown apprentice share {arm!r}")
        r = min(max(float(reward), 0.0), 1.0)
        self._bounds[arm].update(np.array([r, 1.0 - r]))
        self._n[arm] += 1
        self._total[arm] += r
        self._events += 1
        if self._beats():
            self.switched_at_ms = int(now_ms)
            self._switched_at_event = self._events
            return True
        return False

    def _bounds_of(self, arm: str) -> tuple[float, float]:
        low, low_complement = self._bounds[arm].lower().tolist()
        return float(low), 1.0 - float(low_complement)

    def _beats(self) -> bool:
        n_e, n_b = self._n[ENGINE], self._n[BASELINE]
        if min(n_e, n_b) < self.rule.min_n:
            return False
        if self._total[ENGINE] / n_e - self._total[BASELINE] / n_b <= self.rule.margin:
            return False  # the point estimates do not even say so (and the bounds are costly)
        engine_low, _ = self._bounds_of(ENGINE)
        _, baseline_high = self._bounds_of(BASELINE)
        return engine_low - baseline_high > self.rule.margin

    def status(self) -> dict[str, Any]:
        """JSON-ready: the mode, each share's mean and anytime-valid bounds, the rule."""
        shares = {}
        for arm in (ENGINE, BASELINE):
            n = self._n[arm]
            low, high = self._bounds_of(arm)
            shares[arm] = {"rewards": n, "mean": self._total[arm] / n if n else None,
                           "low": low, "high": high}
        return {
            "use_case": self.use_case, "mode": "online" if self.switched else "apprentice",
            "switched_at_ms": self.switched_at_ms, "switched_at_event": self._switched_at_event,
            "engine": shares[ENGINE], "baseline": shares[BASELINE],
            "rule": {"margin": self.rule.margin, "explore": self.rule.explore,
                     "alpha": self.rule.alpha, "min_n": self.rule.min_n},
        }
