"""Bulk restore of a table partition from its changelog topic, before Faust's own recovery.

Faust recovers a table by passing every changelog record through its consumer, one event at a
time (~5-6k records/s on this machine: a worker that lost its data dir with a million customers,
2 M+ records, needs 6 minutes before it serves again). When a partition's local store is far
behind its changelog (a new or wiped data dir, a long outage), this module reads the gap with
librdkafka in batches and writes it with RocksDB write batches, exactly as Faust's
``apply_changelog_batch`` would (a value is a put, a tombstone a delete, the raw key and value
bytes as they are), and records the last applied offset under Faust's own offset key in the same
batch. Faust's recovery then starts from that offset and finds (almost) nothing left to read.
Kafka Streams restores state stores the same way, outside the processing path.

Runs in a thread from the store's ``on_rebalance`` (the event loop keeps its heartbeats); only
partitions assigned to this worker as active are restored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from faust.stores import rocksdb as faust_rocksdb

__all__ = ["OFFSET_KEY", "Restored", "restore_consumer", "restore_partition"]

log = structlog.get_logger("stream_app.worker.restore")

OFFSET_KEY: bytes = faust_rocksdb.Store.offset_key  # where Faust keeps a store's changelog offset
_BATCH = 5_000


@dataclass(frozen=True)
class Restored:
    topic: str
    partition: int
    records: int
    seconds: float
    from_offset: int
    to_offset: int  # the last offset applied (-1: nothing)


def restore_consumer(bootstrap: str) -> Any:
    """A librdkafka consumer for restores (assigned partitions only, no group membership)."""
    from confluent_kafka import Consumer

    from stream_app.kafka.security import client_config

    return Consumer(client_config({
        "bootstrap.servers": bootstrap, "group.id": "stream-app-restore",
        "enable.auto.commit": False, "enable.partition.eof": True,
        # prefetch: 8 MB made a 1M-customer restore 2.5x slower than 64 MB;
        # what it allocates is given back after the restore (malloc_trim)
        "queued.max.messages.kbytes": 32768, "fetch.max.bytes": 32 << 20,
        "max.partition.fetch.bytes": 16 << 20}))


def restore_partition(db: Any, bootstrap: str, topic: str, partition: int,
                      persisted: int | None, min_records: int = 5_000,
                      timeout_s: float = 30.0, consumer: Any = None) -> Restored | None:
    """Apply ``topic[partition]`` from ``persisted + 1`` to its high watermark to ``db`` (an open
    rocksdict store) when that is at least ``min_records`` records; None when left to Faust.
    ``consumer`` (from :func:`restore_consumer`) may be shared by calls; else one is made."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition
    from rocksdict import WriteBatch

    own = consumer is None
    if own:
        consumer = restore_consumer(bootstrap)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                   timeout=timeout_s)
        start = max(low, (persisted + 1) if persisted is not None else 0)
        if high - start < min_records:
            return None
        started = time.monotonic()
        consumer.assign([TopicPartition(topic, partition, start)])
        applied, last, done = 0, -1, False
        end = -1  # the offset after the end, when reached: past any transaction marker
        progress_at = time.monotonic()
        while not done:
            # consume() returns when the batch is full or its timeout is over (an end-of-partition
            # event does not cut it short): a short timeout, and a deadline on progress
            messages = consumer.consume(_BATCH, 0.2)
            if not messages:
                if time.monotonic() - progress_at > timeout_s:
                    raise TimeoutError(f"restore of {topic}[{partition}]: no records for "
                                       f"{timeout_s:.0f} s at offset {last + 1}")
                continue
            progress_at = time.monotonic()
            batch = WriteBatch(raw_mode=True)
            for msg in messages:
                if msg.partition() != partition or msg.topic() != topic:
                    continue  # left over from a shared consumer's previous assignment
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # reached the end
                        done = True
                        end = msg.offset()
                        continue
                    raise KafkaException(err)
                value = msg.value()
                if value is None:
                    batch.delete(msg.key())
                else:
                    batch.put(msg.key(), value)
                last = msg.offset()
                applied += 1
            # the last offset read: a transaction's commit marker after the last record is
            # read too (it is never delivered), so Faust's recovery does not wait for it
            upto = max(last, end - 1)
            if upto >= 0:
                batch.put(OFFSET_KEY, str(upto).encode())
            db.write(batch)
            done = done or last >= high - 1
        restored = Restored(topic, partition, applied, round(time.monotonic() - started, 3),
                            start, max(last, end - 1))
        log.info("changelog_restored", topic=topic, partition=partition, records=applied,
                 seconds=restored.seconds, records_per_s=round(applied / max(restored.seconds, 1e-9)))
        return restored
    finally:
        if own:
            consumer.close()
        else:
            consumer.unassign()
