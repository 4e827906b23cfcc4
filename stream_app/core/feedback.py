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

Two codecs. ``encode`` / ``decode`` write a JSON array (about 150-250 bytes), the form of the
``pending`` table. ``pack`` / ``unpack_from`` write the compact binary form kept inside the
customer's own value (``CustomerState``), where the customer id is the key and is not stored:

====================  ===========================================================
bytes                 field
====================  ===========================================================
2                     presence flags (``_F_*``)
8 + 8                 predicted, propensity (float64: exact)
8                     decided_at_ms (int64)
4, or 8 if wide       expires_at_ms - decided_at_ms (uint32), or expires_at_ms
10, or 1 + len        decision id: ``dc-`` + 20 hex digits as 10 bytes, or a string
4 x (1 + len)         offer id, use case, policy, segment
1 + len               experiment arm, when present
8                     best_predicted, when present
1 (+ 1 + len)         channel code (its place in ``CHANNELS``), or 255 + the name
1 (+ 1 + len)         settled_by code (``SETTLED_BY``), or 255 + the name
8                     settled_at_ms, when present
1 + len               experiments, shadow (orjson), features (float64s), when present
====================  ===========================================================

A string is its UTF-8 length in one byte (255: four more bytes give it) and its bytes. A typical
open decision is about 80 bytes:

>>> blob = p.pack()
>>> len(blob)   # 30 fixed + 1+4 id + 1+8 offer + 1+7 use case + 1+8 policy + 1+5 segment
67
>>> PendingDecision.unpack_from(blob, 0, "c-1") == (p, len(blob))
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import orjson

from stream_app.core.catalogue import CHANNELS, offer_key

__all__ = ["REWARD", "SETTLED_BY", "TIMER", "Feedback", "PendingCodecError", "PendingDecision",
           "ignored", "resolve", "reward_of", "window_end"]

REWARD = {"clicked": 1.0, "accepted": 1.0, "converted": 1.0, "dismissed": 0.0, "ignored": 0.0}
TIMER = "timer"  # ``settled_by`` of a decision the attribution window closed on
_VERSION = 2  # 2: experiments, shadow, features
SETTLED_BY = (*REWARD, TIMER)  # what ``pack`` stores as a one-byte code

# the compact form (``pack``): presence flags, predicted, propensity, decided_at_ms
_FIXED = struct.Struct("<Hddq")
_U4, _I8, _F8 = struct.Struct("<I"), struct.Struct("<q"), struct.Struct("<d")
_F_DC_ID = 1  # decision id is "dc-" + 20 lower-case hex digits, stored as its 10 bytes
_F_WIDE = 2  # expires_at_ms stored whole (the window does not fit a uint32)
_F_ARM, _F_BEST, _F_CHANNEL = 4, 8, 16
_F_SETTLED_BY, _F_SETTLED_AT = 32, 64
_F_EXPERIMENTS, _F_SHADOW, _F_FEATURES = 128, 256, 512
_F_ALL = 1023
_OTHER = 255  # code byte: a name that is not in the code table follows
_CHANNEL_CODE = {c: i for i, c in enumerate(CHANNELS)}
_SETTLED_CODE = {c: i for i, c in enumerate(SETTLED_BY)}


class PendingCodecError(ValueError):
    """Stored pending-decision state that cannot be decoded."""


