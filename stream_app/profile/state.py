"""One customer's behavioural profile and its versioned binary codec.

The stored form has a fixed size whatever the history length (``PROFILE_BYTES``, 488 bytes):

- a 56-byte header: codec version, segment, last published segment / dominant archetype, number
  of events, first seen, last event, the decay clock, last transaction and last publication
  times, and how far churn examples have been labelled (``models.labels``);
- the float32 vector of ``layout.VECTOR_LEN`` slots (272 bytes);
- ``OFFER_SLOTS`` records of per-offer response history (20 bytes each): offer key, decayed shown
  and responded counts, and when the record was last touched (its own decay clock).

Everything is little-endian numpy / ``struct``; a profile is never pickled.

>>> p = Profile.empty()
>>> len(p.encode()) == PROFILE_BYTES == 488
True
>>> Profile.decode(p.encode()) == p
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from stream_app.profile.layout import OFFER_SLOTS, VECTOR_LEN

__all__ = ["OFFER_DTYPE", "PROFILE_BYTES", "Profile", "ProfileClocks", "ProfileCodecError"]

OFFER_DTYPE = np.dtype([("key", "<u4"), ("shown", "<f4"), ("responded", "<f4"), ("at", "<i8")])
_HEADER = struct.Struct("<BbbbIqqqqqq")
_VERSION = 1
EMPTY_AT = -1  # ``at`` of an unused offer record
PROFILE_BYTES = _HEADER.size + 4 * VECTOR_LEN + OFFER_SLOTS * OFFER_DTYPE.itemsize


class ProfileCodecError(ValueError):
    """Stored profile bytes that cannot be decoded."""


def _empty_offers() -> np.ndarray:
    offers = np.zeros(OFFER_SLOTS, OFFER_DTYPE)
    offers["at"] = EMPTY_AT
    return offers


@dataclass(frozen=True, slots=True, eq=False)
class Profile:
    """Immutable profile; the transition functions return a new one (arrays are never shared).

    Times are event-time epoch milliseconds; ``clock_ms`` is the time the decayed slots refer to.
    ``segment`` is -1 until a segmenter assigned one.
    """

    vector: np.ndarray  # float32, VECTOR_LEN
    offers: np.ndarray  # OFFER_DTYPE, OFFER_SLOTS
    n_events: int = 0
    first_seen_ms: int = 0
    last_event_ms: int = 0
    clock_ms: int = 0
    last_tx_ms: int = 0
    segment: int = -1
    last_emit_ms: int = 0
    emitted_segment: int = -1
    emitted_dominant: int = -1
    churn_labelled_ms: int = 0

    @classmethod
    def empty(cls) -> Profile:
        return cls(np.zeros(VECTOR_LEN, np.float32), _empty_offers())

    def replace(self, **changes: object) -> Profile:
        """A copy with some header fields (or arrays) replaced (``dataclasses.replace``, without
        its per-call field introspection: profiles are replaced several times per event)."""
        for name in _FIELDS:
            if name not in changes:
                changes[name] = getattr(self, name)
        return Profile(**changes)  # type: ignore[arg-type]

    def copy_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vector.copy(), self.offers.copy()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def encode(self) -> bytes:
        header = _HEADER.pack(
            _VERSION, self.segment, self.emitted_segment, self.emitted_dominant, self.n_events,
            self.first_seen_ms, self.last_event_ms, self.clock_ms, self.last_tx_ms,
            self.last_emit_ms, self.churn_labelled_ms,
        )  # fmt: skip
        vec = np.ascontiguousarray(self.vector, "<f4")
        return header + vec.tobytes() + np.ascontiguousarray(self.offers, OFFER_DTYPE).tobytes()

    @classmethod
    def decode(cls, data: bytes | None) -> Profile:
        """The profile stored in ``data``; an empty profile for ``None`` or ``b""``."""
        if not data:
            return cls.empty()
        (_, segment, em_seg, em_dom, n, first, last, clock, last_tx, last_emit, churn) = (
            _header(data)
        )
        at = _HEADER.size
        vec = np.frombuffer(data, "<f4", VECTOR_LEN, at).astype(np.float32)
        offers = np.frombuffer(data, OFFER_DTYPE, OFFER_SLOTS, at + 4 * VECTOR_LEN).copy()
        return cls(
            vec, offers, n, first, last, clock, last_tx, segment, last_emit, em_seg, em_dom, churn
        )


def _header(data: bytes) -> tuple:
    """The header fields of stored profile bytes, once their version and size are checked."""
    if data[0] != _VERSION:
        raise ProfileCodecError(f"unknown profile version {data[0]}")
    if len(data) != PROFILE_BYTES:
        raise ProfileCodecError(f"profile is {len(data)} bytes, expected {PROFILE_BYTES}")
    return _HEADER.unpack_from(data)


class ProfileClocks(NamedTuple):
    """The event times of a profile that its churn-silence timer is computed from
    (``models.labels.silence_final_ms``), read from stored bytes without the vector and the
    offer records: a partition reads them for every customer when it rebuilds its timers.

    >>> p = Profile.empty().replace(n_events=2, first_seen_ms=5, last_event_ms=9)
    >>> ProfileClocks.decode(p.encode()) == ProfileClocks.of(p) == (2, 5, 9, 0)
    True
    """

    n_events: int
    first_seen_ms: int
    last_event_ms: int
    churn_labelled_ms: int

    @classmethod
    def of(cls, profile: Profile) -> ProfileClocks:
        return cls(profile.n_events, profile.first_seen_ms, profile.last_event_ms,
                   profile.churn_labelled_ms)

    @classmethod
    def decode(cls, data: bytes | None) -> ProfileClocks:
        """The clocks of the profile stored in ``data`` (checked as ``Profile.decode`` checks
        it); those of an empty profile for ``None`` or ``b""``."""
        if not data:
            return cls(0, 0, 0, 0)
        (_, _, _, _, n, first, last, _, _, _, churn) = _header(data)
        return cls(n, first, last, churn)


_FIELDS = tuple(f.name for f in fields(Profile))
