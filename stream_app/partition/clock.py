"""A partition's event time: the watermark, the attribution-window timers and the open delta
roll-up windows.

The watermark of a partition is the largest event time seen on it (requests, outcomes and
interactions alike), so replay at any speed fires the same timers and closes the same windows.
Timers are not stored on their own: the open decisions live in their customers' values, and the
timers are rebuilt from them the first time a partition is seen after a start or rebalance.
Roll-up windows still open when a worker stops are lost (per-outcome records are not; a roll-up
can be recomputed from them).

>>> from stream_app.core.feedback import PendingDecision
>>> p = PendingDecision("dc-1", "c7", "o1", "default", "thompson", "all", 0.1, 0.5, 0, 1000)
>>> clock = PartitionClock()
>>> clock.schedule(p)
>>> clock.advance(999), clock.advance(1000)
([], [('c7', 'dc-1')])
>>> forget_at(p)
2000
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_app.core.delta import DeltaAggregator
from stream_app.core.expiry import ExpiryQueue
from stream_app.core.feedback import PendingDecision

GRACE_FACTOR = 1.0  # a settled decision is kept this many attribution windows more, for late outcomes
_SEP = "\x1f"  # between a timer's decision id and its customer id (in neither)


def forget_at(pending: PendingDecision) -> int:
    """When a settled decision is forgotten: one more attribution window after it expired
    (until then a late outcome is recognised as late, after it as unknown)."""
    window = pending.expires_at_ms - pending.decided_at_ms
    return pending.expires_at_ms + int(window * GRACE_FACTOR)


@dataclass
class PartitionClock:
    timers: ExpiryQueue = field(default_factory=ExpiryQueue)
    rollups: DeltaAggregator = field(
        default_factory=lambda: DeltaAggregator(window_s=60.0, allowed_lateness_s=60.0))

    @property
    def watermark_ms(self) -> int | None:
        return self.timers.watermark_ms

    def schedule(self, pending: PendingDecision) -> None:
        """Set an open decision's attribution timer (a settled one needs none)."""
        if not pending.is_settled:
            self.timers.push(pending.expires_at_ms,
                             f"{pending.decision_id}{_SEP}{pending.customer_id}")

    def advance(self, ts: int) -> list[tuple[str, str]]:
        """Move event time to ``ts``; the (customer id, decision id) of the timers that fired."""
        fired = []
        for timer in self.timers.advance(ts):
            decision_id, _, customer_id = timer.partition(_SEP)
            fired.append((customer_id, decision_id))
        return fired
