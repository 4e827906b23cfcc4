"""Beta-Bernoulli evidence per offer, for one customer (or one segment, or the population).

What is stored is *evidence*, not a posterior: decayed counts of successes and failures per offer.
The prior (a flat one, or a customer's segment arm shrunk toward the global arm) is added when a
policy reads the arms, so a change of prior in the configuration takes effect at once and a
customer's state never has to be rewritten for it.

Evidence forgets with a half-life in event time: at time ``t`` every count is multiplied by
``0.5 ** ((t - updated_at) / half_life)``. Decay is applied lazily on read and update, so the
work per event is O(number of offers) and never depends on how long the customer was away.

State is compact and versioned: one header and a packed numpy record per offer (12 bytes), sorted
by offer key, never a pickle.

>>> arms = Arms.empty()
>>> arms = arms.updated(offer_key("a"), reward=1.0, now_ms=0, half_life_s=None)
>>> s, f = arms.evidence(np.array([offer_key("a"), offer_key("b")], np.uint32), 0, None)
>>> s.tolist(), f.tolist()
([1.0, 0.0], [0.0, 0.0])
>>> Arms.decode(arms.encode()) == arms
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from stream_app.codec import read_header
from stream_app.core.catalogue import offer_key

__all__ = ["Arms", "ArmsCodecError", "ARM_DTYPE", "offer_key"]

ARM_DTYPE = np.dtype([("key", "<u4"), ("succ", "<f4"), ("fail", "<f4")])
_HEADER = struct.Struct("<BxxxqI")  # version, pad, updated_at_ms, n
_VERSION = 1


class ArmsCodecError(ValueError):
    """Stored arm state that cannot be decoded."""


def _decay_factor(now_ms: int, then_ms: int, half_life_s: float | None) -> float:
    if not half_life_s or now_ms <= then_ms:
        return 1.0
    return 0.5 ** ((now_ms - then_ms) / (1000.0 * half_life_s))


@dataclass(frozen=True, slots=True, eq=False)
class Arms:
    """Immutable evidence table; ``updated`` returns a new one (the old one stays valid)."""

    records: np.ndarray  # ARM_DTYPE, sorted by key, unique keys
    updated_at_ms: int

    @classmethod
    def empty(cls) -> Arms:
        return cls(np.zeros(0, ARM_DTYPE), 0)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Arms)
            and self.updated_at_ms == other.updated_at_ms
            and np.array_equal(self.records, other.records)
        )

    def __len__(self) -> int:
        return len(self.records)

    def evidence(
        self, keys: np.ndarray, now_ms: int, half_life_s: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decayed (successes, failures) aligned to ``keys``; zeros for offers never seen."""
        rec = self.records
        if not len(rec):
            return np.zeros(len(keys), np.float64), np.zeros(len(keys), np.float64)
        stored = rec["key"]
        pos = stored.searchsorted(keys)
        np.minimum(pos, len(rec) - 1, out=pos)
        miss = stored[pos] != keys
        factor = _decay_factor(now_ms, self.updated_at_ms, half_life_s)
        # the stored float32 times the factor, in float32 as before, then float64
        succ = (rec["succ"][pos] * factor).astype(np.float64)
        fail = (rec["fail"][pos] * factor).astype(np.float64)
        succ[miss] = 0.0
        fail[miss] = 0.0
        return succ, fail

    def updated(
        self,
        key: int,
        reward: float,
        now_ms: int,
        half_life_s: float | None,
        weight: float = 1.0,
    ) -> Arms:
        """Add one observation: ``reward`` in [0, 1] counts as success, ``1 - reward`` as failure."""
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {reward}")
        old = self.records
        pos = int(old["key"].searchsorted(key))
        if pos < len(old) and old["key"][pos] == key:
            rec = old.copy()
        else:  # a new offer: its row goes in at ``pos``, keys stay sorted
            rec = np.empty(len(old) + 1, ARM_DTYPE)
            rec[:pos] = old[:pos]
            rec[pos] = (key, 0.0, 0.0)
            rec[pos + 1 :] = old[pos:]
        factor = _decay_factor(now_ms, self.updated_at_ms, half_life_s)
        if factor != 1.0:
            rec["succ"] *= factor
            rec["fail"] *= factor
        rec["succ"][pos] += weight * reward
        rec["fail"][pos] += weight * (1.0 - reward)
        return Arms(rec, max(now_ms, self.updated_at_ms))

    def pruned(self, live_keys: np.ndarray) -> Arms:
        """Drop offers that are no longer in the catalogue (bounds state size)."""
        keep = np.isin(self.records["key"], live_keys)
        return self if keep.all() else Arms(self.records[keep], self.updated_at_ms)

    def encode(self) -> bytes:
        return _HEADER.pack(_VERSION, self.updated_at_ms, len(self.records)) + self.records.tobytes()

    @classmethod
    def decode(cls, data: bytes | None) -> Arms:
        if not data:
            return cls.empty()
        _, updated_at, n = read_header(data, _HEADER, _VERSION, ArmsCodecError, "arm state")
        body = memoryview(data)[_HEADER.size :]
        if len(body) != n * ARM_DTYPE.itemsize:
            raise ArmsCodecError("arm state length does not match its record count")
        return cls(np.frombuffer(body, ARM_DTYPE).copy(), updated_at)
