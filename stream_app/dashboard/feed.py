"""The dashboard's reader of the engine's output topics: every partition, no consumer group.

``TopicFeed`` assigns itself every partition of ``decisions``, ``delta-metrics`` and
``dead-letter`` (from the beginning, or from the end with ``from_start=False``), commits
nothing, and hands each message to a ``Board``. A topic that does not exist yet is looked for
again every few seconds, so the dashboard may start before the engine. Kafka's calls block, so
they run in a thread while the event loop serves the page; the board itself is only touched
from the event loop.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from stream_app.dashboard.board import TOPICS, Board
from stream_app.kafka.security import client_config
from stream_app.settings import Settings

__all__ = ["TopicFeed"]

log = structlog.get_logger("stream_app.dashboard")

RETRY_TOPICS_S = 3.0


class TopicFeed:
    """Reads the dashboard's topics into ``board`` until ``stop()``."""

    def __init__(self, settings: Settings, board: Board, from_start: bool = True,
                 poll_s: float = 0.25, max_messages: int = 2000) -> None:
        self.board = board
        self.from_start = from_start
        self.poll_s, self.max_messages = poll_s, max_messages
        self._names = {settings.topic(name): name for name in TOPICS}  # full name -> contract
        self._consumer = Consumer(client_config({
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"stream-app-dashboard-{time.time_ns()}",  # never joined: assign only
            "enable.auto.commit": False, "enable.auto.offset.store": False,
        }))
        self._assigned: set[str] = set()
        self._stopping = asyncio.Event()

    @property
    def missing(self) -> list[str]:
        """Topics not found yet (contract names)."""
        return [name for full, name in self._names.items() if full not in self._assigned]

    def _assign_new(self) -> None:
        """Add the partitions of every topic that exists now and is not read yet."""
        try:
            meta = self._consumer.list_topics(timeout=5).topics
        except KafkaException as exc:
            log.warning("dashboard_metadata_failed", error=str(exc))
            return
        offset = OFFSET_BEGINNING if self.from_start else OFFSET_END
        new = []
        for full in self._names:
            topic = meta.get(full)
            if full in self._assigned or topic is None or topic.error or not topic.partitions:
                continue
            new += [TopicPartition(full, p, offset) for p in sorted(topic.partitions)]
            self._assigned.add(full)
        if new:
            self._consumer.incremental_assign(new)
            log.info("dashboard_reading", partitions=len(new), from_start=self.from_start,
                     missing=self.missing)

    def _poll(self):
        return self._consumer.consume(self.max_messages, self.poll_s)

    async def run(self) -> None:
        """Read until ``stop()``; closes the consumer on the way out."""
        looked = 0.0
        try:
            while not self._stopping.is_set():
                if self.missing and time.monotonic() - looked > RETRY_TOPICS_S:
                    looked = time.monotonic()
                    await asyncio.to_thread(self._assign_new)
                if not self._assigned:
                    await asyncio.sleep(self.poll_s)
                    continue
                for msg in await asyncio.to_thread(self._poll):
                    err = msg.error()
                    if err is not None:
                        log.warning("dashboard_read_error", topic=msg.topic(), error=str(err))
                        continue
                    self.board.add(self._names[msg.topic()], msg.value())
        finally:
            await asyncio.to_thread(self._consumer.close)

    def stop(self) -> None:
        self._stopping.set()
