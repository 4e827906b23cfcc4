"""Everything the worker changes in faust-streaming, in one place.

Each change is a function the worker calls while it builds its app, and ``PATCHED`` names every
Faust (and aiokafka) attribute they replace or rely on, so a test fails on the day an upgrade
renames one (``tests/unit/test_faust_patches.py``):

- :func:`install_fetch_wait`: the worker consumer's ``fetch_max_wait_ms``. faust-streaming 0.15
  builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, hard-coded: an empty fetch may
  sit at the broker for 1.5 s, and aiokafka keeps one fetch in flight per broker and sends none
  while records it fetched are still unconsumed, so at a steady input rate records queued behind
  a waiting fetch (measured with the engine taken out, ``stream-app bench --worker
  faust-relay``: at 1,000 requests/s records were read 1.2-1.6 s after they were produced; with
  20 ms it kept up at p50 7.1 / p99 56 ms). A shorter wait costs the broker ``1000 / wait_ms``
  empty fetches per second on an idle input.
- :func:`install_read_committed`: the worker consumer's isolation level (``read_committed``
  when the worker commits with transactions: ``worker/transactions.py``).
- :func:`commit_by`: Faust's offset commits become the worker's transactional commits.
- :func:`flush_before_commit`: Faust flushes its producer before it commits input offsets,
  before a rebalance revokes partitions and when it stops; the worker's own writes (held table
  writes, everything produced through librdkafka) are acknowledged first, so no offset is
  committed before the state and outputs of the records it covers (at least once).
- :func:`seek_back_after_drops`: ``Consumer.perform_seek`` also seeks the partitions Faust does
  not (``worker/seeking.py``).
- :func:`before_tables_stop`: at a clean stop Faust stops the tables (closing their stores)
  before ``on_before_shutdown``; the last checkpoint is written in between.

The RocksDB store with the worker's memory budget (``worker/storage.py``) is a subclass
registered under its own store URL, not a patch; the Faust store attributes it relies on are in
``PATCHED`` too.

>>> install_fetch_wait(20); install_fetch_wait(20)  # idempotent
>>> install_fetch_wait(0)
Traceback (most recent call last):
...
ValueError: fetch_max_wait_ms must be >= 1, got 0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

__all__ = ["PATCHED", "before_tables_stop", "commit_by", "flush_before_commit",
           "install_fetch_wait", "install_read_committed", "seek_back_after_drops"]

# (module, class, attribute): what the functions below replace, wrap or read
PATCHED: tuple[tuple[str, str, str], ...] = (
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_create_worker_consumer"),
    ("faust.transport.consumer", "Consumer", "perform_seek"),
    ("faust.transport.consumer", "Consumer", "commit"),
    ("faust.transport.consumer", "Consumer", "_filter_committable_offsets"),
    ("aiokafka.consumer.consumer", "AIOKafkaConsumer", "start"),
    ("faust.transport.producer", "Producer", "flush"),
    ("faust.tables.manager", "TableManager", "stop"),
    ("faust.tables.manager", "TableManager", "recovery"),
    ("faust.streams", "Stream", "take_events"),
    ("faust.stores.rocksdb", "Store", "_db_for_partition"),
    ("faust.stores.rocksdb", "Store", "persisted_offset"),
    ("faust.stores.rocksdb", "Store", "on_rebalance"),
    ("faust.tables.base", "Collection", "changelog_topic"),
)

_WAIT_MS = "_stream_app_fetch_max_wait_ms"
_ISOLATION = "_stream_app_isolation_level"


def _wrap_worker_consumer() -> Any:
    """Faust's worker-consumer factory, wrapped once to apply the settings below."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    thread_class: Any = AIOKafkaConsumerThread
    if not hasattr(thread_class, _WAIT_MS):
        create = thread_class._create_worker_consumer

        def _create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = create(self, transport)
            # both read by AIOKafkaConsumer.start() when it builds its Fetcher
            consumer._fetch_max_wait_ms = getattr(thread_class, _WAIT_MS)
            isolation = getattr(thread_class, _ISOLATION)
            if isolation is not None:
                consumer._isolation_level = isolation
            return consumer

        thread_class._create_worker_consumer = _create_worker_consumer
        setattr(thread_class, _WAIT_MS, 1500)
        setattr(thread_class, _ISOLATION, None)
    return thread_class


def install_fetch_wait(wait_ms: int) -> None:
    """Every worker consumer Faust creates from now on lets a fetch wait ``wait_ms`` at most."""
    if wait_ms < 1:
        raise ValueError(f"fetch_max_wait_ms must be >= 1, got {wait_ms}")
    setattr(_wrap_worker_consumer(), _WAIT_MS, int(wait_ms))


def install_read_committed(committed: bool = True) -> None:
    """Every worker consumer Faust creates from now on reads only committed transactions
    (inputs, the tables' changelogs in recovery, ``learning``): Faust itself does so only with
    its own transactions (``processing_guarantee="exactly_once"``), which the worker does not
    use (``worker/transactions.py``). ``False``: Faust's choice again."""
    setattr(_wrap_worker_consumer(), _ISOLATION, "read_committed" if committed else None)


def commit_by(app: Any, commit: Callable[[], Awaitable[bool]]) -> None:
    """Faust's offset commits (its commit timer, before a rebalance, at a stop) run ``commit``
    instead (a transaction that carries the offsets). Faust's own acknowledgement book-keeping
    is pruned as its commit would, so it does not grow."""
    consumer = app.consumer

    async def commit_offsets(topics: Any = None, start_new_transaction: bool = True) -> bool:
        acked = consumer._filter_committable_offsets(list(consumer._acked))
        consumer._committed_offset.update(acked)
        return await commit()

    consumer.commit = commit_offsets


def flush_before_commit(app: Any, write_out: Callable[[], Awaitable[None]]) -> None:
    """Run ``write_out`` (and wait for it) whenever Faust flushes its producer."""
    producer = app.producer
    faust_flush = producer.flush

    async def flush() -> None:
        await write_out()
        await faust_flush()

    producer.flush = flush


def seek_back_after_drops(app: Any, inputs: Collection[str], log: Any) -> None:
    """``perform_seek`` also seeks back the partitions Faust leaves past dropped records."""
    from stream_app.worker.seeking import seek_back

    consumer = app.consumer
    consumer.perform_seek = seek_back(consumer, inputs, app.tables, log)


def before_tables_stop(app: Any, before: Callable[[], Awaitable[None]]) -> None:
    """Run ``before`` when Faust stops the tables, before their stores close (whatever it
    raises, the stores are closed)."""
    manager = app.tables
    stop_tables = manager.stop

    async def stop() -> None:
        try:
            await before()
        finally:
            await stop_tables()

    manager.stop = stop
