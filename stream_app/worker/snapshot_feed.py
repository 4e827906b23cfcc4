"""Every worker reads the fleet's snapshots from the compacted ``learner-snapshots`` topic (no
consumer group, from its beginning), as it reads ``engine-config``: the partitions' sessions
decide with the newest complete snapshot (``latest``), and the worker that runs the fleet's
learner starts it from there (``latest_blob``: its own copy, never the object the sessions
read).

The feed runs in a daemon thread with its own consumer; swapping ``latest`` is atomic. A
snapshot that cannot be read is logged and skipped: the last good one stays in force.
"""

from __future__ import annotations

import threading
import time

import structlog

from stream_app.fleet import Assembler, FleetSnapshot, SnapshotError
from stream_app.kafka.security import client_config
from stream_app.observability import metrics

log = structlog.get_logger("stream_app.fleet")


class SnapshotFeed:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.latest: FleetSnapshot | None = None
        self.latest_blob: bytes | None = None  # the encoded ``latest``
        self.loaded = threading.Event()  # the topic was read to its end once
        self._position = -1  # next offset to read
        self._assembler = Assembler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapshot-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def caught_up(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything on the topic now has been read (a learner taking over reads
        from the last snapshot its predecessor published); ``False`` on timeout."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(client_config({"bootstrap.servers": self.bootstrap,
                                           "group.id": "stream-app-fleet",
                                           "enable.auto.commit": False}))
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0),
                                                     timeout=timeout_s)
        finally:
            consumer.close()
        deadline = time.monotonic() + timeout_s
        while self._position < high and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._position >= high

    def _take(self, key: bytes | None, value: bytes | None, offset: int,
              timestamp_ms: int | None = None) -> None:
        try:
            snapshot = self._assembler.add(key, value)
        except SnapshotError as exc:
            log.error("snapshot_unreadable", offset=offset, error=str(exc))
            return
        if snapshot is not None:
            self.latest_blob = self._assembler.latest_blob
            self.latest = snapshot
            if timestamp_ms:  # when its last chunk was written: the snapshot's age on /metrics
                metrics.learner_snapshot_taken(timestamp_ms / 1000.0)
            log.debug("snapshot_loaded", version=snapshot.version)

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(client_config({
            "bootstrap.servers": self.bootstrap, "group.id": "stream-app-fleet",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 4 * 1024 * 1024,
        }))
        try:
            while not self._stop.is_set():
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                if meta is not None and meta.partitions and meta.error is None:
                    break
                time.sleep(0.5)
            low, end = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
            consumer.assign([TopicPartition(self.topic, 0, low)])
            self._position = low
            if low >= end:
                self.loaded.set()
            tp = TopicPartition(self.topic, 0)
            while not self._stop.is_set():
                for msg in consumer.consume(100, 0.2):
                    if msg.error() is not None:
                        continue
                    self._take(msg.key(), msg.value(), msg.offset(), msg.timestamp()[1])
                    self._position = msg.offset() + 1
                # past transaction markers (the learner writes in transactions): no record is
                # delivered at their offsets, the consumer's position moves over them
                self._position = max(self._position, consumer.position([tp])[0].offset)
                if not self.loaded.is_set() and self._position >= end:
                    self.loaded.set()
        except Exception:  # noqa: BLE001 - logged; the sessions keep the last snapshot
            log.exception("snapshot_feed_failed")
        finally:
            consumer.close()
