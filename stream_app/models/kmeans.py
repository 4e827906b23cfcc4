"""Streaming k-means with periodic re-clustering and stable segment ids.

Why a small numpy k-means rather than ``river.cluster.KMeans``: River's version starts from random
centres (not from data), moves them through Python dicts, and its state is only pickleable. Purely
sequential k-means also freezes whatever its first centres were: when early data is unbalanced
(the most active customers mature first) two true clusters share a centre for ever.

Here every vector learned is kept in a ring buffer of the last ``memory`` vectors. The first
``init_size`` vectors are clustered in batch (k-means++ seeds, Lloyd passes, best of ``n_init``
restarts); afterwards each vector moves its nearest centre by ``max(1 / n_j, min_rate)``
(MacQueen's running mean with a floor, so centres track a shifting population), and every
``recluster_every`` vectors the buffer is re-clustered in batch, warm-started from the current
centres, which competes with fresh restarts on inertia. New centres are matched to the old ones
(minimum total distance), so segment ids stay stable: they key segment-level arms.
Randomness comes from ``seed`` alone; the state has its own binary codec (no pickle), bounded by
``memory`` vectors.

>>> rng = np.random.default_rng(0)
>>> km = OnlineKMeans(k=2, dim=2, init_size=20, seed=0)
>>> for i in range(200):
...     _ = km.learn(rng.normal([0, 0] if i % 2 else [5, 5], 0.3))
>>> a, b = km.predict(np.array([5.0, 5.0])), km.predict(np.array([0.0, 0.0]))
>>> a != b, OnlineKMeans.decode(km.encode()).predict(np.array([5.0, 5.0])) == a
(True, True)
"""

from __future__ import annotations

import struct

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["OnlineKMeans", "SegmentCodecError"]

_HEADER = struct.Struct("<BHHBxIIIIIIIIqd")
_VERSION = 1


class SegmentCodecError(ValueError):
    """Stored segmenter state that cannot be decoded."""


