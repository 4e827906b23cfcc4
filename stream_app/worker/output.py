"""Everything the worker writes to Kafka, through one librdkafka producer.

Faust sends each message through aiokafka's producer in Python (a future, a pending-message
record, the accumulator, the sender task): ~65 us of the event loop per message measured under
load, and a decision request causes ~10 messages (the decision, delta records, the tables'
changelog records). librdkafka takes a message in a few microseconds and batches, compresses and
sends it from its own threads, outside the GIL.

Delivery is at least once, as with Faust: :meth:`flush` waits until every message produced so
far is acknowledged and raises :class:`DeliveryError` if any was refused, and the worker runs it
before Faust commits the input offsets (``worker/app.py`` hooks it into the commit), so an
offset is never committed ahead of the outputs of the messages before it. A refused message
crashes the worker (the inputs are then processed again after restart) rather than being lost.

**Two lanes.** Decisions are what a channel waits for: they go through a producer that lingers
``linger_ms`` (1 ms). Everything else (changelog records, delta metrics, scores, dead letters:
~9 of the ~10 messages a request causes) goes through a second producer that lingers
``bulk_linger_ms`` (20 ms), so it reaches the broker in few, large produce requests: with one
1 ms lane for all, the broker spent a core on small produce requests and the worker, sharing
two cores with it, decided ~30 % fewer requests per second (measured, ``performance.md``
part 5). Per topic, one lane: order within a partition is kept.

Keys are partitioned with murmur2, the partitioner of the Java client and of aiokafka, so the
output topics keep the partitioning they had when Faust produced them. Changelog records name
their partition explicitly (the table partition is the source partition), and the offset of the
last acknowledged record of every changelog partition is kept for the table stores' persisted
offsets (:meth:`take_acked`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream_app.kafka.client import PARTITIONER
from stream_app.observability import metrics

__all__ = ["DeliveryError", "Output"]


class DeliveryError(RuntimeError):
    """A message the broker did not take (after librdkafka's own retries)."""


class Output:
    def __init__(self, bootstrap: str, *, linger_ms: float = 1.0, bulk_linger_ms: float = 20.0,
                 urgent_topics: frozenset[str] = frozenset(),
                 tracked_topics: frozenset[str] = frozenset(), producer: Any = None,
                 bulk_producer: Any = None) -> None:
        if producer is None:
            producer = self._producer_for(bootstrap, linger_ms)
            bulk_producer = self._producer_for(bootstrap, bulk_linger_ms)
        self._urgent_producer = producer
        self._bulk_producer = producer if bulk_producer is None else bulk_producer
        self._producers = (producer,) if bulk_producer is None else (producer, bulk_producer)
        self._urgent = urgent_topics  # topics of the low-latency lane (decisions)
        self._tracked = tracked_topics  # changelog topics: remember their acknowledged offsets
        self._acked: dict[tuple[str, int], int] = {}
        self._failed: list[str] = []
        self._sent_by_topic: dict[str, int] = {}  # since the last poll, for the metrics
        self.sent = 0

    def _producer_for(self, bootstrap: str, linger_ms: float) -> Any:
        from confluent_kafka import Producer

        return Producer({
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "acks": "all",
            "enable.idempotence": True,  # per partition in order, no duplicates from retries
            "partitioner": PARTITIONER,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 256 * 1024,
            "batch.num.messages": 10_000,
            "on_delivery": self._delivered,
        })

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             partition: int | None = None) -> None:
        """Queue one message (never blocks the event loop for long: a full queue is drained by
        serving delivery reports until there is room)."""
        producer = self._urgent_producer if topic in self._urgent else self._bulk_producer
        produce = producer.produce
        while True:
            try:
                if partition is None:
                    produce(topic, value, key)
                else:
                    produce(topic, value, key, partition)
                break
            except BufferError:  # librdkafka's queue is full: let it send
                producer.poll(0.05)
        self.sent += 1
        sent = self._sent_by_topic
        sent[topic] = sent.get(topic, 0) + 1

    def poll(self) -> None:
        """Serve the delivery reports that arrived (cheap; the worker calls it once a tick). A
        refusal is kept for :meth:`flush` to raise: the worker polls from an event-loop callback,
        where an exception would only be logged, and the next commit would then go ahead.
        The records queued since the last call are counted (``stream_app_records_out_total``)."""
        for producer in self._producers:
            producer.poll(0)
        self._count_sent()

    async def flush(self, timeout_s: float = 60.0) -> None:
        """Wait (without blocking the event loop) until everything produced is acknowledged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            waiting = 0
            for producer in self._producers:
                waiting += producer.poll(0) + len(producer)
            if not waiting:
                break
            self._raise_failed()
            if loop.time() > deadline:
                raise DeliveryError(f"{waiting} messages not acknowledged after {timeout_s} s")
            await asyncio.sleep(0.001)
        self._count_sent()
        self._raise_failed()

    def flush_blocking(self, timeout_s: float = 60.0) -> None:
        """:meth:`flush` for code without an event loop (the benchmark's relay)."""
        for producer in self._producers:
            left = producer.flush(timeout_s)
            if left:
                raise DeliveryError(f"{left} messages not acknowledged after {timeout_s} s")
        self._raise_failed()

    def take_acked(self) -> dict[tuple[str, int], int]:
        """The last acknowledged offset of each tracked (topic, partition) since the last call."""
        acked, self._acked = self._acked, {}
        return acked

    def _count_sent(self) -> None:
        if self._sent_by_topic:
            metrics.count_out(self._sent_by_topic)
            self._sent_by_topic = {}

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed.append(f"{msg.topic()}[{msg.partition()}]: {err}")
            return
        topic = msg.topic()
        if topic in self._tracked:
            tp = (topic, msg.partition())
            offset = msg.offset()
            if offset > self._acked.get(tp, -1):
                self._acked[tp] = offset

    def _raise_failed(self) -> None:
        if self._failed:
            failed, self._failed = self._failed, []
            raise DeliveryError(f"{len(failed)} messages refused by the broker, first: {failed[0]}")
