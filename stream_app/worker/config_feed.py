"""Every worker reads the whole compacted ``engine-config`` topic (no consumer group), so every
worker has the same configuration version. A configuration that does not validate is rejected
with a dead letter and the last good one stays in force."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import orjson
import structlog

from stream_app.core.catalogue import ConfigError, EngineConfig, parse_config
from stream_app.schemas import Contract, InvalidMessage

log = structlog.get_logger("stream_app.config")

Reject = Callable[[str, object], Awaitable[None]]


class ConfigFeed:
    def __init__(self, bootstrap: str, topic: str, contract: Contract) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.contract = contract
        self.current: EngineConfig | None = None
        self.loaded = asyncio.Event()  # set once the topic was read to its end at start-up
        self.on_change: list[Callable[[EngineConfig], None]] = []

    def apply(self, raw: bytes | None) -> EngineConfig:
        """Parse and validate one config message; raises InvalidMessage with the reason."""
        doc = self.contract.decode("engine-config", raw)
        try:
            config = parse_config(doc)
        except ConfigError as exc:
            raise InvalidMessage(f"config rejected: {exc}") from None
        self.current = config
        for callback in self.on_change:
            callback(config)
        log.info("config_applied", version=config.version, offers=len(config.offers))
        return config

    async def run(self, reject: Reject) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = None
            while not parts:
                parts = consumer.partitions_for_topic(self.topic)
                if not parts:
                    await consumer.force_metadata_update()
                    await asyncio.sleep(0.5)
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            if all(v == 0 for v in end.values()):
                self.loaded.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            self.apply(rec.value)
                        except InvalidMessage as exc:
                            log.error("config_rejected", reason=str(exc), offset=rec.offset,
                                      kept=self.current.version if self.current else None)
                            await reject(str(exc), rec)
                if not self.loaded.is_set():
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= end[tp] for tp in tps):
                        self.loaded.set()
        finally:
            await consumer.stop()


def encode_config(doc: dict) -> bytes:
    return orjson.dumps(doc)
