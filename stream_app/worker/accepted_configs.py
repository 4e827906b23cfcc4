"""The engine configurations a worker accepted: the last good one survives any restart.

``engine-config`` is compacted under one key, so compaction may leave a bad configuration as the
only record: a worker that restarted from that topic alone would have none. So every accepted
configuration is kept twice:

- **locally** (``LocalConfigState``: ``<data dir>/engine-config.json``, written atomically): the
  last good configuration and the position up to which ``engine-config`` was judged, so a restart
  starts with a configuration in force and does not dead-letter a bad one again;
- **fleet-wide** on the compacted ``accepted-configs`` topic (``AcceptedConfig``, key: the
  version): a worker without local state (a new machine) starts from the accepted configuration
  of the highest ``seq``.

``seq`` is the configuration's offset on ``engine-config``: configurations are ordered by when
they were published, and ``history`` lists them in that order. A rollback (``stream-app config
rollback``) publishes an earlier accepted configuration again, unchanged, as a new event on
``engine-config`` (audited like any change).

>>> history = [AcceptedConfig(3, "v1", {"version": "v1"}, 10), AcceptedConfig(9, "v2",
...            {"version": "v2"}, 20), AcceptedConfig(12, "v3", {"version": "v3"}, 30)]
>>> rollback_target(history).version, rollback_target(history, to="v1").version
('v2', 'v1')
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

__all__ = ["AcceptedConfig", "LocalConfigState", "RollbackError", "latest", "read_accepted",
           "rollback_target"]

log = structlog.get_logger("stream_app.config")


class RollbackError(ValueError):
    """No configuration to roll back to; the message says why."""


@dataclass(frozen=True, slots=True)
class AcceptedConfig:
    """One accepted configuration: ``seq`` (its offset on ``engine-config``), its ``version``,
    the document itself and when it was accepted (wall clock, epoch ms)."""

    seq: int
    version: str
    config: dict[str, Any]
    accepted_at: int

    def to_record(self) -> bytes:
        """The ``accepted-configs`` message (schema ``accepted-configs.v1.json``)."""
        return orjson.dumps({"schema_version": 1, "seq": self.seq, "version": self.version,
                             "accepted_at": self.accepted_at, "config": self.config})

    @classmethod
    def from_record(cls, raw: bytes) -> AcceptedConfig:
        """Read an ``accepted-configs`` message; ``ValueError`` when it is not one."""
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise ValueError("not an accepted-configs record")
        seq, version, at = doc.get("seq"), doc.get("version"), doc.get("accepted_at")
        if not isinstance(seq, int) or not isinstance(version, str) or not isinstance(at, int):
            raise ValueError("an accepted-configs record needs seq, version and accepted_at")
        return cls(seq, version, doc["config"], at)


def latest(history: Iterable[AcceptedConfig]) -> AcceptedConfig | None:
    """The accepted configuration published last (highest ``seq``)."""
    return max(history, key=lambda a: a.seq, default=None)


def rollback_target(history: Sequence[AcceptedConfig], to: str | None = None) -> AcceptedConfig:
    """What a rollback publishes: the accepted configuration ``to`` (its latest acceptance), or
    by default the last one accepted before the configuration in force whose version differs."""
    ordered = sorted(history, key=lambda a: a.seq)
    if not ordered:
        raise RollbackError("no accepted configuration yet: nothing to roll back to")
    current = ordered[-1]
    if to is not None:
        named = [a for a in ordered if a.version == to]
        if not named:
            known = ", ".join(dict.fromkeys(a.version for a in reversed(ordered)))
            raise RollbackError(f"version {to!r} was never accepted (accepted: {known})")
        return named[-1]
    earlier = [a for a in ordered if a.version != current.version]
    if not earlier:
        raise RollbackError(f"only version {current.version!r} was ever accepted")
    return earlier[-1]


def read_accepted(bootstrap: str, topic: str, timeout_s: float = 15.0) -> list[AcceptedConfig]:
    """Every accepted configuration still on the compacted ``accepted-configs`` topic, ordered
    by ``seq`` (a record that cannot be read is skipped with a warning)."""
    from confluent_kafka import Consumer, TopicPartition

    from stream_app.kafka.security import client_config

    consumer = Consumer(client_config({"bootstrap.servers": bootstrap,
                                       "group.id": f"accepted-{time.time_ns()}",
                                       "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    out: list[AcceptedConfig] = []
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return []
        deadline = time.monotonic() + timeout_s
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            position = low
            while position < high and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    position = msg.offset() + 1
                    if msg.value() is None:
                        continue
                    try:
                        out.append(AcceptedConfig.from_record(msg.value()))
                    except ValueError as exc:
                        log.warning("accepted_config_unreadable", offset=msg.offset(),
                                    error=str(exc))
                # past offsets no record is delivered at (compaction, transaction markers)
                position = max(position, consumer.position([TopicPartition(topic, p)])[0].offset)
    finally:
        consumer.close()
    return sorted(out, key=lambda a: a.seq)


@dataclass
class LocalConfigState:
    """The worker's local copy: the last good configuration and how far ``engine-config`` was
    judged (``position``: the next offset to read). ``load`` ignores a missing or unreadable
    file (the worker then starts from ``accepted-configs``)."""

    path: Path
    position: int = 0
    accepted: AcceptedConfig | None = None

    def load(self) -> LocalConfigState:
        try:
            doc = orjson.loads(self.path.read_bytes())
            self.position = int(doc["position"])
            acc = doc.get("accepted")
            self.accepted = None if acc is None else AcceptedConfig(
                int(acc["seq"]), str(acc["version"]), dict(acc["config"]), int(acc["accepted_at"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("config_state_unreadable", path=str(self.path), error=str(exc))
            self.position, self.accepted = 0, None
        return self

    def save(self) -> None:
        """Write the state atomically (a crash leaves the old file or the new one)."""
        acc = self.accepted
        doc = {"position": self.position, "accepted": None if acc is None else {
            "seq": acc.seq, "version": acc.version, "accepted_at": acc.accepted_at,
            "config": acc.config}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
