"""Everything the engine keeps about one customer, stored as one value: profile, contact
history and the ids of the last interactions applied.

One table read and one write per event for the customer's behaviour (the Beta arms live in their
own table, shared with the partition's pooled arms). The codec is a 6-byte header (version,
flags, profile length, history length), the profile's fixed-size encoding, the contact
history's, then the interaction window's; never a pickle. Size: ``PROFILE_BYTES`` (488) + 6 +
(8 + 13 per remembered contact) + (8 + 8 per remembered interaction id, at most
``RECENT_EVENTS`` = 8).

**Interactions are applied once.** Kafka delivers at least once: after a crash or a rebalance
the messages since the last committed offset are read again, and a producer retry can write one
twice. Decisions and outcomes are recognised by their ids elsewhere (the pending decision, the
``seen`` table); an interaction is recognised by its ``event_id`` among the customer's last
``RECENT_EVENTS`` (``recent_events``), kept in this same value, so that a profile never counts
one event twice and the check costs no extra table access.

Version 1 values (no history length, no window) are still read: their window starts empty.

>>> from stream_app.profile import apply_interaction
>>> c = CustomerState.empty()
>>> c = c.replace(profile=apply_interaction(c.profile, {"ts": 5, "type": "login"}))
>>> c = c.replace(history=c.history.record(10, 7, "sms"), recent_events=c.remembered("ev-1"))
>>> d = CustomerState.decode(c.encode())
>>> d.profile == c.profile, d.history == c.history, d.recent_events == c.recent_events
(True, True, True)
>>> d.recent_events.seen_before("ev-1"), CustomerState.empty().recent_events.seen_before("ev-1")
(True, False)
>>> len(CustomerState.empty().encode())
510
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from stream_app.codec import read_header
from stream_app.core.dedup import DedupCodecError, DedupWindow
from stream_app.profile import Profile
from stream_app.rules.history import ContactHistory

__all__ = ["CustomerState", "CustomerCodecError", "OPTED_OUT", "RECENT_EVENTS"]

_HEADER_V1 = struct.Struct("<BBH")  # version, flags, profile length
_HEADER = struct.Struct("<BBHH")  # version, flags, profile length, history length
OPTED_OUT = 1  # flag: the customer opted out of contact (withdraws consent on every channel)
_VERSION = 2
# Interaction ids remembered per customer: a redelivery repeats what was read since the last
# committed offset (Faust commits every second), i.e. a customer's last event or two; 8 leaves
# room for bursts and costs 72 bytes.
RECENT_EVENTS = 8


def _no_events() -> DedupWindow:
    return DedupWindow(RECENT_EVENTS)


class CustomerCodecError(ValueError):
    """Stored customer state that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class CustomerState:
    profile: Profile
    history: ContactHistory
    flags: int = 0
    recent_events: DedupWindow = field(default_factory=_no_events)  # never mutated: see remembered

    @property
    def opted_out(self) -> bool:
        return bool(self.flags & OPTED_OUT)

    @classmethod
    def empty(cls) -> CustomerState:
        return cls(Profile.empty(), ContactHistory.empty())

    def replace(self, **changes: object) -> CustomerState:
        return replace(self, **changes)

    def remembered(self, event_id: str) -> DedupWindow:
        """A copy of ``recent_events`` with ``event_id`` as the newest (this state is unchanged)."""
        window = self.recent_events.copy()
        window.remember(event_id)
        return window

    def encode(self) -> bytes:
        p, h = self.profile.encode(), self.history.encode()
        return (_HEADER.pack(_VERSION, self.flags, len(p), len(h)) + p + h
                + self.recent_events.encode())

    @classmethod
    def decode(cls, data: bytes | None) -> CustomerState:
        """Stored state, or an empty customer for ``None`` (never seen here)."""
        if not data:
            return cls.empty()
        if data[0] == 1:  # written before interactions were de-duplicated
            _, flags, n = read_header(data, _HEADER_V1, 1, CustomerCodecError, "customer state")
            body = memoryview(data)[_HEADER_V1.size:]
            h = len(body) - n
        else:
            _, flags, n, h = read_header(data, _HEADER, _VERSION, CustomerCodecError,
                                         "customer state")
            body = memoryview(data)[_HEADER.size:]
        if len(body) < n + h:
            raise CustomerCodecError("customer state shorter than its profile and history")
        try:
            return cls(Profile.decode(bytes(body[:n])), ContactHistory.decode(bytes(body[n:n + h])),
                       flags, DedupWindow.decode(bytes(body[n + h:]), RECENT_EVENTS))
        except (ValueError, DedupCodecError) as exc:
            raise CustomerCodecError(f"customer state: {exc}") from None
