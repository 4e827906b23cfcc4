"""Population-state checkpoints in a changelog-backed table, crash-safe.

A checkpoint is written as chunks under a *generation* (0 or 1, alternating), then a header
naming the generation, the chunk count and a CRC of the whole. A crash between the two leaves
the previous header pointing at the previous, complete generation. The table is partition-local
(Faust writes to the current event's partition), so each partition has its own checkpoint and a
rebalanced partition brings it along through the changelog.

>>> table = {}
>>> from stream_app.core.population import PopulationState
>>> store(table, PopulationState(), max_bytes=1_000)
>>> load(table).suite.version, len(table) > 2
('models:u0:r0', True)
>>> load({}) is None
True
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import Callable, MutableMapping

from stream_app.core.population import CHUNK_BYTES, PopulationState

__all__ = ["Schedule", "load", "store"]

HEADER_KEY = b"\x00checkpoint"
_HEADER = struct.Struct("<BBxxII")  # version, generation, pad, chunks, crc32
_VERSION = 1


def _chunk_key(generation: int, i: int) -> bytes:
    return b"\x00checkpoint:%d:%d" % (generation, i)


def load(table: MutableMapping[bytes, bytes]) -> PopulationState | None:
    """The partition's last complete checkpoint, ``None`` when there is none; raises
    ``CheckpointError`` (a ``ValueError``) when it exists but cannot be read."""
    head = table.get(HEADER_KEY)
    if head is None:
        return None
    version, generation, n, crc = _HEADER.unpack(head)
    if version != _VERSION:
        raise ValueError(f"unknown checkpoint header version {version}")
    chunks = [table.get(_chunk_key(generation, i)) or b"" for i in range(n)]
    if zlib.crc32(b"".join(chunks)) != crc:
        raise ValueError("checkpoint chunks do not match their header (CRC)")
    return PopulationState.from_chunks(chunks)


def store(table: MutableMapping[bytes, bytes], state: PopulationState,
          max_bytes: int = CHUNK_BYTES) -> None:
    """Write a new checkpoint: chunks of the other generation first, then the header."""
    head = table.get(HEADER_KEY)
    generation = 0 if head is None else 1 - _HEADER.unpack(head)[1]
    chunks = state.to_chunks(max_bytes)
    for i, chunk in enumerate(chunks):
        table[_chunk_key(generation, i)] = chunk
    table[HEADER_KEY] = _HEADER.pack(_VERSION, generation, len(chunks),
                                     zlib.crc32(b"".join(chunks)))


_SPREAD = 0.6180339887498949  # golden ratio: partitions 0, 1, 2... fall far apart in [0, 1)


class Schedule:
    """When each partition's population state is checkpointed: after ``every`` learning events,
    but not sooner than ``min_interval_s`` after the last checkpoint (or after the state was
    restored). A checkpoint pickles and compresses all of it, tens of ms of the event loop: in
    events alone its cost would grow with the event rate; in seconds alone a quiet partition
    would be rewritten for nothing.

    The partitions of a worker are assigned together and see the same event rate, so their
    checkpoints would fall due together: one stall as long as all of them (measured: 4 within
    5 s, 100-220 ms each). A partition restored by ``loaded`` therefore starts part of the way
    into its first interval and count (partition ``p``: the fraction ``p * 0.618... mod 1``),
    which keeps the partitions' checkpoints apart from then on; partition 0 starts at 0.

    >>> now = [0.0]
    >>> s = Schedule(every=2, min_interval_s=10.0, clock=lambda: now[0])
    >>> s.loaded(0); [s.count(0) for _ in range(3)]
    [False, False, False]
    >>> now[0] = 10.0; s.count(0), s.count(0)
    (True, False)
    >>> now[0] = 0.0; s.loaded(1); now[0] = 3.8; s.count(1)  # 6.18 s and 1 event ahead
    False
    >>> now[0] = 3.9; s.count(1)
    True
    """

    def __init__(self, every: int, min_interval_s: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every, self.min_interval_s, self._clock = every, min_interval_s, clock
        self._events: dict[int, int] = {}
        self._since: dict[int, float] = {}

    def loaded(self, partition: int) -> None:
        """The partition's state was restored (or started afresh) now: its first checkpoint is
        due early by its share of the spread."""
        ahead = (partition * _SPREAD) % 1.0
        self._events[partition] = int(ahead * self.every)
        self._since[partition] = self._clock() - ahead * self.min_interval_s

    def count(self, partition: int) -> bool:
        """One learning event; ``True`` when a checkpoint is due now (the count then restarts)."""
        n = self._events.get(partition, 0) + 1
        self._events[partition] = n
        if n < self.every:
            return False
        now = self._clock()
        if now - self._since.setdefault(partition, now) < self.min_interval_s:
            return False
        self._events[partition], self._since[partition] = 0, now
        return True

    def stored(self, partition: int) -> None:
        """The partition was checkpointed now, outside the schedule (hand-over, shutdown)."""
        self._events[partition], self._since[partition] = 0, self._clock()

    def forget(self, partition: int) -> None:
        self._events.pop(partition, None)
        self._since.pop(partition, None)
