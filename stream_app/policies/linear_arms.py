"""Population-level state of the contextual policies: one ridge regression per offer, forgetting.

For each offer ``a`` the expected reward given the request's feature vector ``x`` is modelled as
``x . theta_a`` with ``theta_a = A_a^-1 b_a``, ``A_a = ridge * I + S_a``, ``S_a = sum w x x^T`` and
``b_a = sum w reward * x`` over the outcomes of that offer (disjoint LinUCB, Li et al. 2010).

**Forgetting.** With ``half_life_s`` set, every outcome's weight ``w`` halves every
``half_life_s`` seconds of event time (exponentially weighted ridge, as the Beta arms forget):
``S_a`` and ``b_a`` are decayed lazily, by the time since the offer's last update, when it is
updated and (without changing the state) when it is estimated. The ridge prior itself never
decays, so a feature an offer has not been seen with keeps variance ``1 / ridge`` and an offer
not shown for a long time drifts back to the prior: it is explored again. Keeping ``A`` rather
than ``A^-1`` is what makes "decay the data, not the prior" exact; an estimate then costs one
batched ``d x d`` solve per candidate (``O(k d^3)``, d <= 64: tens of microseconds), an update
``O(d^2)``.

This is population state (all customers of a partition feed it), partition-local by design: each
partition sees a random sample of customers, so its estimates are unbiased. It is mutable, unlike
the per-customer ``Arms``: one partition worker owns it, updates it in place per outcome and
checkpoints ``encode()``. Size is bounded by ``max_offers``: a new offer beyond it evicts the offer
updated least recently; ``pruned`` drops offers that left the catalogue.

Codec: a 36-byte header (version, dim, max_offers, count, tick, ridge, half-life) then one packed
record per offer (key, updates, last tick, last event time, b, upper triangle of S), float64
little-endian, never a pickle. Version 1 (which kept ``A^-1`` and no forgetting) still decodes.

>>> arms = LinearArms(dim=2, ridge=1.0)
>>> arms.update(7, np.array([1.0, 0.0]), reward=1.0)
>>> mean, var = arms.estimate(np.array([7, 8], np.uint32), np.array([1.0, 0.0]))
>>> mean.tolist(), var.tolist()  # seen: 1 / (1 + 1); unseen: the prior
([0.5, 0.0], [0.5, 1.0])
>>> LinearArms.decode(arms.encode()) == arms
True
>>> fading = LinearArms(dim=1, half_life_s=3600.0)
>>> fading.update(7, np.array([1.0]), reward=1.0, now_ms=0)
>>> fading.estimate(np.array([7], np.uint32), np.array([1.0]), now_ms=3_600_000)[0].tolist()
[0.3333333333333333]
"""

from __future__ import annotations

import struct

import numpy as np

from stream_app.codec import read_header

__all__ = ["LinearArms", "LinearArmsCodecError"]

_HEADER = struct.Struct("<BxHIIQdd")  # version, pad, dim, max_offers, n, tick, ridge, half-life
_HEADER_V1 = struct.Struct("<BxHIIQd")
_VERSION = 2
MAX_DIM = 64
MAX_OFFERS = 4096
_NEVER = np.iinfo(np.int64).min  # no event time recorded (updated without a clock, or v1 state)


class LinearArmsCodecError(ValueError):
    """Stored contextual state that cannot be decoded."""


def _record_dtype(dim: int, version: int = _VERSION) -> np.dtype:
    tri = dim * (dim + 1) // 2
    head = [("key", "<u4"), ("updates", "<u4"), ("last", "<u8")]
    if version >= 2:
        head.append(("at_ms", "<i8"))
    return np.dtype([*head, ("b", "<f8", (dim,)), ("tri", "<f8", (tri,))])


