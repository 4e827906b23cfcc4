"""Population-level state of the contextual policies: one ridge regression per offer.

For each offer ``a`` the expected reward given the request's feature vector ``x`` is modelled as
``x . theta_a`` with ``theta_a = A_a^-1 b_a``, ``A_a = ridge * I + sum x x^T`` and
``b_a = sum reward * x`` over the outcomes of that offer (disjoint LinUCB, Li et al. 2010).
``A_a^-1`` is kept directly and updated by Sherman-Morrison in O(d^2), so a decision costs
O(k d^2) for ``k`` candidates. The update keeps ``A^-1`` exactly symmetric, so only its upper
triangle is stored.

This is population state (all customers of a partition feed it), partition-local by design: each
partition sees a random sample of customers, so its estimates are unbiased. It is mutable, unlike
the per-customer ``Arms``: one partition worker owns it, updates it in place per outcome and
checkpoints ``encode()``. Size is bounded by ``max_offers``: a new offer beyond it evicts the offer
updated least recently; ``pruned`` drops offers that left the catalogue.

Codec: a 28-byte header (version, dim, max_offers, count, tick, ridge) then one packed record per
offer (key, updates, last tick, b, upper triangle of A^-1), float64 little-endian, never a pickle.

>>> arms = LinearArms(dim=2, ridge=1.0)
>>> arms.update(7, np.array([1.0, 0.0]), reward=1.0)
>>> mean, var = arms.estimate(np.array([7, 8], np.uint32), np.array([1.0, 0.0]))
>>> mean.tolist(), var.tolist()  # seen: 1 / (1 + 1); unseen: the prior
([0.5, 0.0], [0.5, 1.0])
>>> LinearArms.decode(arms.encode()) == arms
True
"""

from __future__ import annotations

import struct

import numpy as np

from stream_app.codec import read_header

__all__ = ["LinearArms", "LinearArmsCodecError"]

_HEADER = struct.Struct("<BxHIIQd")  # version, pad, dim, max_offers, n, tick, ridge
_VERSION = 1
MAX_DIM = 64
MAX_OFFERS = 4096


class LinearArmsCodecError(ValueError):
    """Stored contextual state that cannot be decoded."""


def _record_dtype(dim: int) -> np.dtype:
    tri = dim * (dim + 1) // 2
    return np.dtype(
        [("key", "<u4"), ("updates", "<u4"), ("last", "<u8"), ("b", "<f8", (dim,)),
         ("ainv", "<f8", (tri,))]
    )


