"""Per-partition event-time machinery held by a worker: the watermark, the attribution-window
timers and the open delta roll-up windows.

The watermark of a partition is the largest event time seen on it (requests, outcomes and
interactions alike), so replay at any speed fires the same timers and closes the same windows.
Timers are not checkpointed on their own: they are rebuilt from the ``pending`` table (which is
changelog-backed) the first time a partition is seen after a start or rebalance. Roll-up windows
still open when a worker stops are lost (per-outcome records are not; a roll-up can be recomputed
from them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from stream_app.core.delta import DeltaAggregator
from stream_app.core.expiry import ExpiryQueue
from stream_app.core.feedback import PendingDecision

_ENVELOPE = struct.Struct("<H")
GRACE_FACTOR = 1.0  # a settled decision is kept this many attribution windows more, for late outcomes


def pack_pending(partition: int, pending: PendingDecision) -> bytes:
    return _ENVELOPE.pack(partition) + pending.encode()


def unpack_pending(data: bytes) -> tuple[int, PendingDecision]:
    (partition,) = _ENVELOPE.unpack_from(data)
    return partition, PendingDecision.decode(data[_ENVELOPE.size:])


def forget_at(pending: PendingDecision) -> int:
    """When a settled decision may be deleted: one more attribution window after it expired."""
    window = pending.expires_at_ms - pending.decided_at_ms
    return pending.expires_at_ms + int(window * GRACE_FACTOR)


@dataclass
class PartitionClock:
    timers: ExpiryQueue = field(default_factory=ExpiryQueue)
    rollups: DeltaAggregator = field(
        default_factory=lambda: DeltaAggregator(window_s=60.0, allowed_lateness_s=60.0))

    def schedule(self, pending: PendingDecision) -> None:
        self.timers.push(forget_at(pending) if pending.is_settled else pending.expires_at_ms,
                         pending.decision_id)
