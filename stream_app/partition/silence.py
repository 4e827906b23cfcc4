"""Each customer's silence timer: when a customer who stays silent becomes churn labels.

A customer with a profile has one pending silence for weeks (``ModelSuite.silence_due_ms``: the
churn horizon after their last interaction), so a partition holds one per customer it has ever
seen. Held in Python, that is ~200 B of heap per customer (``scripts/silence_memory.py``), and
the worker's memory would grow with the number of customers. The schedule is therefore an index
ordered by ``(due_ms, customer id)``, with two implementations of one protocol,
``SilenceSchedule``:

- ``RocksSilence``: on disk, one small RocksDB per partition (the worker): 1 MiB write buffers
  and a block cache, both charged to the worker's one RocksDB memory budget when it is given
  (``worker/storage.py``), so its memory does not grow with the customers; the index is kept in
  files (and the operating system's page cache, which is not the worker's memory);
- ``MemorySilence``: a heap in memory, for the in-process drivers (tests, benchmarks).

The index is derived data: it holds nothing the customers' profiles do not, so it has no
changelog, no transaction and no write-ahead log. A partition's session wipes it and rebuilds
it from the profiles whenever it starts on the partition (``PartitionSession.rebuild_clock``).
A customer's entry is found by its due time, computed from their profile: an interaction moves
it from the due of the profile before (``move``), an erasure removes it (``cancel``), and
``fire`` takes out, in ``(due_ms, customer id)`` order, every entry due by the partition's
event time. Should an entry ever be left behind (the suite's churn horizon changed under it),
it fires once and does nothing: ``Decider.silence`` checks the customer's due again.

>>> s = MemorySilence()
>>> s.move("c2", None, 5_000); s.move("c1", None, 5_000); s.move("c3", None, 9_000)
>>> s.move("c3", 9_000, 12_000)  # c3 interacted: their silence moves on
>>> s.fire(4_999), s.fire(10_000), s.cancel("c3", 12_000), s.fire(20_000)
([], [(5000, 'c1'), (5000, 'c2')], True, [])
"""

from __future__ import annotations

import heapq
import shutil
from pathlib import Path
from typing import Any, Protocol

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

__all__ = ["MemorySilence", "RocksSilence", "SilenceSchedule"]

_NEVER = 2**63  # the floor of an empty schedule: beyond any due time
_OFFSET = 2**63  # a due time is stored as due + 2**63, big-endian: bytes sort as the numbers
WRITE_BUFFER_BYTES = 1 << 20  # one memtable of a partition's index (at most two)
CACHE_BYTES = 1 << 20  # its block cache (index blocks included), when it has none shared


class SilenceSchedule(Protocol):
    """The silence timers of one partition, ordered by ``(due_ms, customer id)``."""

    def clear(self) -> None:
        """Forget every entry (a rebuild from the customers' profiles starts)."""

    def move(self, customer_id: str, previous_ms: int | None, due_ms: int | None) -> None:
        """The customer's silence, due at ``previous_ms``, is now due at ``due_ms`` (``None``:
        none before, none now)."""

    def add(self, entries: list[tuple[str, int]]) -> None:
        """Add ``(customer id, due_ms)`` entries of customers that have none yet, together (a
        rebuild's chunk)."""

    def cancel(self, customer_id: str, due_ms: int) -> bool:
        """Remove the customer's silence due at ``due_ms``; whether it was there."""

    def fire(self, watermark_ms: int) -> list[tuple[int, str]]:
        """Remove and return the entries due at or before ``watermark_ms``, as ``(due_ms,
        customer id)`` in that order."""

    def close(self) -> None:
        """Release what the schedule holds (its partition's session is done with it)."""


class MemorySilence:
    """The schedule in memory: a heap of ``(due_ms, customer id)`` and the set of live entries
    (moved and cancelled entries stay in the heap until popped, or until they outnumber the
    live ones)."""

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._live: set[tuple[int, str]] = set()

    def clear(self) -> None:
        self._heap, self._live = [], set()

    def move(self, customer_id: str, previous_ms: int | None, due_ms: int | None) -> None:
        if previous_ms == due_ms:
            return
        live = self._live
        if previous_ms is not None:
            live.discard((previous_ms, customer_id))
        if due_ms is not None:
            entry = (due_ms, customer_id)
            if entry not in live:
                live.add(entry)
                heapq.heappush(self._heap, entry)
                if len(self._heap) > 2 * len(live) + 64:
                    self._heap = sorted(live)

    def add(self, entries: list[tuple[str, int]]) -> None:
        for customer_id, due_ms in entries:
            self.move(customer_id, None, due_ms)

    def cancel(self, customer_id: str, due_ms: int) -> bool:
        entry = (due_ms, customer_id)
        if entry not in self._live:
            return False
        self._live.remove(entry)
        return True

    def fire(self, watermark_ms: int) -> list[tuple[int, str]]:
        heap, live = self._heap, self._live
        fired = []
        while heap and heap[0][0] <= watermark_ms:
            entry = heapq.heappop(heap)
            if entry in live:  # else moved or cancelled since it was pushed
                live.remove(entry)
                fired.append(entry)
        return fired

    def close(self) -> None:
        self.clear()


