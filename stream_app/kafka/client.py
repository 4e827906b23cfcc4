"""Small confluent-kafka helpers shared by the CLI, the demo driver and the tests."""

from __future__ import annotations

import time
from typing import Any, Iterator

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from stream_app.kafka.security import client_config

# The Java clients' partitioner (murmur2 of the key), which the worker and aiokafka use too:
# librdkafka's default (CRC32) would put a customer on another partition.
PARTITIONER = "murmur2_random"


def producer(bootstrap: str, **extra: Any) -> Producer:
    """A producer that keeps the order of a partition's records across retries (idempotent)."""
    return Producer(client_config({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                                   "enable.idempotence": True, "partitioner": PARTITIONER, **extra}))


def send(p: Producer, topic: str, key: str | bytes | None, value: Any) -> None:
    """Produce ``value`` (a dict is JSON-encoded; bytes go as they are)."""
    raw = value if isinstance(value, (bytes, bytearray)) or value is None else orjson.dumps(value)
    k = key.encode() if isinstance(key, str) else key
    while True:
        try:
            p.produce(topic, key=k, value=raw)
            return
        except BufferError:
            p.poll(0.05)


def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int,
               timeout_s: float = 30.0) -> list[tuple[int, bytes | None, bytes | None]]:
    """The records ``[start, end)`` of one partition, as (offset, key, value); fewer when the
    range was compacted or deleted, or ``timeout_s`` passed."""
    consumer = Consumer(client_config({"bootstrap.servers": bootstrap,
                                       "group.id": f"range-{time.time_ns()}",
                                       "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    out: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        position = start
        tp = TopicPartition(topic, partition)
        while position < end and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is not None:
                    continue
                position = msg.offset() + 1
                if msg.offset() < end:
                    out.append((msg.offset(), msg.key(), msg.value()))
            # a transaction's commit marker takes an offset no record is delivered at: the
            # consumer's position passes it
            position = max(position, consumer.position([tp])[0].offset)
    finally:
        consumer.close()
    return out


class TopicReader:
    """Reads a topic from the offsets it had when created (or from the start), no consumer group."""

    def __init__(self, bootstrap: str, topic: str, from_start: bool = False) -> None:
        self.topic = topic
        self.consumer = Consumer(client_config({
            "bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        }))
        deadline = time.monotonic() + 30
        while True:  # a topic created a moment ago may not have a leader yet
            try:
                meta = self.consumer.list_topics(topic, timeout=15).topics[topic]
                tps = []
                for p in sorted(meta.partitions):
                    low, high = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=15)
                    tps.append(TopicPartition(topic, p, low if from_start else high))
                if tps:
                    break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        self.consumer.assign(tps)

    def poll(self, timeout_s: float = 0.2, max_messages: int = 500) -> list[tuple[bytes | None, bytes]]:
        out = []
        for msg in self.consumer.consume(max_messages, timeout_s):
            if msg.error() is None:
                out.append((msg.key(), msg.value()))
        return out

    def read_json(self, timeout_s: float = 0.2) -> Iterator[dict[str, Any]]:
        for _, value in self.poll(timeout_s):
            yield orjson.loads(value)

    def close(self) -> None:
        self.consumer.close()
