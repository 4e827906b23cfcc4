"""The worker's table state, read and written per partition, with writes grouped per batch.

A Faust table write (``table[key] = value``) puts the key into the current event's RocksDB store
and sends one changelog record through Faust's producer, both in Python, for every write; the
partition is taken from the *current event*, so a write for another partition (a timer firing
for a decision, a batch of events of several partitions) cannot even be expressed. Here:

- reads and writes name their partition (the partition of the event whose key it is);
- writes are held in memory until :meth:`Tables.flush`: reads see them, and a key written many
  times in a batch (a partition's population arms are written by every settled decision) is
  written once: one RocksDB write batch per store, one changelog record per key, produced with
  the worker's librdkafka producer (``worker/output.py``);
- the stores' persisted changelog offsets (where Faust's recovery resumes) are advanced to the
  last *acknowledged* changelog record of each partition, in the next write batch, or at once
  by :meth:`Tables.persist_acked` (the worker calls it after waiting for the acknowledgements,
  before a commit, a hand-over and a stop).

The stores, their files, the changelog topics and their format (raw key, raw value, tombstone
for a delete) are Faust's own, so Faust's recovery, standby replicas and the bulk restore
(``worker/restore.py``) work on them unchanged. The worker flushes once per event-loop tick and
before every offset commit, so an input offset is never committed before the state it produced.

>>> class Batch(dict):
...     put = dict.__setitem__
...     def delete(self, key): self[key] = None
>>> class Store(dict):
...     def write(self, batch): self.update(batch)
>>> class Out:
...     sent = []
...     def send(self, topic, key, value, partition=None): self.sent.append((topic, key, value, partition))
...     def take_acked(self): return {}
>>> stores = {0: Store()}
>>> t = Tables({"arms": ("arms-changelog", stores.__getitem__)}, Out(), batch=Batch)
>>> t.set("arms", 0, b"k", b"v1"); t.set("arms", 0, b"k", b"v2")
>>> t.get("arms", 0, b"k"), stores[0].get(b"k")
(b'v2', None)
>>> t.flush(), stores[0][b"k"], Out.sent
(1, b'v2', [('arms-changelog', b'k', b'v2', 0)])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from stream_app.worker.restore import OFFSET_KEY

__all__ = ["PartitionTables", "Tables", "faust_tables"]


def _rocksdict_batch() -> Any:
    from rocksdict import WriteBatch

    return WriteBatch(raw_mode=True)


class Tables:
    """The worker's tables: ``tables`` maps a table name to (its changelog topic, a function
    giving the partition's RocksDB store)."""

    def __init__(self, tables: Mapping[str, tuple[str, Callable[[int], Any]]], output: Any,
                 batch: Callable[[], Any] = _rocksdict_batch, staged: bool = False) -> None:
        self._changelog = {name: topic for name, (topic, _) in tables.items()}
        self._store_of = {name: store for name, (_, store) in tables.items()}
        self._table_of_topic = {topic: name for name, topic in self._changelog.items()}
        self._output = output
        self._batch = batch
        self._dirty: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
        # staged (exactly once): rows whose changelog records are in a transaction that has
        # not committed yet, newest layer first; written to the stores once it commits, so a
        # store never holds what its changelog may not
        self.staged = staged
        self._layers: list[dict[tuple[str, int], dict[bytes, bytes | None]]] = \
            [{}] if staged else []

    def _held(self, table: str, partition: int) -> list[dict[bytes, bytes | None]]:
        """Every held row set of the partition's table, newest first."""
        out = []
        rows = self._dirty.get((table, partition))
        if rows:
            out.append(rows)
        for layer in self._layers:
            rows = layer.get((table, partition))
            if rows:
                out.append(rows)
        return out

    def get(self, table: str, partition: int, key: bytes) -> bytes | None:
        rows = self._dirty.get((table, partition))
        if rows is not None and key in rows:
            return rows[key]
        for layer in self._layers:
            rows = layer.get((table, partition))
            if rows is not None and key in rows:
                return rows[key]
        return self._store_of[table](partition).get(key)

    def get_many(self, table: str, partition: int, keys: Sequence[bytes]
                 ) -> list[bytes | None]:
        """The values of ``keys`` (held writes first, the rest in one multi-get)."""
        held = self._held(table, partition)
        if not held:
            return self._store_of[table](partition).get(list(keys))
        out: list[bytes | None] = [None] * len(keys)
        missing, where = [], []
        for i, key in enumerate(keys):
            for rows in held:
                if key in rows:
                    out[i] = rows[key]
                    break
            else:
                missing.append(key)
                where.append(i)
        if missing:
            for i, value in zip(where, self._store_of[table](partition).get(missing)):
                out[i] = value
        return out

    def set(self, table: str, partition: int, key: bytes, value: bytes) -> None:
        rows = self._dirty.get((table, partition))
        if rows is None:
            rows = self._dirty[table, partition] = {}
        rows[key] = value

    def delete(self, table: str, partition: int, key: bytes) -> None:
        self.set(table, partition, key, None)  # type: ignore[arg-type]

    def items(self, table: str, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every row of the table's partition (the store's, then the held writes)."""
        rows: dict[bytes, bytes | None] = {}
        for held in reversed(self._held(table, partition)):  # oldest first, newest wins
            rows.update(held)
        for key, value in self._store_of[table](partition).items():
            if key == OFFSET_KEY or key in rows:
                continue
            yield key, value
        for key, value in rows.items():
            if value is not None:
                yield key, value

    def partition(self, partition: int) -> PartitionTables:
        """The partition's tables, as the partition engine's store."""
        return PartitionTables(self, partition)

    def flush(self) -> int:
        """Write the held writes to their changelogs and to the stores (staged: to the open
        transaction's layer, for :meth:`write_committed`); the number of keys."""
        dirty, self._dirty = self._dirty, {}
        send = self._output.send
        written = 0
        if self.staged:
            layer = self._layers[0]
            for (table, partition), rows in dirty.items():
                topic = self._changelog[table]
                for key, value in rows.items():
                    send(topic, key, value, partition)
                staged = layer.get((table, partition))
                if staged is None:
                    layer[table, partition] = rows
                else:
                    staged.update(rows)
                written += len(rows)
            return written
        batches: dict[tuple[str, int], Any] = {}
        for (table, partition), rows in dirty.items():
            batch = batches[table, partition] = self._batch()
            topic = self._changelog[table]
            for key, value in rows.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
                send(topic, key, value, partition)
            written += len(rows)
        self._write(batches)
        return written

    def cut(self) -> dict[tuple[str, int], dict[bytes, bytes | None]]:
        """Staged: flush, and close the open transaction's layer (reads still see it) and open
        the next; give the closed one to :meth:`write_committed` once its transaction commits."""
        self.flush()
        layer = self._layers[0]
        self._layers.insert(0, {})
        return layer

    def write_committed(self, layer: dict[tuple[str, int], dict[bytes, bytes | None]]) -> None:
        """Write a committed transaction's layer to the stores, with the stores' changelog
        offsets moved to what was acknowledged."""
        batches: dict[tuple[str, int], Any] = {}
        for (table, partition), rows in layer.items():
            batch = batches[table, partition] = self._batch()
            for key, value in rows.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
        # the commit marker follows a transaction's last record on each partition it wrote (the
        # worker is the only writer of its partitions): recovery resumes after it
        self._write(batches, past=1)
        self._layers = [held for held in self._layers if held is not layer]

    def persist_acked(self) -> None:
        """Move the stores' changelog offsets to what was acknowledged since the last flush,
        leaving held writes held. After a flush and the output's, nothing this worker wrote is
        left for Faust's recovery to read back: a worker keeping a partition across a rebalance
        has nothing to recover (its own hand-over checkpoint included), and a restart resumes
        reading the changelog after its own last write."""
        self._write({})

    def _write(self, batches: dict[tuple[str, int], Any], past: int = 0) -> None:
        for (topic, partition), offset in self._output.take_acked().items():
            table = self._table_of_topic.get(topic)
            if table is not None:
                batch = batches.get((table, partition))
                if batch is None:
                    batch = batches[table, partition] = self._batch()
                batch.put(OFFSET_KEY, str(offset + past).encode())
        for (table, partition), batch in batches.items():
            self._store_of[table](partition).write(batch)


class PartitionTables:
    """One partition of the tables, as the partition engine's store (``PartitionStore``)."""

    __slots__ = ("_tables", "_partition")

    def __init__(self, tables: Tables, partition: int) -> None:
        self._tables, self._partition = tables, partition

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._tables.get(table, self._partition, key)

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._tables.get_many(table, self._partition, keys)

    def set(self, table: str, key: bytes, value: bytes) -> None:
        self._tables.set(table, self._partition, key, value)

    def set_many(self, table: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            self._tables.set(table, self._partition, key, value)

    def delete(self, table: str, key: bytes) -> None:
        self._tables.delete(table, self._partition, key)

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        return self._tables.items(table, self._partition)


def faust_tables(tables: Mapping[str, Any]) -> dict[str, tuple[str, Callable[[int], Any]]]:
    """(changelog topic, partition -> RocksDB store) of each Faust table, by name."""
    return {name: (t.changelog_topic.get_topic_name(), t.data._db_for_partition)
            for name, t in tables.items()}