class LinearArms:
    def __init__(self, dim: int, ridge: float = 1.0, max_offers: int = 256,
                 half_life_s: float | None = None) -> None:
        if not 1 <= dim <= MAX_DIM:
            raise ValueError(f"dim must be in [1, {MAX_DIM}]")
        if not ridge > 0.0:
            raise ValueError("ridge must be > 0")
        if not 1 <= max_offers <= MAX_OFFERS:
            raise ValueError(f"max_offers must be in [1, {MAX_OFFERS}]")
        if half_life_s is not None and not half_life_s > 0.0:
            raise ValueError("half_life_s must be > 0 (or None: no forgetting)")
        self.dim, self.ridge, self.max_offers = int(dim), float(ridge), int(max_offers)
        self.half_life_s = float(half_life_s) if half_life_s else None
        self._keys = np.zeros(0, np.uint32)
        self._updates = np.zeros(0, np.uint32)
        self._last = np.zeros(0, np.uint64)
        self._at = np.zeros(0, np.int64)  # event time of each offer's last update
        self._b = np.zeros((0, dim))
        self._s = np.zeros((0, dim, dim))  # sum of w x x^T (the data part of A)
        self._tick = 0
        self._ridge_i = self.ridge * np.eye(dim)

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LinearArms)
            and (self.dim, self.ridge, self.max_offers, self._tick, self.half_life_s)
            == (other.dim, other.ridge, other.max_offers, other._tick, other.half_life_s)
            and all(np.array_equal(getattr(self, f), getattr(other, f))
                    for f in ("_keys", "_updates", "_last", "_at", "_b", "_s"))
        )

    @property
    def keys(self) -> np.ndarray:
        return self._keys.copy()

    def _decay(self, at_ms: np.ndarray, now_ms: int | None) -> np.ndarray:
        """Weight left of data last updated at ``at_ms`` (1.0 without forgetting or a clock)."""
        if self.half_life_s is None or now_ms is None:
            return np.ones(len(at_ms))
        age_s = np.where(at_ms == _NEVER, 0, np.maximum(now_ms - np.maximum(at_ms, 0), 0)) / 1000.0
        return 0.5 ** (age_s / self.half_life_s)

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
        self._at = np.insert(self._at, pos, _NEVER)
        self._b = np.insert(self._b, pos, np.zeros(d), axis=0)
        self._s = np.insert(self._s, pos, np.zeros((d, d)), axis=0)
        return pos

    def _drop(self, keep: np.ndarray) -> None:
        self._keys, self._updates = self._keys[keep], self._updates[keep]
        self._last, self._at = self._last[keep], self._at[keep]
        self._b, self._s = self._b[keep], self._s[keep]

    def update(self, key: int, x: np.ndarray, reward: float, now_ms: int | None = None) -> None:
        """Learn one outcome of offer ``key`` (an ``offer_key``) shown with features ``x`` (at
        event time ``now_ms``: what forgetting counts from)."""
        x = np.asarray(x, np.float64)
        if x.shape != (self.dim,) or not np.isfinite(x).all():
            raise ValueError(f"features must be {self.dim} finite numbers")
        if not np.isfinite(reward):
            raise ValueError("reward must be finite")
        if not 0 <= key < 2**32:
            raise ValueError("key must be a 32-bit offer key")
        pos = self._slot(int(key))
        if now_ms is not None:
            if self._updates[pos]:
                f = float(self._decay(self._at[pos : pos + 1], now_ms)[0])
                if f != 1.0:
                    self._s[pos] *= f
                    self._b[pos] *= f
            self._at[pos] = max(int(now_ms), int(self._at[pos]))
        self._s[pos] += np.outer(x, x)
        self._b[pos] += reward * x
        self._updates[pos] += 1
        self._tick += 1
        self._last[pos] = self._tick

    def estimate(self, keys: np.ndarray, x: np.ndarray, now_ms: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: predicted reward ``x . theta`` and its variance factor ``x A^-1 x``
        (data decayed to ``now_ms``).

        Offers never updated get the prior: mean 0, variance ``|x|^2 / ridge``.
        """
        x = np.asarray(x, np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"features must have length {self.dim}, got shape {x.shape}")
        k, n = len(keys), len(self._keys)
        mean = np.zeros(k)
        var = np.full(k, float(x @ x) / self.ridge)
        if n:
            pos = np.minimum(np.searchsorted(self._keys, keys), n - 1)
            hit = self._keys[pos] == keys
            if hit.any():
                rows = pos[hit]
                f = self._decay(self._at[rows], now_ms)
                a = self._s[rows] * f[:, None, None]
                a += self._ridge_i
                z = np.linalg.solve(a, np.broadcast_to(x, (len(rows), self.dim))[..., None])[..., 0]
                mean[hit] = np.einsum("kd,kd->k", z, self._b[rows]) * f
                var[hit] = z @ x
        return mean, var

    def theta(self, key: int, now_ms: int | None = None) -> np.ndarray:
        """Ridge coefficients of one offer (zeros if never updated)."""
        pos = int(np.searchsorted(self._keys, key))
        if pos < len(self._keys) and self._keys[pos] == key:
            f = float(self._decay(self._at[pos : pos + 1], now_ms)[0])
            return np.linalg.solve(self._s[pos] * f + self._ridge_i, self._b[pos] * f)
        return np.zeros(self.dim)

    def pruned(self, live_keys: np.ndarray) -> None:
        """Forget offers that are no longer in the catalogue."""
        self._drop(np.isin(self._keys, live_keys))

    def encode(self) -> bytes:
        iu = np.triu_indices(self.dim)
        rec = np.empty(len(self._keys), _record_dtype(self.dim))
        rec["key"], rec["updates"], rec["last"] = self._keys, self._updates, self._last
        rec["at_ms"], rec["b"], rec["tri"] = self._at, self._b, self._s[:, iu[0], iu[1]]
        head = _HEADER.pack(_VERSION, self.dim, self.max_offers, len(rec), self._tick,
                            self.ridge, self.half_life_s or 0.0)
        return head + rec.tobytes()

    @classmethod
    def decode(cls, data: bytes) -> LinearArms:
        version = data[0] if data else None
        if version == 1:  # kept A^-1, no forgetting
            _, dim, max_offers, n, tick, ridge = read_header(
                data, _HEADER_V1, 1, LinearArmsCodecError, "contextual state")
            half_life, size = 0.0, _HEADER_V1.size
        else:
            _, dim, max_offers, n, tick, ridge, half_life = read_header(
                data, _HEADER, _VERSION, LinearArmsCodecError, "contextual state")
            size = _HEADER.size
            version = _VERSION
        try:
            state = cls(dim, ridge, max_offers, half_life or None)
        except ValueError as exc:
            raise LinearArmsCodecError(f"bad contextual state header: {exc}") from None
        dtype = _record_dtype(dim, version)
        body = memoryview(data)[size:]
        if n > max_offers or len(body) != n * dtype.itemsize:
            raise LinearArmsCodecError("contextual state length does not match its offer count")
        rec = np.frombuffer(body, dtype)
        if np.any(np.diff(rec["key"].astype(np.int64)) <= 0):
            raise LinearArmsCodecError("contextual state offer keys are not sorted and unique")
        if not (np.isfinite(rec["b"]).all() and np.isfinite(rec["tri"]).all()):
            raise LinearArmsCodecError("contextual state holds non-finite numbers")
        iu = np.triu_indices(dim)
        tri = np.zeros((n, dim, dim))
        tri[:, iu[0], iu[1]] = rec["tri"]
        tri[:, iu[1], iu[0]] = rec["tri"]
        if version == 1:
            try:
                tri = np.linalg.inv(tri) - state._ridge_i
            except np.linalg.LinAlgError:
                raise LinearArmsCodecError("contextual state (v1) is not invertible") from None
            at = np.full(n, _NEVER)
        else:
            at = rec["at_ms"].copy()
        state._keys, state._updates = rec["key"].copy(), rec["updates"].copy()
        state._last, state._at, state._b, state._s = rec["last"].copy(), at, rec["b"].copy(), tri
        state._tick = tick
        return state

    def copy(self) -> LinearArms:
        return LinearArms.decode(self.encode())
