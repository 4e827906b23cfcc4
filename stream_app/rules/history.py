"""A customer's recent contacts: the memory that contact-fatigue rules read.

One packed record per contact — event time, offer key, channel — for the last ``capacity``
contacts only (older ones are dropped), kept in event-time order. 13 bytes a contact, a 8-byte
header, a versioned binary codec, never a pickle. ``record`` returns a new history; the old one
stays valid (the state-store value is replaced, never mutated in place).

Bounded memory has a price stated plainly: a cap of ``max`` contacts is exact as long as
``capacity >= max`` for the global budget, and as long as the window's contacts on *all* channels
fit in ``capacity`` for a per-channel cap. ``parse_rules`` refuses caps larger than the capacity.

>>> h = ContactHistory.empty(capacity=2)
>>> h = h.record(1_000, offer_key("a"), "sms").record(2_000, offer_key("b"), "email")
>>> h = h.record(3_000, offer_key("c"), "app")
>>> len(h), h.records["ts_ms"].tolist(), h.channels().tolist()
(2, [2000, 3000], ['email', 'app'])
>>> ContactHistory.decode(h.encode()) == h
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from stream_app.codec import read_header
from stream_app.core.catalogue import CHANNELS, offer_key

__all__ = [
    "ContactHistory",
    "HistoryCodecError",
    "CONTACT_DTYPE",
    "DEFAULT_CAPACITY",
    "MAX_CAPACITY",
    "channel_code",
    "offer_key",
]

CONTACT_DTYPE = np.dtype([("ts_ms", "<i8"), ("offer_key", "<u4"), ("channel", "u1")])
DEFAULT_CAPACITY = 64
MAX_CAPACITY = 1024
_HEADER = struct.Struct("<BxHI")  # version, pad, capacity, n
_VERSION = 1


class HistoryCodecError(ValueError):
    """Stored contact history that cannot be decoded."""


def channel_code(channel: str | int) -> int:
    """The u8 code of a channel (its position in ``CHANNELS``)."""
    if isinstance(channel, (int, np.integer)):
        if not 0 <= int(channel) < len(CHANNELS):
            raise ValueError(f"unknown channel code {channel}")
        return int(channel)
    try:
        return CHANNELS.index(channel)
    except ValueError:
        raise ValueError(f"unknown channel {channel!r}") from None


@dataclass(frozen=True, slots=True, eq=False)
class ContactHistory:
    """The last ``capacity`` contacts of one customer, oldest first."""

    records: np.ndarray  # CONTACT_DTYPE, sorted by ts_ms
    capacity: int = DEFAULT_CAPACITY

    @classmethod
    def empty(cls, capacity: int = DEFAULT_CAPACITY) -> ContactHistory:
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be in [1, {MAX_CAPACITY}], got {capacity}")
        return cls(np.zeros(0, CONTACT_DTYPE), capacity)

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ContactHistory)
            and self.capacity == other.capacity
            and np.array_equal(self.records, other.records)
        )

    def record(self, ts_ms: int, offer_key: int, channel: str | int) -> ContactHistory:
        """A new history with this contact added (late contacts land in time order)."""
        row = (int(ts_ms), int(offer_key), channel_code(channel))
        old = self.records
        if not len(old) or old["ts_ms"][-1] <= row[0]:  # the usual case: the latest contact
            pos = len(old)
        else:
            pos = int(np.searchsorted(old["ts_ms"], row[0], side="right"))
        n = len(old) + 1
        start = max(n - self.capacity, 0)  # the oldest records that do not fit any more
        rec = np.empty(n - start, CONTACT_DTYPE)
        if pos >= start:
            rec[: pos - start] = old[start:pos]
            rec[pos - start] = row
            rec[pos - start + 1 :] = old[pos:]
        else:  # a contact older than all kept ones is dropped at once
            rec[:] = old[start - 1 :]
        return ContactHistory(rec, self.capacity)

    def since(self, start_ms: int) -> np.ndarray:
        """Contacts with ``ts_ms > start_ms`` (the open start of a rolling window)."""
        pos = int(np.searchsorted(self.records["ts_ms"], start_ms, side="right"))
        return self.records[pos:]

    def last_ts(self) -> int | None:
        return int(self.records["ts_ms"][-1]) if len(self.records) else None

    def channels(self) -> np.ndarray:
        return np.array(CHANNELS, dtype=object)[self.records["channel"]]

    def encode(self) -> bytes:
        return _HEADER.pack(_VERSION, self.capacity, len(self.records)) + self.records.tobytes()

    @classmethod
    def decode(cls, data: bytes | None, capacity: int = DEFAULT_CAPACITY) -> ContactHistory:
        """Decode stored bytes; ``None`` or empty bytes give an empty history of ``capacity``."""
        if not data:
            return cls.empty(capacity)
        _, stored_capacity, n = read_header(
            data, _HEADER, _VERSION, HistoryCodecError, "contact history")
        body = memoryview(data)[_HEADER.size :]
        if len(body) != n * CONTACT_DTYPE.itemsize or n > stored_capacity:
            raise HistoryCodecError("contact history length does not match its record count")
        rec = np.frombuffer(body, CONTACT_DTYPE).copy()
        ts = rec["ts_ms"]
        if n and ((ts[1:] < ts[:-1]).any() or int(rec["channel"].max()) >= len(CHANNELS)):
            raise HistoryCodecError("contact history records are out of order or corrupt")
        return cls(rec, stored_capacity)

    def resized(self, capacity: int) -> ContactHistory:
        """The same history under a new capacity (keeps the most recent contacts)."""
        self.empty(capacity)  # validates the capacity
        return ContactHistory(self.records[-capacity:].copy(), capacity)