class LinearArms:
    def __init__(self, dim: int, ridge: float = 1.0, max_offers: int = 256) -> None:
        if not 1 <= dim <= MAX_DIM:
            raise ValueError(f"dim must be in [1, {MAX_DIM}]")
        if not ridge > 0.0:
            raise ValueError("ridge must be > 0")
        if not 1 <= max_offers <= MAX_OFFERS:
            raise ValueError(f"max_offers must be in [1, {MAX_OFFERS}]")
        self.dim, self.ridge, self.max_offers = int(dim), float(ridge), int(max_offers)
        self._keys = np.zeros(0, np.uint32)
        self._updates = np.zeros(0, np.uint32)
        self._last = np.zeros(0, np.uint64)
        self._b = np.zeros((0, dim))
        self._ainv = np.zeros((0, dim, dim))
        self._tick = 0

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LinearArms)
            and (self.dim, self.ridge, self.max_offers, self._tick)
            == (other.dim, other.ridge, other.max_offers, other._tick)
            and all(np.array_equal(getattr(self, f), getattr(other, f))
                    for f in ("_keys", "_updates", "_last", "_b", "_ainv"))
        )

    @property
    def keys(self) -> np.ndarray:
        return self._keys.copy()

    def _slot(self, key: int) -> int:
        pos = int(np.searchsorted(self._keys, key))
        if pos < len(self._keys) and self._keys[pos] == key:
            return pos
        if len(self._keys) >= self.max_offers:
            self._drop(np.arange(len(self._keys)) != int(np.argmin(self._last)))
            pos = int(np.searchsorted(self._keys, key))
        d = self.dim
        self._keys = np.insert(self._keys, pos, np.uint32(key))
        self._updates = np.insert(self._updates, pos, 0)
        self._last = np.insert(self._last, pos, 0)
        self._b = np.insert(self._b, pos, np.zeros(d), axis=0)
        self._ainv = np.insert(self._ainv, pos, np.eye(d) / self.ridge, axis=0)
        return pos

    def _drop(self, keep: np.ndarray) -> None:
        self._keys, self._updates = self._keys[keep], self._updates[keep]
        self._last = self._last[keep]
        self._b, self._ainv = self._b[keep], self._ainv[keep]

    def update(self, key: int, x: np.ndarray, reward: float) -> None:
        """Learn one outcome of offer ``key`` (an ``offer_key``) shown with features ``x``."""
        x = np.asarray(x, np.float64)
        if x.shape != (self.dim,) or not np.isfinite(x).all():
            raise ValueError(f"features must be {self.dim} finite numbers")
        if not np.isfinite(reward):
            raise ValueError("reward must be finite")
        if not 0 <= key < 2**32:
            raise ValueError("key must be a 32-bit offer key")
        pos = self._slot(int(key))
        ainv = self._ainv[pos]
        ax = ainv @ x
        ainv -= np.outer(ax, ax) / (1.0 + x @ ax)
        self._b[pos] += reward * x
        self._updates[pos] += 1
        self._tick += 1
        self._last[pos] = self._tick

    def estimate(self, keys: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: predicted reward ``x . theta`` and its variance factor ``x A^-1 x``.

        Offers never updated get the prior: mean 0, variance ``|x|^2 / ridge``.
        """
        x = np.asarray(x, np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"features must have length {self.dim}, got shape {x.shape}")
        k, n = len(keys), len(self._keys)
        ax = np.empty((k, self.dim))
        mean = np.zeros(k)
        hit = np.zeros(k, bool)
        if n:
            pos = np.minimum(np.searchsorted(self._keys, keys), n - 1)
            hit = self._keys[pos] == keys
            rows = pos[hit]
            ax[hit] = self._ainv[rows] @ x
            mean[hit] = np.einsum("kd,kd->k", ax[hit], self._b[rows])
        ax[~hit] = x / self.ridge
        return mean, ax @ x

    def theta(self, key: int) -> np.ndarray:
        """Ridge coefficients of one offer (zeros if never updated)."""
        pos = int(np.searchsorted(self._keys, key))
        if pos < len(self._keys) and self._keys[pos] == key:
            return self._ainv[pos] @ self._b[pos]
        return np.zeros(self.dim)

    def pruned(self, live_keys: np.ndarray) -> None:
        """Forget offers that are no longer in the catalogue."""
        self._drop(np.isin(self._keys, live_keys))

    def encode(self) -> bytes:
        iu = np.triu_indices(self.dim)
        rec = np.empty(len(self._keys), _record_dtype(self.dim))
        rec["key"], rec["updates"], rec["last"] = self._keys, self._updates, self._last
        rec["b"], rec["ainv"] = self._b, self._ainv[:, iu[0], iu[1]]
        head = _HEADER.pack(_VERSION, self.dim, self.max_offers, len(rec), self._tick, self.ridge)
        return head + rec.tobytes()

    @classmethod
    def decode(cls, data: bytes) -> LinearArms:
        _, dim, max_offers, n, tick, ridge = read_header(
            data, _HEADER, _VERSION, LinearArmsCodecError, "contextual state")
        try:
            state = cls(dim, ridge, max_offers)
        except ValueError as exc:
            raise LinearArmsCodecError(f"bad contextual state header: {exc}") from None
        dtype = _record_dtype(dim)
        body = memoryview(data)[_HEADER.size :]
        if n > max_offers or len(body) != n * dtype.itemsize:
            raise LinearArmsCodecError("contextual state length does not match its offer count")
        rec = np.frombuffer(body, dtype)
        if np.any(np.diff(rec["key"].astype(np.int64)) <= 0):
            raise LinearArmsCodecError("contextual state offer keys are not sorted and unique")
        if not (np.isfinite(rec["b"]).all() and np.isfinite(rec["ainv"]).all()):
            raise LinearArmsCodecError("contextual state holds non-finite numbers")
        iu = np.triu_indices(dim)
        ainv = np.zeros((n, dim, dim))
        ainv[:, iu[0], iu[1]] = rec["ainv"]
        ainv[:, iu[1], iu[0]] = rec["ainv"]
        state._keys, state._updates = rec["key"].copy(), rec["updates"].copy()
        state._last, state._b, state._ainv = rec["last"].copy(), rec["b"].copy(), ainv
        state._tick = tick
        return state

    def copy(self) -> LinearArms:
        return LinearArms.decode(self.encode())
