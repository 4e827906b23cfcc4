"""Every worker reads the whole compacted ``engine-config`` topic (no consumer group), so every
worker sees the same configuration version. A configuration that does not validate is rejected
with a dead letter and the last good one stays in force.

The feed runs in a daemon thread with its own consumer, independent of the Faust event loop:
swapping the ``current`` reference is atomic, and agents wait on ``loaded`` (set once the topic
was read to its end at start-up) before their first decision.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import orjson
import structlog

from stream_app.core.catalogue import ConfigError, EngineConfig, parse_config
from stream_app.deadletter import dead_letter
from stream_app.schemas import Contract, InvalidMessage

log = structlog.get_logger("stream_app.config")


class ConfigFeed:
    def __init__(self, bootstrap: str, topic: str, dead_letter_topic: str, contract: Contract) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.contract = contract
        self.current: EngineConfig | None = None
        self.loaded = threading.Event()
        self.on_change: list[Callable[[EngineConfig], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def apply(self, raw: bytes | None) -> EngineConfig:
        """Parse and validate one config message; raises InvalidMessage with the reason."""
        doc = self.contract.decode("engine-config", raw)
        try:
            config = parse_config(doc)
            for callback in self.on_change:
                callback(config)
        except ConfigError as exc:
            raise InvalidMessage(f"config rejected: {exc}") from None
        self.current = config
        log.info("config_applied", version=config.version, offers=len(config.offers))
        return config

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="config-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": "stream-app-config-feed",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })
        producer = Producer({"bootstrap.servers": self.bootstrap})
        try:
            while not self._stop.is_set():
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                if meta is not None and meta.partitions and meta.error is None:
                    break
                time.sleep(0.5)
            parts = sorted(meta.partitions)
            end = {}
            tps = []
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                end[p] = high
                tps.append(TopicPartition(self.topic, p, low))
            consumer.assign(tps)
            position = {p: tp.offset for p, tp in zip(parts, tps)}
            if all(position[p] >= end[p] for p in parts):
                self.loaded.set()
            while not self._stop.is_set():
                for msg in consumer.consume(100, 0.5):
                    if msg.error() is not None:
                        continue
                    position[msg.partition()] = msg.offset() + 1
                    try:
                        self.apply(msg.value())
                    except InvalidMessage as exc:
                        kept = self.current.version if self.current else None
                        log.error("config_rejected", reason=str(exc), offset=msg.offset(), kept=kept)
                        letter = dead_letter(
                            str(exc), topic=msg.topic(), partition=msg.partition(),
                            offset=msg.offset(), timestamp=msg.timestamp()[1], key=msg.key(),
                            value=msg.value(), failed_at=int(time.time() * 1000))
                        producer.produce(self.dead_letter_topic, key=msg.key(), value=orjson.dumps(letter))
                        producer.poll(0)
                if not self.loaded.is_set() and all(position[p] >= end[p] for p in parts):
                    self.loaded.set()
        except Exception:  # noqa: BLE001 - logged; the worker keeps the last good config
            log.exception("config_feed_failed")
        finally:
            producer.flush(5)
            consumer.close()
