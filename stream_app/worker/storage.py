"""The worker's RocksDB stores under one memory budget, whatever the number of customers.

Faust opens one RocksDB instance per table and partition (5 tables x 4 partitions = 20 by
default), each with its own options: a 2 GiB block cache and up to 3 x 64 MiB memtables. With
that, the worker's memory grows with the data written until those limits, i.e. with the number of
customers (measured: 257 MB of RSS at 10k customers, 521 MB at 100k). Here every store of the
process shares ONE block cache and ONE write-buffer manager whose memtables are charged to that
cache, and index and filter blocks live in the cache too: RocksDB's memory is capped by
``memory_mb`` in all (the technique of Kafka Streams' bounded-memory RocksDB config). Reads that
miss the cache are served by the operating system's page cache, which is not the worker's memory.

The store also restores a newly assigned partition that is far behind its changelog in bulk
before Faust's per-record recovery (``worker/restore.py``).

Selected by the store URL ``rocksdb-bounded://`` (registered below as a Faust store); the budget
is set once per process with :func:`configure` before the tables open.

>>> b = Budget(64)
>>> b.cache_bytes, b.memtable_bytes, b.write_buffer_bytes
(67108864, 33554432, 4194304)
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

import faust.stores
from faust.stores import rocksdb as faust_rocksdb

__all__ = ["Budget", "BoundedStore", "STORE_URL", "budget", "configure", "limit_malloc_arenas",
           "trim_malloc"]

STORE_URL = "rocksdb-bounded://"
DEFAULT_MEMORY_MB = 32


@dataclass
class Budget:
    """The shared block cache and write-buffer manager of one process (created on first use)."""

    memory_mb: int = DEFAULT_MEMORY_MB
    bulk_restore_min_records: int = 5_000  # restore gaps this long in bulk (0: never)
    # changelogs written in transactions: every gap is read with librdkafka (Faust's recovery
    # waits for an offset a trailing commit marker holds, and never gets it)
    catch_up: bool = False
    _cache: Any = field(default=None, repr=False)
    _manager: Any = field(default=None, repr=False)

    @property
    def cache_bytes(self) -> int:
        return self.memory_mb << 20

    @property
    def memtable_bytes(self) -> int:  # at most half of the budget in memtables
        return self.cache_bytes // 2

    @property
    def write_buffer_bytes(self) -> int:  # one memtable of one store: small, flushed often
        return max(1 << 20, min(8 << 20, self.memtable_bytes // 8))

    def shared(self) -> tuple[Any, Any]:
        if self._cache is None:
            from rocksdict import Cache, WriteBufferManager

            self._cache = Cache(self.cache_bytes)
            self._manager = WriteBufferManager.new_write_buffer_manager_with_cache(
                self.memtable_bytes, False, self._cache)
        return self._cache, self._manager

    def usage(self) -> dict[str, int]:
        """Bytes in the shared cache (memtables included) and in memtables alone."""
        if self._cache is None:
            return {"cache_bytes": 0, "memtable_bytes": 0}
        return {"cache_bytes": self._cache.get_usage(), "memtable_bytes": self._manager.get_usage()}


_budget = Budget()


def configure(memory_mb: int, bulk_restore_min_records: int = 5_000,
              catch_up: bool = False) -> Budget:
    """Set this process's budget; call before the first store opens (``build_app`` does)."""
    global _budget
    if memory_mb < 8:
        raise ValueError("the RocksDB memory budget must be at least 8 MB")
    if _budget._cache is not None and _budget.memory_mb != memory_mb:
        raise RuntimeError("the RocksDB memory budget is already in use with another size")
    if _budget._cache is None:
        _budget = Budget(memory_mb)
    _budget.bulk_restore_min_records = bulk_restore_min_records
    _budget.catch_up = catch_up
    return _budget


def budget() -> Budget:
    return _budget


