"""When a shadow challenger has earned promotion: beaten the champion for long enough.

The rule: the challenger's lower confidence-sequence bound (SNIPS by default) stays above the
champion's upper bound *continuously* for ``duration_s`` of event time, with at least ``min_n``
logged decisions. Any observation where it does not hold restarts the clock. Using confidence
sequences (valid at every look) is what makes checking after every event legitimate; each
sequence errs with probability ``alpha``, so a false promotion needs one of two rare errors
(chance at most ``2 alpha``) *and* that they last the whole duration.

The watch only says *due*; promoting (publishing a new engine-config) is the caller's decision.

>>> watch = PromotionWatch(duration_s=60)
>>> class Beaten:                       # stand-in for a ShadowEstimator that is clearly better
...     n = 1000
...     def estimates(self):
...         from stream_app.experiments.shadow import Estimate
...         return {"champion": Estimate(0.1, 0, 0, 0, 0.08, 0.12),
...                 "snips": Estimate(0.3, 0, 0, 0, 0.25, 0.35)}
>>> [watch.observe(Beaten(), t) for t in (0, 30_000, 60_000)]
[False, False, True]
>>> PromotionWatch.decode(watch.encode(), duration_s=60).since_ms
0
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

__all__ = ["PromotionWatch"]

_STATE = struct.Struct("<Bxxxq")  # version, since_ms (-1: the condition does not hold)
_VERSION = 1


class _Estimator(Protocol):
    n: int

    def estimates(self) -> dict[str, Any]: ...


class PromotionWatch:
    """Tracks, in event time, how long a challenger has continuously beaten the champion."""

    def __init__(self, duration_s: float, estimator: str = "snips", min_n: int = 500) -> None:
        if duration_s < 0:
            raise ValueError("duration_s must be >= 0")
        if estimator not in ("ips", "snips"):
            raise ValueError("estimator must be 'ips' or 'snips'")
        self.duration_ms = int(round(duration_s * 1000))
        self.estimator = estimator
        self.min_n = min_n
        self.since_ms: int | None = None

    def beats(self, shadow: _Estimator) -> bool:
        """Right now: challenger's lower bound above the champion's upper bound."""
        est = shadow.estimates()
        return shadow.n >= self.min_n and est[self.estimator].cs_low > est["champion"].cs_high

    def observe(self, shadow: _Estimator, now_ms: int) -> bool:
        """Record one look at event time ``now_ms``; True once promotion is due."""
        if not self.beats(shadow):
            self.since_ms = None
            return False
        if self.since_ms is None:
            self.since_ms = now_ms
        return now_ms - self.since_ms >= self.duration_ms

    def encode(self) -> bytes:
        return _STATE.pack(_VERSION, -1 if self.since_ms is None else self.since_ms)

    @classmethod
    def decode(cls, data: bytes | None, duration_s: float, **settings: Any) -> PromotionWatch:
        watch = cls(duration_s, **settings)
        if data:
            if len(data) != _STATE.size or data[0] != _VERSION:
                raise ValueError("promotion state cannot be read")
            since = _STATE.unpack(data)[1]
            watch.since_ms = None if since < 0 else since
        return watch
