"""Where a partition keeps its state: a small protocol over named tables of bytes.

The partition engine (``partition/session.py``) reads and writes its tables only through this
protocol, so the same class runs on the worker's RocksDB tables (``worker/tables.py``: writes
held per batch, one changelog record per key), on plain dicts in the tests, the core benchmark
and the learning benchmark. Keys and values are bytes: state is paid for in its codecs
everywhere, as in the worker.

>>> store = DictStore()
>>> store.set_many("customers", [(b"c1", b"x"), (b"c2", b"y")])
>>> store.get_many("customers", [b"c2", b"c3"])
[b'y', None]
>>> store.delete("customers", b"c1")
>>> sorted(store.items("customers"))
[(b'c2', b'y')]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

__all__ = ["DictStore", "PartitionStore"]


class PartitionStore(Protocol):
    """One partition's tables: ``get`` / ``get_many`` / ``set`` / ``set_many`` / ``delete`` /
    ``items``, each naming its table. A read sees every write made before it."""

    def get(self, table: str, key: bytes) -> bytes | None: ...

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def set(self, table: str, key: bytes, value: bytes) -> None: ...

    def set_many(self, table: str, items: Iterable[tuple[bytes, bytes]]) -> None: ...

    def delete(self, table: str, key: bytes) -> None: ...

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]: ...


class DictStore:
    """A partition's tables as dicts (tests, benchmarks): ``tables`` maps a name to its rows;
    ``writes`` counts the keys written per table (what the worker's changelogs would carry)."""

    __slots__ = ("tables", "writes")

    def __init__(self) -> None:
        self.tables: dict[str, dict[bytes, bytes]] = {}
        self.writes: dict[str, int] = {}

    def _rows(self, table: str) -> dict[bytes, bytes]:
        rows = self.tables.get(table)
        if rows is None:
            rows = self.tables[table] = {}
        return rows

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._rows(table).get(key)

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        get = self._rows(table).get
        return [get(key) for key in keys]

    def set(self, table: str, key: bytes, value: bytes) -> None:
        self._rows(table)[key] = value
        self.writes[table] = self.writes.get(table, 0) + 1

    def set_many(self, table: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        rows = self._rows(table)
        written = self.writes.get(table, 0)
        for key, value in items:
            rows[key] = value
            written += 1
        self.writes[table] = written

    def delete(self, table: str, key: bytes) -> None:
        self._rows(table).pop(key, None)
        self.writes[table] = self.writes.get(table, 0) + 1

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._rows(table).items()))

    def size(self, table: str) -> int:
        """Bytes of keys and values in ``table`` (the benchmarks report state per customer)."""
        return sum(len(k) + len(v) for k, v in self._rows(table).items())