@functools.cache
def _libc() -> Any:
    """The C library, looked up once (``find_library`` runs ``ldconfig``: ~2.5 ms a call, and the
    periodic trim calls this from the event loop)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim_malloc() -> bool:
    """Give the memory glibc's malloc holds free back to the system (after a bulk restore, whose
    buffers are freed but would otherwise stay in the process's RSS); True if done."""
    trim = getattr(_libc(), "malloc_trim", None)
    return bool(trim is not None and trim(0) in (0, 1))


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (call before threads start; True if set).

    glibc gives threads that allocate concurrently arenas of their own, up to 8 per core; RocksDB's
    flush and compaction threads and librdkafka's threads then keep freed memory spread over
    many arenas, and the process's RSS grows beyond what RocksDB and Python actually hold (the
    usual remedy for RocksDB on glibc: ``MALLOC_ARENA_MAX=2``). No effect on other C libraries."""
    if arenas <= 0:
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    M_ARENA_MAX = -8  # malloc.h
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1)


class _BoundedOptions(faust_rocksdb.RocksDBOptions):
    def open(self, path: Any, *, read_only: bool = False) -> Any:
        """Open the store with these options for its column family as well.

        Without ``column_families``, rocksdict opens an *existing* database with the column
        family options it saved in the database's OPTIONS file, and a block cache cannot be
        saved there: every store of a restarted worker then got a private 8 MB cache of
        RocksDB's default instead of the shared one (20 stores: up to 160 MB outside the
        budget, filled only when the data outgrows the cache, i.e. at 1 M customers, not 10k)."""
        if not self.use_rocksdict:  # pragma: no cover - python-rocksdb is not a dependency
            return super().open(path, read_only=read_only)
        from rocksdict import AccessType, Rdict, ReadOptions

        opts = self.as_options()
        access = AccessType.read_write() if self.ttl is None else AccessType.with_ttl(self.ttl)
        db = Rdict(str(path), options=opts, column_families={"default": opts}, access_type=access)
        db.set_read_options(ReadOptions())
        return db

    def as_options(self) -> Any:
        if not self.use_rocksdict:  # pragma: no cover - python-rocksdb is not a dependency
            return super().as_options()
        from rocksdict import BlockBasedIndexType, BlockBasedOptions, Options

        cache, manager = _budget.shared()
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        if self.max_open_files is not None:
            opts.set_max_open_files(self.max_open_files)
        opts.set_write_buffer_size(_budget.write_buffer_bytes)
        opts.set_max_write_buffer_number(2)
        opts.set_target_file_size_base(self.target_file_size_base)
        opts.set_write_buffer_manager(manager)
        table = BlockBasedOptions()
        table.set_bloom_filter(10, True)
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(BlockBasedIndexType.binary_search())
        opts.set_block_based_table_factory(table)
        return opts


class BoundedStore(faust_rocksdb.Store):
    """Faust's RocksDB store with the process-wide memory budget, and a bulk restore of newly
    assigned partitions that are far behind their changelog (``worker/restore.py``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = _BoundedOptions(**self.options, use_rocksdict=self.use_rocksdict)

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any,
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        standby = self.app.assignor.assigned_standbys()
        topics = self.table.changelog_topic.topics
        # transactional changelogs: every active partition, kept ones too (one watermark query
        # when it is up to date): one whose store lags behind a trailing commit marker would
        # hold Faust's recovery for good
        candidates = assigned if _budget.catch_up else newly_assigned
        tps = sorted(tp for tp in candidates if tp.topic in topics and tp not in standby)
        if tps and (_budget.bulk_restore_min_records > 0 or _budget.catch_up):
            # in a thread: the event loop keeps the consumer's heartbeats going meanwhile; Faust's
            # own recovery (which reads the persisted offsets) starts after this returns
            await asyncio.get_running_loop().run_in_executor(None, self._restore, tps)

    def _restore(self, tps: list[Any]) -> None:
        from stream_app.worker.restore import restore_consumer, restore_partition

        bootstrap = ",".join(f"{u.host}:{u.port}" for u in self.app.conf.broker)
        consumer = restore_consumer(bootstrap)  # one per table: partitions one after the other
        try:
            restored = [restore_partition(self._db_for_partition(tp.partition), bootstrap,
                                          tp.topic, tp.partition, self.persisted_offset(tp),
                                          min_records=1 if _budget.catch_up
                                          else _budget.bulk_restore_min_records,
                                          consumer=consumer)
                        for tp in tps]
        finally:
            consumer.close()
        if any(restored):
            trim_malloc()


faust.stores.STORES.aliases.setdefault("rocksdb-bounded", f"{__name__}:BoundedStore")
