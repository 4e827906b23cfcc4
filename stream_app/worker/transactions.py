"""Exactly once: what a worker did in a commit interval is one Kafka transaction.

Every ``commit_interval_ms`` (and before a hand-over or a stop) the worker *cuts*: the tables'
held writes go to their changelogs, and the position of every input partition it read is
taken, all at one point of the event loop, with nothing processed in between; then the open
transaction, holding every output record, every changelog record and those input positions
(``send_offsets_to_transaction``), is committed, while the event loop goes on and the sends of
the next records are held for the next transaction. Only once it has committed are the rows
written to the local RocksDB stores (``worker/tables.py``, staged), so a store never holds what
its changelog does not.

A worker killed at any moment leaves an open transaction that the broker aborts (at once when
a worker with the same transactional id starts, else after ``transaction_timeout_ms``):
consumers reading ``read_committed`` (the worker's own consumer, its changelog recovery, the
fleet's learner, Kafka's default for the Java clients and librdkafka) never see its outputs,
the changelogs never hold its state, and its inputs are read again from the committed
positions. Each input record therefore has its effect once, in state and in every output topic.

The positions are the worker's own (the next offset of each partition after the last record a
session processed), not Faust's acknowledgements: an offset is committed together with exactly
the outputs and state of the records before it. The group's offsets are committed with the
consumer group id only (no member id and generation: the consumer is Faust's aiokafka one, and
librdkafka's group metadata is made by an unsubscribed consumer of the same group); the broker
accepts them while the group has members. What fences a dead worker is its transactional id:
``<app id>-<worker id>``, stable across restarts of the same worker (its host and data
directory, or ``STREAM_APP_WORKER_ID``).

>>> positions = Positions()
>>> positions.advance("requests", 0, 41); positions.advance("requests", 0, 42)
>>> positions.advance("requests", 1, 7)
>>> positions.take()
{('requests', 0): 43, ('requests', 1): 8}
>>> positions.take()
{}
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["ExactlyOnce", "Positions", "transactional_id"]

log = structlog.get_logger("stream_app.worker.transactions")


def transactional_id(app_id: str, worker_id: str, data_dir: str) -> str:
    """The worker's transactional id: the same for every restart of the same worker."""
    if not worker_id:
        where = f"{socket.gethostname()}:{data_dir}".encode()
        worker_id = hashlib.sha256(where).hexdigest()[:16]
    return f"{app_id}-{worker_id}"


class Positions:
    """The next offset to read of each input partition, since the last commit."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def advance(self, topic: str, partition: int, offset: int) -> None:
        """The record at ``offset`` was processed."""
        self._next[topic, partition] = offset + 1

    def take(self) -> dict[tuple[str, int], int]:
        taken, self._next = self._next, {}
        return taken

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self._next.pop(tp, None)


class ExactlyOnce:
    """The commit cycle of a worker: ``output`` is a transactional ``Output``, ``tables`` staged
    ``Tables``; ``group_id`` the consumer group whose offsets the transactions commit;
    ``before_cut`` sends what is to leave once per commit (the sessions' lessons), called
    before the cut."""

    def __init__(self, output: Any, tables: Any, bootstrap: str, group_id: str,
                 timeout_s: float = 30.0, failpoint: Any = None,
                 before_cut: Callable[[], Any] | None = None) -> None:
        if not output.transactional or not tables.staged:
            raise ValueError("exactly once needs a transactional output and staged tables")
        self.output = output
        self.tables = tables
        self.positions = Positions()
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.timeout_s = timeout_s
        self.commits = 0
        self.failpoint = failpoint  # crash tests only (stream_app/failpoints.py)
        self.before_cut = before_cut
        self._lock = asyncio.Lock()
        self._group: Any = None
        self._metadata: Any = None

    def begin(self) -> None:
        """Fence the previous incarnation of this worker and open the first transaction."""
        from confluent_kafka import Consumer

        from stream_app.kafka.security import client_config

        started = time.monotonic()
        self.output.begin(self.timeout_s)
        self._group = Consumer(client_config({"bootstrap.servers": self.bootstrap,
                                              "group.id": self.group_id,
                                              "enable.auto.commit": False}))
        self._metadata = self._group.consumer_group_metadata()
        log.info("transactions_ready", ms=round((time.monotonic() - started) * 1000, 1))

    async def commit(self) -> bool:
        """Cut, commit the open transaction (in a thread), then write its rows to the stores.
        False when there was nothing to commit."""
        async with self._lock:
            # the cut: no await until the sends are held, so the transaction holds exactly the
            # records processed before the positions it commits
            if self.before_cut is not None:
                self.before_cut()
            layer = self.tables.cut()
            offsets = self.positions.take()
            if not offsets and not self.output.in_transaction:
                self.tables.write_committed(layer)  # empty
                return False
            self.output.hold()
            if self.failpoint is not None:
                self.failpoint.reached("committing", {topic for topic, _ in offsets})
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self.output.commit_transaction, offsets,
                                           self._metadata, self.timeout_s)
            except BaseException as exc:
                # the transaction is lost (aborted by the broker): what it held is processed
                # again from the committed positions by the next worker; this one must stop
                log.error("transaction_failed", error=str(exc), offsets=len(offsets))
                raise
            finally:
                self.output.release()
            if self.failpoint is not None:
                self.failpoint.reached("committed", {topic for topic, _ in offsets})
            self.tables.write_committed(layer)
            self.commits += 1
            return True

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
            self._group = None
