"""A fleet snapshot: the learner's state at one version, as every worker loads it.

A snapshot holds the population learners (``PopulationState``: River models, pooled and
contextual arms, experiment statistics, shadow estimators), its ``version`` (1, 2, ... per
learner state: ``model_version`` on a decision names it), the event time of its last lesson
and, per source (``"p3@<epoch>"``), the number of the last learning record it has applied, so
that a worker can tell which of its own lessons the snapshot holds already.

On the ``learner-snapshots`` topic (compacted, one partition) a snapshot is zstd-compressed
and cut into chunks of at most ``CHUNK_BYTES``, each a JSON message keyed ``snapshot/<i>``
(``schemas/learner-snapshots.v1.json``: version, chunk index, chunk count, the chunk in
base64); ``Assembler`` puts the newest complete version back together, whatever order
compaction left the chunks in.
``offset`` is the next offset of the ``learning`` topic after the records it holds: a learner
that takes over reads from there (records it holds already are skipped by their numbers).

>>> snap = FleetSnapshot(3, {"p0@1": 9}, 1_000, PopulationState())
>>> asm = Assembler()
>>> for key, value in snap.to_messages(max_bytes=2_000):
...     done = asm.add(key, value)
>>> done.version, done.applied
(3, {'p0@1': 9})
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import cramjam
import orjson

from stream_app.core.population import PopulationState
from stream_app.models import checkpoint

__all__ = ["Assembler", "CHUNK_BYTES", "FleetSnapshot", "SnapshotError"]

CHUNK_BYTES = 384 * 1024  # 512 kB in base64: one chunk per message, under the 1 MB limit
_KIND = "fleet-snapshot"
KEY_PREFIX = b"snapshot/"


class SnapshotError(ValueError):
    """A snapshot that cannot be read."""


@dataclass(slots=True)
class FleetSnapshot:
    version: int
    applied: dict[str, int]  # "source@epoch" -> seq of the last learning record applied
    ts: int | None  # event time of the last lesson applied
    population: PopulationState = field(default_factory=PopulationState)
    offset: int | None = None  # next offset of the ``learning`` topic after what it holds

    def model_version(self) -> str:
        return f"fleet:{self.version}"

    def encode(self) -> bytes:
        blob = checkpoint.dumps({"version": self.version, "applied": dict(self.applied),
                                 "ts": self.ts, "population": self.population,
                                 "offset": self.offset}, kind=_KIND)
        return bytes(cramjam.zstd.compress(blob, level=1))

    @classmethod
    def decode(cls, data: bytes) -> FleetSnapshot:
        try:
            state: Any = checkpoint.loads(bytes(cramjam.zstd.decompress(data)), kind=_KIND)
        except (cramjam.DecompressionError, ValueError) as exc:
            raise SnapshotError(f"fleet snapshot is unreadable: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("population"),
                                                         PopulationState):
            raise SnapshotError("fleet snapshot does not hold a population state")
        return cls(int(state["version"]), dict(state["applied"]), state["ts"],
                   state["population"], state.get("offset"))

    def to_messages(self, max_bytes: int = CHUNK_BYTES, blob: bytes | None = None
                    ) -> list[tuple[bytes, bytes]]:
        """(key, value) messages of the ``learner-snapshots`` topic (``blob``: the snapshot
        encoded already)."""
        blob = self.encode() if blob is None else blob
        chunks = [blob[i:i + max_bytes] for i in range(0, len(blob), max_bytes)] or [b""]
        return [(KEY_PREFIX + str(i).encode(), orjson.dumps({
            "schema_version": 1, "kind": "snapshot-chunk", "version": self.version, "index": i,
            "count": len(chunks), "data": base64.b64encode(c).decode("ascii")}))
            for i, c in enumerate(chunks)]


class Assembler:
    """Chunks read from ``learner-snapshots`` -> the newest complete snapshot."""

    def __init__(self) -> None:
        self._chunks: dict[int, dict[int, bytes]] = {}  # version -> index -> chunk
        self._counts: dict[int, int] = {}
        self.latest: FleetSnapshot | None = None
        self.latest_blob: bytes | None = None

    def add(self, key: bytes | None, value: bytes | None) -> FleetSnapshot | None:
        """Take one message; the snapshot it completed (newer than ``latest``), else ``None``.
        A message that is not a chunk raises ``SnapshotError``."""
        try:
            chunk = orjson.loads(value) if value is not None else None
            version, index, count = int(chunk["version"]), int(chunk["index"]), \
                int(chunk["count"])
            data = base64.b64decode(chunk["data"], validate=True)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, binascii.Error):
            raise SnapshotError("not a snapshot chunk") from None
        if count < 1 or not 0 <= index < count:
            raise SnapshotError("snapshot chunk header is inconsistent")
        if self.latest is not None and version <= self.latest.version:
            return None
        self._chunks.setdefault(version, {})[index] = data
        self._counts[version] = count
        parts = self._chunks[version]
        if len(parts) < count:
            return None
        blob = b"".join(parts[i] for i in range(count))
        snapshot = FleetSnapshot.decode(blob)
        self.latest, self.latest_blob = snapshot, blob
        for old in [v for v in self._chunks if v <= version]:
            self._chunks.pop(old, None)
            self._counts.pop(old, None)
        return snapshot
