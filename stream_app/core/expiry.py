"""Event-time attribution timers: which decisions' windows have closed, each reported once.

One ``ExpiryQueue`` per partition holds ``(expires_at_ms, decision_id)`` timers in a heap. Time
is the partition's **watermark: the largest event time (``ts``) seen on the partition so far**,
whatever the message type. It only moves forward (``advance`` ignores an older value), so an
out-of-order message never re-opens a closed window, and replaying the partition at any speed
fires the same timers at the same messages. Call ``advance(ts)`` *before* handling each message,
so an outcome stamped after its window finds the decision already settled as ignored.

A timer fires when ``expires_at_ms <= watermark``; ids due together come out in
``(expires_at_ms, decision_id)`` order. Each push fires at most once. Pushing an id that already
has a timer moves it (e.g. to keep a settled decision a little longer for late outcomes);
``cancel`` removes it. Both are lazy: stale heap entries are skipped when popped, and the heap is
rebuilt when they outnumber the live timers, so memory stays proportional to live timers.

>>> q = ExpiryQueue()
>>> q.push(5_000, "dc-b"); q.push(2_000, "dc-a"); q.push(9_000, "dc-c")
>>> q.cancel("dc-b")
True
>>> q.advance(6_000), q.advance(6_000), q.advance(1_000), q.watermark_ms
(['dc-a'], [], [], 6000)
>>> ExpiryQueue.decode(q.encode()).advance(10_000)
['dc-c']
"""

from __future__ import annotations

import heapq
import struct

__all__ = ["ExpiryCodecError", "ExpiryQueue"]

_HEADER = struct.Struct("<BxxxqI")  # version, pad, watermark_ms, number of timers
_TIMER = struct.Struct("<qH")  # expires_at_ms, length of the utf-8 decision id that follows
_VERSION = 1
_NO_WATERMARK = -(2**63)


class ExpiryCodecError(ValueError):
    """Stored timer state that cannot be decoded."""


class ExpiryQueue:
    """Attribution timers of one partition. Mutable; ``encode`` / ``decode`` checkpoint it."""

    __slots__ = ("_heap", "_due", "_watermark")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}  # live timers: decision id -> expires_at_ms
        self._watermark = _NO_WATERMARK

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._due

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ExpiryQueue) and self._due == other._due
                and self._watermark == other._watermark)

    @property
    def watermark_ms(self) -> int | None:
        """The largest event time passed to ``advance``; None before the first."""
        return None if self._watermark == _NO_WATERMARK else self._watermark

    def push(self, expires_at_ms: int, decision_id: str) -> None:
        """Set ``decision_id``'s timer (replacing any it had); fires at the next ``advance`` if
        ``expires_at_ms`` is already at or below the watermark. O(log n)."""
        self._due[decision_id] = int(expires_at_ms)
        heapq.heappush(self._heap, (int(expires_at_ms), decision_id))
        self._compact()

    def cancel(self, decision_id: str) -> bool:
        """Drop ``decision_id``'s timer; False if it had none. O(1) amortised."""
        if self._due.pop(decision_id, None) is None:
            return False
        self._compact()
        return True

    def advance(self, watermark_ms: int) -> list[str]:
        """Move the watermark forward to ``watermark_ms`` and return the ids that expired."""
        return [decision_id for _, decision_id in self.expire(watermark_ms)]

    def expire(self, watermark_ms: int) -> list[tuple[int, str]]:
        """``advance``, returning the ``(expires_at_ms, decision_id)`` of the timers that
        expired (to merge them with another schedule's, in the same order)."""
        self._watermark = max(self._watermark, int(watermark_ms))
        fired: list[tuple[int, str]] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= self._watermark:
            at, decision_id = timer = heapq.heappop(heap)
            if due.get(decision_id) == at:  # else cancelled or moved: a stale entry
                del due[decision_id]
                fired.append(timer)
        return fired

    def _compact(self) -> None:
        # Amortised O(log n): a rebuild happens after at least n + 64 stale entries piled up.
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = sorted(self._due_items())

    def _due_items(self) -> list[tuple[int, str]]:
        return [(at, decision_id) for decision_id, at in self._due.items()]

    def encode(self) -> bytes:
        """Live timers only, sorted (same queue -> same bytes); about 10 + id length per timer."""
        timers = sorted(self._due_items())
        parts = [_HEADER.pack(_VERSION, self._watermark, len(timers))]
        for at, decision_id in timers:
            raw = decision_id.encode("utf-8")
            parts.append(_TIMER.pack(at, len(raw)) + raw)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | None) -> ExpiryQueue:
        queue = cls()
        if not data:
            return queue
        try:
            version, watermark, n = _HEADER.unpack_from(data)
            if version != _VERSION:
                raise ExpiryCodecError(f"unknown timer state version {version}")
            pos = _HEADER.size
            timers = []
            for _ in range(n):
                at, length = _TIMER.unpack_from(data, pos)
                pos += _TIMER.size
                timers.append((at, bytes(data[pos : pos + length]).decode("utf-8")))
                pos += length
        except (struct.error, UnicodeDecodeError) as exc:
            raise ExpiryCodecError(f"timer state is truncated or corrupt: {exc}") from None
        if pos != len(data):
            raise ExpiryCodecError("timer state length does not match its timers")
        queue._heap = timers  # sorted, hence already a heap
        queue._due = {decision_id: at for at, decision_id in timers}
        queue._watermark = watermark
        return queue
