"""Everything the engine keeps about one customer, stored as one value: profile + contact history.

One table read and one write per event for the customer's behaviour (the Beta arms live in their
own table, shared with the partition's pooled arms). The codec is a 4-byte header (version,
profile length) then the profile's fixed-size encoding, then the contact history's; never a
pickle. Size: ``PROFILE_BYTES`` (488) + 8 + 16 per remembered contact (64 by default).

>>> from stream_app.profile import apply_interaction
>>> c = CustomerState.empty()
>>> c = c.replace(profile=apply_interaction(c.profile, {"ts": 5, "type": "login"}))
>>> c = c.replace(history=c.history.record(10, 7, "sms"))
>>> d = CustomerState.decode(c.encode())
>>> d.profile == c.profile, d.history == c.history, len(CustomerState.empty().encode())
(True, True, 500)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from stream_app.codec import read_header
from stream_app.profile import Profile
from stream_app.rules.history import ContactHistory

__all__ = ["CustomerState", "CustomerCodecError", "OPTED_OUT"]

_HEADER = struct.Struct("<BBH")  # version, flags, profile length
OPTED_OUT = 1  # flag: the customer opted out of contact (withdraws consent on every channel)
_VERSION = 1


class CustomerCodecError(ValueError):
    """Stored customer state that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class CustomerState:
    profile: Profile
    history: ContactHistory
    flags: int = 0

    @property
    def opted_out(self) -> bool:
        return bool(self.flags & OPTED_OUT)

    @classmethod
    def empty(cls) -> CustomerState:
        return cls(Profile.empty(), ContactHistory.empty())

    def replace(self, **changes: object) -> CustomerState:
        return replace(self, **changes)

    def encode(self) -> bytes:
        p = self.profile.encode()
        return _HEADER.pack(_VERSION, self.flags, len(p)) + p + self.history.encode()

    @classmethod
    def decode(cls, data: bytes | None) -> CustomerState:
        """Stored state, or an empty customer for ``None`` (never seen here)."""
        if not data:
            return cls.empty()
        _, flags, n = read_header(data, _HEADER, _VERSION, CustomerCodecError, "customer state")
        body = memoryview(data)[_HEADER.size:]
        if len(body) < n:
            raise CustomerCodecError("customer state shorter than its profile")
        try:
            return cls(Profile.decode(bytes(body[:n])), ContactHistory.decode(bytes(body[n:])),
                       flags)
        except ValueError as exc:
            raise CustomerCodecError(f"customer state: {exc}") from None
