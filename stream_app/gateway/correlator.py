"""Hands each decision on the ``decisions`` topic to the HTTP request waiting for it.

Every gateway instance must see every decision, whichever partition its customer hashes to, so
the correlator joins no consumer group: it assigns itself every partition of ``decisions`` at its
end offset (read explicitly before the gateway serves, so a decision produced after a request
was sent cannot be skipped) and reads on in a thread of its own (librdkafka's consumer blocks).
A decision whose ``request_id`` has a waiter is handed to the event loop in one call per batch;
every other decision (answers to Kafka-native channels, to other gateway instances) is skipped.

The waiter's result is an ``Arrival``: the decision, its Kafka timestamp (when the worker produced
it) and when the gateway received it, from which the gateway tells the engine's time from its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream_app.kafka.security import client_config

__all__ = ["Arrival", "DecisionCorrelator"]

log = structlog.get_logger("stream_app.gateway")


@dataclass(frozen=True, slots=True)
class Arrival:
    decision: dict[str, Any]
    produced_ms: float  # the decision's Kafka timestamp (the worker produced it)
    received_ms: float  # wall clock when the gateway read it


class DecisionCorrelator:
    """``expect(request_id)`` -> a future that the matching decision resolves."""

    def __init__(self, bootstrap: str, topic: str, group_id: str) -> None:
        self.topic = topic
        self._consumer = Consumer(client_config({
            "bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "latest", "fetch.wait.max.ms": 20,
        }))
        self._waiting: dict[str, asyncio.Future[Arrival]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.partitions = 0

    def open(self, timeout_s: float = 30.0) -> int:
        """Assign every partition at its current end; returns how many (blocking)."""
        deadline = time.monotonic() + timeout_s
        while True:  # a topic created a moment ago may have no leader yet
            try:
                meta = self._consumer.list_topics(self.topic, timeout=10).topics[self.topic]
                if meta.error is None and meta.partitions:
                    tps = []
                    for p in sorted(meta.partitions):
                        _, high = self._consumer.get_watermark_offsets(
                            TopicPartition(self.topic, p), timeout=10)
                        tps.append(TopicPartition(self.topic, p, high))
                    self._consumer.assign(tps)
                    self.partitions = len(tps)
                    return self.partitions
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no readable partitions after "
                                   f"{timeout_s:.0f} s")
            time.sleep(0.2)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._consumer.close()

    # -- on the event loop ------------------------------------------------------------------
    def expect(self, request_id: str) -> asyncio.Future[Arrival]:
        assert self._loop is not None, "start() first"
        future = self._waiting[request_id] = self._loop.create_future()
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def waiting(self, request_id: str) -> bool:
        return request_id in self._waiting

    def fail(self, request_id: str, exc: BaseException) -> None:
        future = self._waiting.get(request_id)
        if future is not None and not future.done():
            future.set_exception(exc)

    def _resolve(self, arrivals: list[tuple[str, Arrival]]) -> None:
        for request_id, arrival in arrivals:
            future = self._waiting.get(request_id)
            if future is not None and not future.done():
                future.set_result(arrival)

    # -- in the consumer thread -------------------------------------------------------------
    def _run(self) -> None:
        assert self._loop is not None
        try:
            while not self._stop.is_set():
                # the first decision as soon as it comes, then what else is there already
                # (``consume(n, timeout)`` alone would hold the first until n came or timeout)
                first = self._consumer.poll(0.1)
                if first is None:
                    continue
                messages = [first, *self._consumer.consume(499, 0)]
                received = time.time() * 1000.0
                arrivals = []
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    try:
                        decision = orjson.loads(msg.value())
                        request_id = decision["request_id"]
                    except (orjson.JSONDecodeError, TypeError, KeyError):
                        continue  # not a decision the engine wrote: nobody waits for it
                    if request_id in self._waiting:  # a membership test: safe across threads
                        arrivals.append((request_id, Arrival(decision, float(msg.timestamp()[1]),
                                                             received)))
                if arrivals:
                    self._loop.call_soon_threadsafe(self._resolve, arrivals)
        except Exception:  # noqa: BLE001 - logged; waiting requests then time out to the fallback
            log.exception("decisions_reader_failed", topic=self.topic)
