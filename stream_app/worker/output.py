"""Everything the worker writes to Kafka, through one librdkafka producer.

Faust sends each message through aiokafka's producer in Python (a future, a pending-message
record, the accumulator, the sender task): ~65 us of the event loop per message measured under
load, and a decision request causes ~10 messages (the decision, delta records, the tables'
changelog records). librdkafka takes a message in a few microseconds and batches, compresses and
sends it from its own threads, outside the GIL.

**Exactly once** (the default, ``worker/transactions.py``): one transactional producer (one
lane) holds everything the worker writes between two commits; the commit cycle holds new sends
(:meth:`hold`) while :meth:`commit_transaction` runs in a thread, then sends them into the next
transaction (:meth:`release`). The rest of this docstring is the at-least-once mode.

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
                 bulk_producer: Any = None, transactional_id: str | None = None,
                 transaction_timeout_ms: int = 10_000) -> None:
        self.transactional = transactional_id is not None
        if producer is None and self.transactional:
            # one lane: one transaction holds it all; it lingers as the bulk lane does, since
            # a read_committed consumer sees nothing before the commit anyway
            producer = self._producer_for(bootstrap, bulk_linger_ms, {
                "transactional.id": transactional_id,
                "transaction.timeout.ms": transaction_timeout_ms})
        elif producer is None:
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
        self._held: list[tuple[str, bytes | None, bytes | None, int | None]] | None = None
        self.sent = 0
        self.in_transaction = 0  # messages produced in the open transaction

    def _producer_for(self, bootstrap: str, linger_ms: float,
                      extra: dict[str, Any] | None = None) -> Any:
        from confluent_kafka import Producer

        from stream_app.kafka.security import client_config

        return Producer(client_config({
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "acks": "all",
            "enable.idempotence": True,  # per partition in order, no duplicates from retries
            "partitioner": PARTITIONER,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 256 * 1024,
            "batch.num.messages": 10_000,
            "on_delivery": self._delivered,
            **(extra or {}),
        }))

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             partition: int | None = None) -> None:
        """Queue one message (never blocks the event loop for long: a full queue is drained by
        serving delivery reports until there is room)."""
        if self._held is not None:  # a transaction is committing: the next one takes it
            self._held.append((topic, key, value, partition))
            return
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
        self.in_transaction += 1
        sent = self._sent_by_topic
        sent[topic] = sent.get(topic, 0) + 1

    def poll(self) -> None:
        """Serve the delivery reports that arrived (cheap; the worker calls it once a tick). A
        refusal is kept for :meth:`flush` to raise: the worker polls from an event-loop callback,
        where an exception would only be logged, and the next commit would then go ahead.
        The records queued since the last call are counted (``stream_app_records_out_total``)."""
        if self._held is not None:  # the committing thread serves the reports
            return
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

    # -- transactions (``worker/transactions.py``) -------------------------------------------

    def begin(self, timeout_s: float = 60.0) -> None:
        """Fence any earlier producer with the same transactional id (its open transaction is
        aborted) and open the first transaction. Blocking: at start-up."""
        producer = self._urgent_producer
        producer.init_transactions(timeout_s)
        producer.begin_transaction()
        self.in_transaction = 0

    def hold(self) -> None:
        """From now on, sends are held (the open transaction is about to commit)."""
        self._held = []

    def commit_transaction(self, offsets: dict[tuple[str, int], int], group_metadata: Any,
                           timeout_s: float = 60.0) -> None:
        """Commit the open transaction with the consumer ``offsets`` (the next record to read
        of each input partition) and open the next one. Blocking: run it in a thread while sends
        are held. Raises (and the worker must stop) if the transaction could not commit."""
        from confluent_kafka import TopicPartition

        producer = self._urgent_producer
        if offsets:
            producer.send_offsets_to_transaction(
                [TopicPartition(topic, partition, offset)
                 for (topic, partition), offset in offsets.items()],
                group_metadata, timeout_s)
        producer.commit_transaction(timeout_s)
        self._raise_failed()
        producer.begin_transaction()
        self.in_transaction = 0

    def release(self) -> None:
        """Send what was held, into the transaction now open."""
        held, self._held = self._held, None
        for topic, key, value, partition in held or ():
            self.send(topic, key, value, partition)

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
