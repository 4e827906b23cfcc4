"""What the worker's memory is made of: resident set, malloc, RocksDB and the Python heap.

The worker logs this report every ``STREAM_APP_MEMORY_REPORT_S`` seconds (0: never, the
default), so an operator can tell a growing RSS apart: RocksDB's shared block cache and
memtables (capped by the budget of ``worker/storage.py``), RocksDB's table readers (index and
filter blocks of the SST files, which live in that cache here), memory malloc holds free (freed by
C code or Python but not handed back to the system), and what Python objects hold.
``STREAM_APP_TRACEMALLOC_FRAMES`` > 0 also traces Python allocations (with that many frames per
traceback; it costs CPU on every allocation, so it is a diagnosis setting) and the report then
names the source lines whose allocations grew most since the previous report.

>>> r = process_memory()
>>> r["rss_bytes"] > 0 and r["malloc_in_use_bytes"] >= 0
True
"""

from __future__ import annotations

import ctypes
import gc
import tracemalloc
from collections import Counter
from collections.abc import Iterable
from typing import Any

from stream_app.worker import storage

__all__ = ["MemoryReport", "process_memory", "rocksdb_memory", "store_databases"]


class _MallInfo2(ctypes.Structure):  # glibc >= 2.33, <malloc.h>
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _status_kib(*fields: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` given in kB, in bytes (0 where missing)."""
    found = dict.fromkeys(fields, 0)
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition("\t")
            if name in found:
                found[name] = int(rest.split()[0]) * 1024
    return found


def process_memory() -> dict[str, int]:
    """RSS (its high-water mark; anonymous memory vs pages of mapped files such as the shared
    libraries' code) and glibc malloc's view of the heap (all arenas): bytes
    allocated and in use, free but held (the part ``malloc_trim`` may hand back), and mmapped
    chunks. The malloc figures are 0 where glibc's ``mallinfo2`` is missing."""
    status = _status_kib("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")
    report = {"rss_bytes": status["VmRSS:"], "rss_peak_bytes": status["VmHWM:"],
              "rss_anonymous_bytes": status["RssAnon:"], "rss_file_bytes": status["RssFile:"],
              "malloc_in_use_bytes": 0, "malloc_free_held_bytes": 0, "malloc_mmapped_bytes": 0}
    libc = storage._libc()
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is not None:
        mallinfo2.restype = _MallInfo2
        info = mallinfo2()
        report.update(malloc_in_use_bytes=info.uordblks + info.hblkhd,
                      malloc_free_held_bytes=info.fordblks, malloc_mmapped_bytes=info.hblkhd)
    return report


_ROCKSDB_PROPERTIES = {  # summed over the stores
    "rocksdb.estimate-table-readers-mem": "rocksdb_table_readers_bytes",
    "rocksdb.cur-size-all-mem-tables": "rocksdb_memtables_bytes",
    "rocksdb.num-live-versions": "rocksdb_live_versions",
    "rocksdb.estimate-num-keys": "rocksdb_keys",
}


def rocksdb_memory(dbs: Iterable[Any]) -> dict[str, int]:
    """RocksDB's memory over the given open databases (``rocksdict.Rdict``): the shared budget's
    cache usage (memtables charged to it included) and pinned part, plus per-store properties."""
    report = {key: 0 for key in _ROCKSDB_PROPERTIES.values()}
    report["rocksdb_stores"] = 0
    for db in dbs:
        report["rocksdb_stores"] += 1
        for prop, key in _ROCKSDB_PROPERTIES.items():
            try:
                report[key] += int(db.property_int_value(prop) or 0)
            except Exception:  # noqa: BLE001 - a store closing under us: skip it
                continue
    budget = storage.budget()
    usage = budget.usage()
    report["rocksdb_cache_bytes"] = usage["cache_bytes"]
    report["rocksdb_cache_pinned_bytes"] = (budget._cache.get_pinned_usage()
                                            if budget._cache is not None else 0)
    report["rocksdb_budget_memtables_bytes"] = usage["memtable_bytes"]
    return report


class MemoryReport:
    """One report at a time: with the types of Python objects whose number grew most since the
    last report, and with tracing on, the source lines whose allocations grew most."""

    def __init__(self, tracemalloc_frames: int = 0, top: int = 8) -> None:
        self.top = top
        self._previous: tracemalloc.Snapshot | None = None
        self._types: Counter[str] | None = None
        if tracemalloc_frames > 0 and not tracemalloc.is_tracing():
            tracemalloc.start(tracemalloc_frames)

    def __call__(self, dbs: Iterable[Any] = ()) -> dict[str, Any]:
        report: dict[str, Any] = process_memory()
        report.update(rocksdb_memory(dbs))
        objects = gc.get_objects()
        report["python_objects"] = len(objects)
        types = Counter(type(o).__qualname__ for o in objects)
        del objects
        if self._types is not None:
            grown = (types - self._types).most_common(self.top)
            report["python_types_grown"] = [{"type": name, "objects": n} for name, n in grown]
        self._types = types
        if tracemalloc.is_tracing():
            report["python_traced_bytes"] = tracemalloc.get_traced_memory()[0]
            snapshot = tracemalloc.take_snapshot().filter_traces(
                (tracemalloc.Filter(False, tracemalloc.__file__),))
            if self._previous is not None:
                grown = [s for s in snapshot.compare_to(self._previous, "lineno") if s.size_diff > 0]
                report["python_grown"] = [
                    {"where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                     "bytes": s.size_diff, "blocks": s.count_diff, "total_bytes": s.size}
                    for s in grown[:self.top]]
            self._previous = snapshot
        return report


def store_databases(tables: Iterable[Any]) -> list[Any]:
    """The open RocksDB databases behind Faust tables (one per assigned partition)."""
    dbs: list[Any] = []
    for table in tables:
        dbs.extend(getattr(table.data, "_dbs", {}).values())
    return dbs