class OnlineKMeans:
    """Streaming k-means; ``learn`` returns the segment of the vector it learned from."""

    def __init__(
        self,
        k: int,
        dim: int,
        init_size: int | None = None,
        memory: int = 500,
        recluster_every: int = 250,
        n_init: int = 5,
        min_rate: float = 0.002,
        seed: int = 0,
    ) -> None:
        if k < 1 or dim < 1:
            raise ValueError("k and dim must be >= 1")
        self.k, self.dim, self.seed = k, dim, seed
        self.init_size = max(init_size or 25 * k, k)
        self.memory = max(memory, self.init_size)
        self.recluster_every, self.n_init, self.min_rate = recluster_every, n_init, min_rate
        self._centers = np.zeros((k, dim))
        self._counts = np.zeros(k)
        self._ring = np.zeros((0, dim))
        self._pos = 0  # next slot to overwrite once the ring is full
        self._since = 0  # vectors learned since the last batch clustering
        self._batches = 0
        self._n = 0
        self._initialised = False

    @property
    def initialised(self) -> bool:
        return self._initialised

    @property
    def centers(self) -> np.ndarray:
        return self._centers.copy()

    def predict(self, x: np.ndarray) -> int:
        """Nearest segment, or -1 before the segmenter has seen ``init_size`` vectors."""
        if not self._initialised:
            return -1
        return int(np.argmin(((self._centers - x) ** 2).sum(axis=1)))

    def learn(self, x: np.ndarray) -> int:
        x = np.asarray(x, np.float64)
        if x.shape != (self.dim,) or not np.isfinite(x).all():
            raise ValueError(f"expected {self.dim} finite numbers")
        self._n += 1
        self._since += 1
        if len(self._ring) < self.memory:
            self._ring = np.vstack([self._ring, x])
        else:
            self._ring[self._pos] = x
            self._pos = (self._pos + 1) % self.memory
        if not self._initialised:
            if len(self._ring) >= self.init_size:
                self._batch()
            return self.predict(x)
        j = self.predict(x)
        self._counts[j] += 1
        self._centers[j] += max(1.0 / self._counts[j], self.min_rate) * (x - self._centers[j])
        if self._since >= self.recluster_every:
            self._batch()
        return j

    def _batch(self) -> None:
        data = self._ring
        rng = np.random.default_rng([self.seed, self._batches])
        starts = [_kmeans_plus_plus(data, self.k, rng) for _ in range(self.n_init)]
        if self._initialised:
            starts.insert(0, self._centers.copy())
        best: tuple[float, np.ndarray] | None = None
        for start in starts:
            centers = _lloyd(data, start)
            inertia = float(_sq_dist(data, centers).min(axis=1).sum())
            if best is None or inertia < best[0] - 1e-12:
                best = (inertia, centers)
        assert best is not None
        centers = best[1]
        if self._initialised:  # keep ids: new centre j goes where the old centre nearest to it was
            rows, cols = linear_sum_assignment(_sq_dist(self._centers, centers))
            centers = centers[cols[np.argsort(rows)]]
        self._centers = centers
        labels = _sq_dist(data, centers).argmin(axis=1)
        self._counts = np.bincount(labels, minlength=self.k).astype(np.float64)
        self._initialised, self._since = True, 0
        self._batches += 1

    def encode(self) -> bytes:
        head = _HEADER.pack(
            _VERSION, self.k, self.dim, self._initialised, self.seed, self.init_size, self.memory,
            self.recluster_every, self.n_init, len(self._ring), self._pos, self._since,
            self._n, self.min_rate,
        )  # fmt: skip
        tail = struct.pack("<I", self._batches)
        arrays = (self._centers, self._counts, self._ring)
        return head + tail + b"".join(a.astype("<f8").tobytes() for a in arrays)

    @classmethod
    def decode(cls, data: bytes) -> OnlineKMeans:
        if len(data) < _HEADER.size + 4 or data[0] != _VERSION:
            raise SegmentCodecError("not a segmenter state of a known version")
        (_, k, dim, init, seed, init_size, memory, every, n_init, n_ring, pos, since, n,
         min_rate) = _HEADER.unpack_from(data)  # fmt: skip
        (batches,) = struct.unpack_from("<I", data, _HEADER.size)
        at = _HEADER.size + 4
        if len(data) != at + 8 * (k * dim + k + n_ring * dim):
            raise SegmentCodecError("segmenter state length does not match its header")
        km = cls(k, dim, init_size, memory, every, n_init, min_rate, seed)
        values = np.frombuffer(data, "<f8", offset=at)
        km._centers = values[: k * dim].reshape(k, dim).copy()
        km._counts = values[k * dim : k * dim + k].copy()
        km._ring = values[k * dim + k :].reshape(n_ring, dim).copy()
        km._pos, km._since, km._n, km._batches = pos, since, n, batches
        km._initialised = bool(init)
        return km


def _sq_dist(data: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((data[:, None, :] - centers[None]) ** 2).sum(axis=2)


def _kmeans_plus_plus(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Seeds: each next centre is drawn with probability ~ squared distance to the nearest one."""
    centers = [data[rng.integers(len(data))]]
    for _ in range(1, k):
        d2 = _sq_dist(data, np.array(centers)).min(axis=1)
        total = d2.sum()
        idx = rng.choice(len(data), p=d2 / total) if total > 0 else rng.integers(len(data))
        centers.append(data[idx])
    return np.array(centers, np.float64)


def _lloyd(data: np.ndarray, centers: np.ndarray, passes: int = 20) -> np.ndarray:
    centers = centers.copy()
    for _ in range(passes):
        labels = _sq_dist(data, centers).argmin(axis=1)
        moved = centers.copy()
        for j in range(len(centers)):
            if (labels == j).any():
                moved[j] = data[labels == j].mean(axis=0)
        if np.array_equal(moved, centers):
            break
        centers = moved
    return centers