def window_end(decided_ms: int, attribution_window_s: float) -> int:
    """When the attribution window of a decision made at ``decided_ms`` ends (exclusive).

    >>> window_end(1_000, 2.5)
    3500
    """
    return decided_ms + int(round(attribution_window_s * 1000))


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

    def settled(self, by: str, at_ms: int) -> PendingDecision:
        """A copy settled ``by`` (an outcome type, or ``TIMER``) at ``at_ms`` (one constructor
        call, no ``dataclasses.replace``: every outcome and expiry settles one)."""
        return PendingDecision(
            self.decision_id, self.customer_id, self.offer_id, self.use_case, self.policy,
            self.segment, self.predicted, self.propensity, self.decided_at_ms,
            self.expires_at_ms, self.experiment_arm, self.best_predicted, self.channel, by, at_ms,
            self.experiments, self.shadow, self.features)

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
            float(decision["propensity"]), ts, window_end(ts, attribution_window_s),
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


    def pack(self) -> bytes:
        """The compact binary form kept inside the customer's value, without the customer id
        (the key); ``unpack_from`` reads it back. Layout: the module docstring."""
        flags = 0
        out = bytearray()
        dc = _dc_bytes(self.decision_id)
        if dc is not None:
            flags |= _F_DC_ID
            out += dc
        else:
            _put(out, self.decision_id.encode())
        for text in (self.offer_id, self.use_case, self.policy, self.segment):
            _put(out, text.encode())
        if self.experiment_arm is not None:
            flags |= _F_ARM
            _put(out, self.experiment_arm.encode())
        if self.best_predicted is not None:
            flags |= _F_BEST
            out += _F8.pack(self.best_predicted)
        if self.channel is not None:
            flags |= _F_CHANNEL
            _put_coded(out, self.channel, _CHANNEL_CODE)
        if self.settled_by is not None:
            flags |= _F_SETTLED_BY
            _put_coded(out, self.settled_by, _SETTLED_CODE)
        if self.settled_at_ms is not None:
            flags |= _F_SETTLED_AT
            out += _I8.pack(self.settled_at_ms)
        if self.experiments is not None:
            flags |= _F_EXPERIMENTS
            _put(out, orjson.dumps(self.experiments))
        if self.shadow is not None:
            flags |= _F_SHADOW
            _put(out, orjson.dumps(self.shadow))
        if self.features is not None:
            flags |= _F_FEATURES
            _put(out, np.asarray(self.features, "<f8").tobytes())
        window = self.expires_at_ms - self.decided_at_ms
        if 0 <= window < 2**32:
            tail = _U4.pack(window)
        else:
            flags |= _F_WIDE
            tail = _I8.pack(self.expires_at_ms)
        return (_FIXED.pack(flags, self.predicted, self.propensity, self.decided_at_ms) + tail
                + out)

    @classmethod
    def unpack_from(cls, data: bytes, offset: int, customer_id: str) -> tuple[PendingDecision, int]:
        """The decision packed at ``data[offset:]`` (``pack``) and the offset just after it.

        Parameters
        ----------
        data
            Bytes holding one or more packed decisions.
        offset
            Where this one starts.
        customer_id
            The customer the decision is for (the key of the value it was stored in).

        Raises ``PendingCodecError`` when the bytes are not a packed decision.
        """
        try:
            flags, predicted, propensity, decided = _FIXED.unpack_from(data, offset)
            pos = offset + _FIXED.size
            if flags & ~_F_ALL:
                raise PendingCodecError(f"packed decision has unknown flags {flags:#x}")
            if flags & _F_WIDE:
                (expires,) = _I8.unpack_from(data, pos)
                pos += 8
            else:
                expires = decided + _U4.unpack_from(data, pos)[0]
                pos += 4
            if flags & _F_DC_ID:
                if pos + 10 > len(data):
                    raise PendingCodecError("packed decision is cut short")
                decision_id, pos = "dc-" + data[pos:pos + 10].hex(), pos + 10
            else:
                decision_id, pos = _text(data, pos)
            offer_id, pos = _text(data, pos)
            use_case, pos = _text(data, pos)
            policy, pos = _text(data, pos)
            segment, pos = _text(data, pos)
            arm = best = channel = settled_by = settled_at = experiments = shadow = feats = None
            if flags & _F_ARM:
                arm, pos = _text(data, pos)
            if flags & _F_BEST:
                (best,) = _F8.unpack_from(data, pos)
                pos += 8
            if flags & _F_CHANNEL:
                channel, pos = _coded(data, pos, CHANNELS)
            if flags & _F_SETTLED_BY:
                settled_by, pos = _coded(data, pos, SETTLED_BY)
            if flags & _F_SETTLED_AT:
                (settled_at,) = _I8.unpack_from(data, pos)
                pos += 8
            if flags & _F_EXPERIMENTS:
                blob, pos = _blob(data, pos)
                experiments = orjson.loads(blob)
            if flags & _F_SHADOW:
                blob, pos = _blob(data, pos)
                shadow = orjson.loads(blob)
            if flags & _F_FEATURES:
                blob, pos = _blob(data, pos)
                if len(blob) % 8:
                    raise PendingCodecError("packed decision features are not float64s")
                feats = np.frombuffer(blob, "<f8").tolist()
        except (struct.error, IndexError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            raise PendingCodecError(f"packed decision is corrupt: {exc}") from None
        return cls(decision_id, customer_id, offer_id, use_case, policy, segment, predicted,
                   propensity, decided, expires, arm, best, channel, settled_by, settled_at,
                   experiments, shadow, feats), pos


_FIELDS = tuple(f.name for f in fields(PendingDecision))


def _dc_bytes(decision_id: str) -> bytes | None:
    """The 10 bytes of a ``decision_id_for`` id ("dc-" + 20 lower-case hex digits), else None."""
    if len(decision_id) != 23 or not decision_id.startswith("dc-"):
        return None
    try:
        raw = bytes.fromhex(decision_id[3:])
    except ValueError:
        return None
    return raw if raw.hex() == decision_id[3:] else None  # upper case would not round-trip


def _put(out: bytearray, raw: bytes) -> None:
    n = len(raw)
    out += bytes((n,)) if n < 255 else b"\xff" + _U4.pack(n)
    out += raw


def _put_coded(out: bytearray, name: str, codes: Mapping[str, int]) -> None:
    code = codes.get(name)
    if code is None:
        out.append(_OTHER)
        _put(out, name.encode())
    else:
        out.append(code)


def _blob(data: bytes, pos: int) -> tuple[bytes, int]:
    n = data[pos]
    pos += 1
    if n == 255:
        (n,) = _U4.unpack_from(data, pos)
        pos += 4
    end = pos + n
    if end > len(data):
        raise PendingCodecError("packed decision is cut short")
    return data[pos:end], end


def _text(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _blob(data, pos)
    return raw.decode(), pos


def _coded(data: bytes, pos: int, names: tuple[str, ...]) -> tuple[str, int]:
    code = data[pos]
    if code == _OTHER:
        return _text(data, pos + 1)
    if code >= len(names):
        raise PendingCodecError(f"packed decision has an unknown code {code}")
    return names[code], pos + 1


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
    settled = pending.settled(kind, ts)
    record = _with_id(_record(pending, ts, reward, value, kind), outcome)
    return Feedback(settled, (record,), reward)


def ignored(pending: PendingDecision) -> Feedback:
    """The attribution window passed: settle an open decision as ignored (reward 0).

    The record's ``ts`` is ``expires_at_ms``, not the watermark that fired the timer, so replay
    at any speed stamps it the same. A decision already settled yields no record and no reward.
    """
    if pending.is_settled:
        return Feedback(pending, (), None)
    settled = pending.settled(TIMER, pending.expires_at_ms)
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