def _key(due_ms: int, customer_id: str) -> bytes:
    return (due_ms + _OFFSET).to_bytes(8, "big") + customer_id.encode()


class RocksSilence:
    """The schedule of one partition in its own RocksDB at ``path``, opened at its first use
    (wiping what an earlier life left there) and wiped at every ``clear``. Keys are the 8-byte
    due time then the customer id, values empty; writes skip the write-ahead log (the index is
    rebuilt at every start). ``_floor`` is at or below
    every due time in the index, so ``fire`` reads it only when something may be due. Once
    closed (its partition revoked), it keeps nothing and fires nothing: a batch of the revoked
    partition still under way loses no silence, the partition's next owner rebuilds them all."""

    __slots__ = ("_closed", "_db", "_floor", "_read", "_shared", "_write", "path")

    def __init__(self, path: str | Path, shared: tuple[Cache, Any] | None = None) -> None:
        """``shared``: a block cache and a write-buffer manager to charge (the worker's RocksDB
        budget); without it, a 1 MiB cache of its own."""
        self.path = Path(path)
        self._shared = shared
        self._db: Rdict | None = None
        self._closed = False
        self._floor = _NEVER
        self._read = ReadOptions()
        self._write = WriteOptions()
        self._write.disable_wal = True

    def _options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
        opts.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        if self._shared is None:
            table.set_block_cache(Cache(CACHE_BYTES))
        else:
            cache, manager = self._shared
            table.set_block_cache(cache)
            opts.set_write_buffer_manager(manager)
        table.set_cache_index_and_filter_blocks(True)
        opts.set_block_based_table_factory(table)
        # entries are deleted where they fired, at the low end of the index: files full of
        # deletions are compacted early, so a read from there does not step over them for long
        opts.add_compact_on_deletion_collector_factory(1_000, 500, 0.5)
        return opts

    def _open(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)  # what a previous life left: derived
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), options=self._options())
        self._db.set_write_options(self._write)
        self._floor = _NEVER

    def _database(self) -> Rdict | None:
        """The open database, opened now if it was not yet; ``None`` once closed."""
        if self._db is None and not self._closed:
            self._open()
        return self._db

    def clear(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if not self._closed:
            self._open()

    def move(self, customer_id: str, previous_ms: int | None, due_ms: int | None) -> None:
        if previous_ms == due_ms:
            return
        db = self._database()
        if db is None:
            return
        if previous_ms is not None:
            db.delete(_key(previous_ms, customer_id))
        if due_ms is not None:
            db.put(_key(due_ms, customer_id), b"")
            self._floor = min(self._floor, due_ms)

    def add(self, entries: list[tuple[str, int]]) -> None:
        db = self._database()
        if db is None or not entries:
            return
        batch = WriteBatch(raw_mode=True)
        for customer_id, due_ms in entries:
            batch.put(_key(due_ms, customer_id), b"")
        db.write(batch)
        self._floor = min(self._floor, min(due for _, due in entries))

    def cancel(self, customer_id: str, due_ms: int) -> bool:
        db = self._database()
        if db is None:
            return False
        key = _key(due_ms, customer_id)
        if db.get(key) is None:
            return False
        db.delete(key)
        return True

    def fire(self, watermark_ms: int) -> list[tuple[int, str]]:
        if watermark_ms < self._floor:  # also before the first entry, and once closed
            return []
        db = self._database()
        if db is None:
            return []
        fired: list[tuple[int, str]] = []
        it = db.iter(self._read)
        it.seek((self._floor + _OFFSET).to_bytes(8, "big"))
        floor = _NEVER
        while it.valid():
            key = it.key()
            due = int.from_bytes(key[:8], "big") - _OFFSET
            if due > watermark_ms:
                floor = due
                break
            fired.append((due, key[8:].decode()))
            it.next()
        del it
        self._floor = floor
        if fired:
            batch = WriteBatch(raw_mode=True)
            for due, customer_id in fired:
                batch.delete(_key(due, customer_id))
            db.write(batch)
        return fired

    def close(self) -> None:
        self._closed, self._floor = True, _NEVER
        if self._db is not None:
            self._db.close()
            self._db = None
            shutil.rmtree(self.path, ignore_errors=True)
