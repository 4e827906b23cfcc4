"""Topic ranges (by offset or by time) and the JSONL export record.

An export record is one Kafka message as JSON::

    {"topic": "decisions", "partition": 0, "offset": 17, "timestamp": 1764000000123,
     "key": "c000042", "value": {...}}

``value`` is the parsed JSON value; a value that is not JSON is written as ``value_b64``
(base64 of the raw bytes) instead, and a key that is not UTF-8 as ``key_b64`` (the names of the
dead-letter format). ``timestamp`` is the Kafka record timestamp in epoch milliseconds.

>>> record_of("outcomes", 1, 7, 5, b"c1", b'{"ts": 3}')
{'topic': 'outcomes', 'partition': 1, 'offset': 7, 'timestamp': 5, 'key': 'c1', 'value': {'ts': 3}}
>>> record_of("outcomes", 1, 8, 5, None, b"\\xff")["value_b64"]
'/w=='
>>> raw_value(record_of("outcomes", 1, 8, 5, None, b"\\xff")), raw_value({"value": {"a": 1}})
(b'\\xff', b'{"a":1}')
>>> parse_time("2026-11-23T10:00:00Z"), parse_time("1764000000000")
(1795428000000, 1764000000000)
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


class RangeError(ValueError):
    """A range or a record that cannot be used; the message is one readable line."""


def parse_time(text: str) -> int:
    """Epoch milliseconds from digits (already epoch ms) or an ISO 8601 date / date-time
    (naive means UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RangeError(f"not a time: {text!r} (give ISO 8601, e.g. 2026-11-23T10:00:00Z, "
                         "or epoch milliseconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class TopicRange:
    """Which messages of a topic: offsets ``[from_offset, to_offset)`` or Kafka timestamps
    ``[from_ms, to_ms)``, on every partition or on one. Unset bounds mean start / current end."""

    from_offset: int | None = None
    to_offset: int | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    partition: int | None = None

    def __post_init__(self) -> None:
        by_offset = self.from_offset is not None or self.to_offset is not None
        by_time = self.from_ms is not None or self.to_ms is not None
        if by_offset and by_time:
            raise RangeError("give offsets or times, not both")
        for lo, hi, what in ((self.from_offset, self.to_offset, "offset"),
                             (self.from_ms, self.to_ms, "time")):
            if lo is not None and hi is not None and hi < lo:
                raise RangeError(f"the range ends before it starts ({what} {hi} < {lo})")
        if self.from_offset is not None and self.from_offset < 0:
            raise RangeError("offsets start at 0")

    @classmethod
    def from_args(cls, args: Any) -> TopicRange:
        """From argparse options ``--from-offset --to-offset --from-time --to-time --partition``."""
        def when(name: str) -> int | None:
            value = getattr(args, name, None)
            return None if value is None else parse_time(value)

        return cls(getattr(args, "from_offset", None), getattr(args, "to_offset", None),
                   when("from_time"), when("to_time"), getattr(args, "partition", None))


def record_of(topic: str, partition: int, offset: int, timestamp: int | None,
              key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """The export record of one message (see the module docstring)."""
    rec: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset,
                           "timestamp": timestamp}
    if key is None:
        rec["key"] = None
    else:
        try:
            rec["key"] = key.decode("utf-8")
        except UnicodeDecodeError:
            rec["key_b64"] = base64.b64encode(key).decode()
    if value is None:
        rec["value"] = None
    else:
        try:
            rec["value"] = orjson.loads(value)
        except orjson.JSONDecodeError:
            rec["value_b64"] = base64.b64encode(value).decode()
    return rec


def raw_key(rec: dict[str, Any]) -> bytes | None:
    if "key_b64" in rec:
        return base64.b64decode(rec["key_b64"])
    key = rec.get("key")
    return None if key is None else str(key).encode("utf-8")


def raw_value(rec: dict[str, Any]) -> bytes | None:
    """The message bytes of an export record (JSON re-encoded compactly, or the base64 bytes)."""
    if "value_b64" in rec:
        try:
            return base64.b64decode(rec["value_b64"], validate=True)
        except binascii.Error:
            raise RangeError("value_b64 is not base64") from None
    value = rec.get("value")
    return None if value is None else orjson.dumps(value)


def read_export(path: str) -> Iterator[dict[str, Any]]:
    """Export records from a JSONL file; ``RangeError`` names the file, line and reason."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise RangeError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RangeError(f"{path}, line {number}: not valid JSON ({exc})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("topic"), str):
                raise RangeError(f"{path}, line {number}: not an export record "
                                 "(an object with topic, partition, offset, key, value)")
            yield rec


def _consumer(bootstrap: str):
    from confluent_kafka import Consumer

    from stream_app.kafka.security import client_config

    # a throw-away group id that never commits: reading a range leaves no trace in the cluster
    return Consumer(client_config({"bootstrap.servers": bootstrap,
                                   "group.id": f"export-{time.time_ns()}",
                                   "enable.auto.commit": False, "enable.auto.offset.store": False,
                                   "auto.offset.reset": "earliest", "enable.partition.eof": False}))


def partition_count(bootstrap: str, topic: str, timeout_s: float = 15.0) -> int:
    """Partitions of ``topic``; ``RangeError`` if it does not exist."""
    consumer = _consumer(bootstrap)
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    finally:
        consumer.close()
    if meta is None or meta.error is not None or not meta.partitions:
        raise RangeError(f"topic {topic!r} does not exist on {bootstrap}")
    return len(meta.partitions)


def bounds(consumer: Any, topic: str, rng: TopicRange, timeout_s: float = 15.0) -> dict[int, tuple[int, int]]:
    """Per partition, the ``[start, end)`` offsets of the range (clamped to what the log holds)."""
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RangeError(f"topic {topic!r} does not exist")
    parts = sorted(meta.partitions)
    if rng.partition is not None:
        if rng.partition not in parts:
            raise RangeError(f"topic {topic!r} has no partition {rng.partition} "
                             f"(it has {len(parts)})")
        parts = [rng.partition]
    out = {}
    for p in parts:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        start, end = low, high
        if rng.from_offset is not None:
            start = max(low, rng.from_offset)
        if rng.to_offset is not None:
            end = min(high, rng.to_offset)
        for bound_ms, is_start in ((rng.from_ms, True), (rng.to_ms, False)):
            if bound_ms is None:
                continue
            found = consumer.offsets_for_times([TopicPartition(topic, p, bound_ms)],
                                               timeout=timeout_s)[0].offset
            at = high if found < 0 else found  # -1: no message at or after that time
            if is_start:
                start = max(low, at)
            else:
                end = min(high, at)
        out[p] = (start, max(start, end))
    return out


def read_range(bootstrap: str, topic: str, rng: TopicRange = TopicRange(),
               timeout_s: float = 30.0) -> Iterator[dict[str, Any]]:
    """Export records of a topic range, partition by partition in offset order. Reads by
    assignment (no consumer group membership, no committed offsets)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(bootstrap)
    try:
        ranges = {p: se for p, se in bounds(consumer, topic, rng).items() if se[1] > se[0]}
        if not ranges:
            return
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items()])
        position = {p: start for p, (start, _) in ranges.items()}
        idle_deadline = time.monotonic() + timeout_s
        while any(position[p] < end for p, (_, end) in ranges.items()):
            batch = consumer.consume(500, 0.5)
            if not batch and time.monotonic() > idle_deadline:
                missing = {p: (position[p], end) for p, (_, end) in ranges.items() if position[p] < end}
                raise RangeError(f"{topic}: no messages for {timeout_s:.0f} s; still missing "
                                 f"offsets {missing} (compacted away, or the broker is gone)")
            for msg in batch:
                if msg.error() is not None:
                    continue
                p, off = msg.partition(), msg.offset()
                end = ranges[p][1]
                if off >= end:
                    position[p] = end
                    continue
                position[p] = off + 1
                idle_deadline = time.monotonic() + timeout_s
                yield record_of(msg.topic(), p, off, msg.timestamp()[1], msg.key(), msg.value())
            # compacted topics and transaction markers leave gaps: a partition whose consumer
            # position has passed the end is done even if the last offsets were never delivered
            for p, (_, end) in ranges.items():
                if position[p] < end:
                    pos = consumer.position([TopicPartition(topic, p)])[0].offset
                    if pos >= end:
                        position[p] = end
    finally:
        consumer.close()
