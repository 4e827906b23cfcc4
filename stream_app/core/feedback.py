"""Joining an outcome to its decision: the reward, the delta, and what happens to late outcomes.

Every offered decision leaves a ``PendingDecision`` behind (keyed by its decision id). It is
*settled* exactly once: by its first outcome, or by the attribution-window timer as ignored.
Settling yields one ``delta-metrics`` outcome record and one reward for the chosen offer's arm.

The attribution window is half open, ``[decided_at_ms, expires_at_ms)`` in event time: an outcome
stamped at or after ``expires_at_ms`` is late, whatever order the worker sees things in.

**The late-outcome rule.** An outcome for a decision that is already settled (it was counted as
ignored, or an earlier outcome such as ``clicked`` before ``converted`` settled it) is *not*
learned from a second time: the arm saw the decision once, and metrics count it once. It is still
published, as an outcome record with ``late: true``, so the rollups can say how many responses the
attribution window misses (``DeltaAggregator`` counts late records apart from calibration). An
outcome that is itself past the window, for a decision the timer has not settled yet, settles it
as ignored and is reported late - two records, the same as if the timer had fired first.

Keep a settled decision for a grace period after its window (e.g. as long again) so late outcomes
are recognised: re-schedule its id in the ``ExpiryQueue`` and delete it when that timer finds it
settled. An outcome whose decision is gone goes to ``dead-letter`` ("unknown decision").
De-duplicate outcomes by ``outcome_id`` *before* ``resolve`` (``dedup.py``): a redelivered
outcome would otherwise be reported as late.

>>> p = PendingDecision("dc-1", "c-1", "cashback", "default", "thompson", "young", predicted=0.25,
...                     propensity=0.5, decided_at_ms=1_000, expires_at_ms=61_000)
>>> fb = resolve(p, {"decision_id": "dc-1", "ts": 5_000, "type": "clicked"})
>>> fb.reward, fb.records[0]["delta"], fb.records[0]["late"]
(1.0, 0.75, False)
>>> late = resolve(fb.pending, {"decision_id": "dc-1", "ts": 9_000, "type": "converted"})
>>> late.reward, late.records[0]["late"]
(None, True)
>>> ignored(fb.pending).records   # already settled: the timer has nothing to do
()
>>> PendingDecision.decode(p.encode()) == p
True
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import orjson

from stream_app.core.catalogue import offer_key

__all__ = ["REWARD", "TIMER", "Feedback", "PendingCodecError", "PendingDecision", "ignored",
           "resolve", "reward_of"]

REWARD = {"clicked": 1.0, "accepted": 1.0, "converted": 1.0, "dismissed": 0.0, "ignored": 0.0}
TIMER = "timer"  # ``settled_by`` of a decision the attribution window closed on
_VERSION = 2  # 2: experiments, shadow, features


class PendingCodecError(ValueError):
    """Stored pending-decision state that cannot be decoded."""


def reward_of(outcome_type: str) -> float:
    """1.0 for clicked / accepted / converted, 0.0 for dismissed / ignored; ``ValueError`` else."""
    try:
        return REWARD[outcome_type]
    except KeyError:
        raise ValueError(f"unknown outcome type {outcome_type!r}") from None


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """A decision waiting for its outcome (and, once settled, kept to recognise late ones)."""

    decision_id: str
    customer_id: str
    offer_id: str
    use_case: str
    policy: str
    segment: str
    predicted: float  # posterior mean response rate of the chosen offer at decision time
    propensity: float  # probability the policy had of choosing this offer
    decided_at_ms: int
    expires_at_ms: int  # end of the attribution window (exclusive)
    experiment_arm: str | None = None
    best_predicted: float | None = None  # best posterior mean among the candidates (regret)
    channel: str | None = None
    settled_by: str | None = None  # None while open; the outcome type, or TIMER
    settled_at_ms: int | None = None
    experiments: list | None = None  # [[experiment id, arm], ...] the customer was assigned
    shadow: dict | None = None  # challenger name -> its probability of choosing this offer
    features: list | None = None  # the feature vector the decision saw (contextual learning)

    @property
    def is_settled(self) -> bool:
        return self.settled_by is not None

    @property
    def offer_key(self) -> int:
        return offer_key(self.offer_id)

    @classmethod
    def from_decision(
        cls, decision: Mapping[str, Any], *, segment: str, attribution_window_s: float,
        best_predicted: float | None = None, experiments: list | None = None,
        shadow: dict | None = None, features: Any = None,
    ) -> PendingDecision:
        """The pending half of an offered ``decisions`` message (``action == "offer"``)."""
        ts = int(decision["ts"])
        return cls(
            decision["decision_id"], decision["customer_id"], decision["offer_id"],
            decision["use_case"], decision["policy"], segment, float(decision["predicted"]),
            float(decision["propensity"]), ts, ts + int(round(attribution_window_s * 1000)),
            experiment_arm=(decision.get("experiment") or {}).get("arm"),
            best_predicted=best_predicted, channel=decision.get("channel"),
            experiments=experiments or None, shadow=shadow or None,
            features=None if features is None else [round(float(v), 6) for v in features],
        )

    def encode(self) -> bytes:
        """Versioned JSON array (positional, no field names): about 150 bytes, no pickle."""
        return orjson.dumps([_VERSION, *(getattr(self, f) for f in _FIELDS)])

    @classmethod
    def decode(cls, data: bytes) -> PendingDecision:
        try:
            row = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PendingCodecError(f"pending decision is not JSON: {exc}") from None
        if not isinstance(row, list) or not row or row[0] != _VERSION:
            raise PendingCodecError("pending decision has an unknown version")
        if len(row) != 1 + len(_FIELDS):
            raise PendingCodecError("pending decision has the wrong number of fields")
        return cls(*row[1:])


_FIELDS = tuple(f.name for f in fields(PendingDecision))


@dataclass(frozen=True, slots=True)
class Feedback:
    """What settling (or trying to settle) a decision produced."""

    pending: PendingDecision  # store this back in place of the old one
    records: tuple[dict[str, Any], ...]  # delta-metrics outcome records to publish, in order
    reward: float | None  # update the chosen offer's arm with this reward; None: do not learn


def resolve(pending: PendingDecision, outcome: Mapping[str, Any]) -> Feedback:
    """Join a (schema-valid, de-duplicated) outcome to its pending decision."""
    if outcome["decision_id"] != pending.decision_id:
        raise ValueError(f"outcome is for {outcome['decision_id']!r}, not {pending.decision_id!r}")
    kind, ts = outcome["type"], int(outcome["ts"])
    reward = reward_of(kind)
    value = float(outcome.get("value") or 0.0)
    if pending.is_settled:
        late = _record(pending, ts, reward, value, kind, late=True)
        return Feedback(pending, (_with_id(late, outcome),), None)
    if ts >= pending.expires_at_ms:
        timer = ignored(pending)
        late = _record(timer.pending, ts, reward, value, kind, late=True)
        return Feedback(timer.pending, (*timer.records, _with_id(late, outcome)), timer.reward)
    settled = replace(pending, settled_by=kind, settled_at_ms=ts)
    record = _with_id(_record(pending, ts, reward, value, kind), outcome)
    return Feedback(settled, (record,), reward)


def ignored(pending: PendingDecision) -> Feedback:
    """The attribution window passed: settle an open decision as ignored (reward 0).

    The record's ``ts`` is ``expires_at_ms``, not the watermark that fired the timer, so replay
    at any speed stamps it the same. A decision already settled yields no record and no reward.
    """
    if pending.is_settled:
        return Feedback(pending, (), None)
    settled = replace(pending, settled_by=TIMER, settled_at_ms=pending.expires_at_ms)
    record = _record(pending, pending.expires_at_ms, 0.0, 0.0, "ignored", timer=True)
    return Feedback(settled, (record,), 0.0)


def _record(p: PendingDecision, ts: int, actual: float, value: float, kind: str, *,
            timer: bool = False, late: bool = False) -> dict[str, Any]:
    best = p.predicted if p.best_predicted is None else p.best_predicted
    return {
        "schema_version": 1, "kind": "outcome", "ts": ts,
        "decision_id": p.decision_id, "customer_id": p.customer_id, "offer_id": p.offer_id,
        "policy": p.policy, "use_case": p.use_case, "segment": p.segment, "channel": p.channel,
        "experiment_arm": p.experiment_arm, "outcome_type": kind,
        "predicted": p.predicted, "actual": actual, "delta": actual - p.predicted,
        "value": value, "propensity": p.propensity, "regret": max(best - p.predicted, 0.0),
        "ignored": timer, "late": late, "response_ms": ts - p.decided_at_ms,
    }


def _with_id(record: dict[str, Any], outcome: Mapping[str, Any]) -> dict[str, Any]:
    record["outcome_id"] = outcome.get("outcome_id")
    return record
