"""A bounded de-duplication window: has this key (e.g. this customer) seen this message id lately?

Kafka delivers at least once, so an input message can arrive twice (a producer retry, a replayed
offset after a rebalance). Processing is idempotent by message id: each key remembers the ids of
its last ``capacity`` messages, as 64-bit hashes in a numpy ring buffer, and a message whose id is
among them is a duplicate.

The window is bounded by count, not time: stored, it is ``8 + 8 * n`` bytes for the ``n`` ids
remembered so far, at most ``8 + 8 * capacity`` (520 bytes for the default 64), so a customer
with one outcome costs 16 bytes, not 520 (codec v2; v1 values, always the full ring, are still
read). A duplicate older than the last ``capacity`` messages of its key is
not detected; size ``capacity`` above the number of messages a key can receive while a
redelivery is still possible. Two different ids collide with probability about
``capacity / 2**64`` per lookup - a false duplicate once in ~10**17 messages.

``seen_before`` is a scan of at most ``capacity`` integers (about a microsecond for 64).

>>> window = DedupWindow(capacity=4)
>>> window.seen_before("o-1")
False
>>> window.remember("o-1")
>>> window.seen_before("o-1")
True
>>> for i in range(2, 6):
...     window.remember(f"o-{i}")
>>> window.seen_before("o-1"), window.seen_before("o-5")   # o-1 fell out of the window
(False, True)
>>> len(window.encode()), DedupWindow.decode(window.encode()) == window
(40, True)
>>> one = DedupWindow(); one.remember("o-1"); len(one.encode())
16
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from stream_app.codec import read_header

__all__ = ["DedupCodecError", "DedupWindow", "id_hash"]

_HEADER = struct.Struct("<BxHHH")  # version, pad, capacity, size, next slot
_VERSION = 2  # v2: only the filled slots are stored; v1: the whole ring
_VERSIONS = (1, 2)
MAX_CAPACITY = 65535


class DedupCodecError(ValueError):
    """Stored de-duplication state that cannot be decoded."""


def id_hash(message_id: str) -> int:
    """Stable 64-bit hash of a message id (the same in every process, unlike ``hash``)."""
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class DedupWindow:
    """The last ``capacity`` message ids of one key. Mutable: load, check, remember, store."""

    __slots__ = ("capacity", "_ring", "_size", "_next")

    def __init__(self, capacity: int = 64) -> None:
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be in 1..{MAX_CAPACITY}, got {capacity}")
        self.capacity = capacity
        self._ring = np.zeros(capacity, np.uint64)
        self._size = 0  # slots filled so far (stops growing at capacity)
        self._next = 0  # slot the next id is written to

    def __len__(self) -> int:
        return self._size

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DedupWindow)
            and self.capacity == other.capacity
            and self._size == other._size
            and self._next == other._next
            and np.array_equal(self._ring, other._ring)
        )

    def seen_before(self, message_id: str) -> bool:
        """True when ``message_id`` is among the last ``capacity`` ids remembered."""
        # a list scan: for the few ids a window holds, cheaper than a numpy comparison
        return bool(self._size) and id_hash(message_id) in self._ring[: self._size].tolist()

    def copy(self) -> DedupWindow:
        window = DedupWindow.__new__(DedupWindow)
        window.capacity, window._ring = self.capacity, self._ring.copy()
        window._size, window._next = self._size, self._next
        return window

    def remember(self, message_id: str) -> None:
        """Record ``message_id`` as the newest id, evicting the oldest once the window is full."""
        self._ring[self._next] = id_hash(message_id)
        self._next = (self._next + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def admit(self, message_id: str) -> bool:
        """Remember ``message_id`` and say whether it is new (False: a duplicate, skip it)."""
        if self.seen_before(message_id):
            return False
        self.remember(message_id)
        return True

    def encode(self) -> bytes:
        # until the ring is full its ids fill slots 0..size-1 (and next == size): store those only
        return (_HEADER.pack(_VERSION, self.capacity, self._size, self._next)
                + self._ring[: self._size].tobytes())

    @classmethod
    def decode(cls, data: bytes | None, capacity: int = 64) -> DedupWindow:
        """Decode stored state; ``None`` or empty gives an empty window of ``capacity``."""
        if not data:
            return cls(capacity)
        version, cap, size, nxt = read_header(data, _HEADER, _VERSIONS, DedupCodecError,
                                              "dedup state")
        stored = cap if version == 1 else size
        if (len(data) != _HEADER.size + 8 * stored or cap == 0 or size > cap or nxt >= cap
                or (version == 2 and size < cap and nxt != size)):
            raise DedupCodecError("dedup state is inconsistent with its header")
        window = cls(cap)
        window._ring[:stored] = np.frombuffer(data, "<u8", count=stored, offset=_HEADER.size)
        window._size, window._next = size, nxt
        return window
