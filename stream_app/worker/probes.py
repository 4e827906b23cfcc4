"""The worker's probes: when a Faust worker is ready, and the gauges read from its app.

:class:`WorkerProbes` is a ``mode`` service the worker adds to its Faust app as a dependency,
so it starts before the app's consumer and tables, and ``/health`` answers while the worker
joins its group and recovers its tables. It serves ``observability.serve_probes`` with:

- readiness: an engine config in force (the config feed read ``engine-config`` and found a
  valid one), the partitions assigned and the tables recovered (Faust's recovery has completed
  and no rebalance is under way), and the worker not stopping. A worker that the group gave no
  input partition (more workers than partitions) is ready and idle: a rollout must not wait
  for it;
- before each scrape: the consumer lag of every assigned input partition (its high watermark
  minus its committed offset) and the estimated size of every local table partition.

:func:`count_batch` counts what one partition's batch produced. The Faust attributes read here
are listed in ``READ`` (a unit test checks that the installed Faust still has them).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from faust.stores.rocksdb import Store as FaustStore
from mode import Service

from stream_app.observability import metrics
from stream_app.observability.probes import serve_probes

__all__ = ["READ", "WorkerProbes", "count_batch"]

log = structlog.get_logger("stream_app.worker")

# (module, class, attribute) of Faust read by the probes
READ: tuple[tuple[str, str, str], ...] = (
    ("faust.app.base", "App", "rebalancing"),
    ("faust.tables.manager", "TableManager", "recovery"),
    ("faust.tables.recovery", "Recovery", "completed"),
    ("faust.transport.consumer", "Consumer", "_committed_offset"),
    ("faust.transport.consumer", "Consumer", "highwater"),
    ("faust.transport.consumer", "Consumer", "assignment"),
    ("faust.stores.rocksdb", "Store", "_dbs"),
    ("faust.stores.rocksdb", "Store", "offset_key"),
)
_SIZE_PROPERTIES = ("rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables")
_CUSTOMERS_TABLE = "customers"


def count_batch(topic: str, partition: int, emitted: Any) -> None:
    """Count what a partition's batch of ``topic`` produced (a ``partition.Emitted``): its
    decisions and their latency, the partition's model version, duplicates and dead letters."""
    decisions = emitted.decisions
    if decisions:
        metrics.count_decisions(decisions)
        version = decisions[-1].get("model_version")
        if version:
            metrics.model_version_seen(partition, version)
    if emitted.dead_letter_reasons:
        metrics.count_dead_letters(emitted.dead_letter_reasons)
    metrics.count_duplicates(topic, emitted.duplicates)


class WorkerProbes(Service):
    """``/health``, ``/ready`` and ``/metrics`` of a Faust worker, started with its app.

    Parameters
    ----------
    app
        The worker's ``faust.App``.
    feed
        The worker's ``ConfigFeed`` (``current``: the config in force, ``on_change``).
    inputs
        The input topics (their partitions are the worker's assignment and lag).
    host, port
        Where to serve; port 0 serves nothing. A port in use is logged and the worker runs
        without probes.
    """

    def __init__(self, app: Any, feed: Any, inputs: Collection[str], *,
                 host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.feed = feed
        self.inputs = frozenset(inputs)
        self.host = host
        self.port = port
        self._runner: Any = None
        feed.on_change.append(lambda config: metrics.config_applied(config.version))

    async def on_start(self) -> None:
        try:
            self._runner = await serve_probes(self.port, self.ready, host=self.host,
                                              on_scrape=self.refresh)
        except OSError as exc:
            log.error("probes_unavailable", host=self.host, port=self.port, error=str(exc))

    async def on_stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- readiness ---------------------------------------------------------------------------
    def ready(self) -> dict[str, Any]:
        """The readiness details; ``ready`` is true when all the conditions hold."""
        app = self.app
        config = self.feed.current
        recovered = bool(app.tables.recovery.completed.is_set()) and not app.rebalancing
        stopping = bool(app.should_stop)
        return {
            "ready": config is not None and recovered and not stopping,
            "config_loaded": config is not None,
            "config_version": None if config is None else config.version,
            "recovered": recovered,
            "rebalancing": bool(app.rebalancing),
            "stopping": stopping,
            "partitions": sorted({tp.partition for tp in self._assignment()}),
        }

    def _assignment(self) -> list[Any]:
        """The input partitions assigned (none while the consumer is not running)."""
        try:
            assigned = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - consumer not started yet, or stopping
            return []
        return [tp for tp in assigned if tp.topic in self.inputs]

    # -- gauges read at each scrape ----------------------------------------------------------
    def refresh(self) -> None:
        """Consumer lag and store sizes, as they are now."""
        self._sample_lag()
        self._sample_state()

    def _sample_lag(self) -> None:
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        metrics.CONSUMER_LAG.clear()  # partitions revoked since the last scrape disappear
        for tp in self._assignment():
            done = committed.get(tp)
            try:
                end = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - revoked meanwhile
                continue
            if end is None or done is None:  # no fetch or no commit yet: unknown
                continue
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - done))

    def _sample_state(self) -> None:
        metrics.STATE_BYTES.clear()
        metrics.CUSTOMERS.clear()
        for table in self.app.tables.values():
            for partition, db in list(getattr(table.data, "_dbs", {}).items()):
                try:
                    size = sum(int(db.property_int_value(p) or 0) for p in _SIZE_PROPERTIES)
                    metrics.STATE_BYTES.labels(table.name, str(partition)).set(size)
                    if table.name == _CUSTOMERS_TABLE:
                        keys = int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
                        if db.get(FaustStore.offset_key) is not None:
                            keys -= 1  # Faust's changelog offset, not a customer
                        metrics.CUSTOMERS.labels(str(partition)).set(max(0, keys))
                except Exception:  # noqa: BLE001 - a store closing under us: skip it
                    continue
