"""The Faust worker: short loops of decode -> load state -> call the core -> store -> send.

Tables (RocksDB through rocksdict, changelog-backed, so a restarted or rebalanced worker
recovers them): ``arms`` (customer id -> packed Beta evidence) and ``pending`` (decision id ->
the decision an outcome will be joined to). The input topics are co-partitioned by customer id,
so a customer's requests, outcomes and state meet on one worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import orjson
import structlog

from stream_app.core.arms import Arms
from stream_app.core.decision import Decider
from stream_app.deadletter import dead_letter
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import Settings
from stream_app.worker.config_feed import ConfigFeed

log = structlog.get_logger("stream_app.worker")


def _now_ms() -> int:
    return int(time.time() * 1000)


def build_app(settings: Settings) -> faust.App:
    contract = Contract.load(max_bytes=settings.max_message_bytes)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=2,
        broker_commit_every=500,
        broker_commit_interval=1.0,
        table_cleanup_interval=60.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    requests, outcomes, interactions = topic("decision-requests"), topic("outcomes"), topic("interactions")
    decisions, deltas, dead = topic("decisions"), topic("delta-metrics"), topic("dead-letter")

    arms_table = app.Table("arms", default=None, partitions=settings.partitions,
                           key_type=bytes, value_type=bytes)
    pending_table = app.Table("pending", default=None, partitions=settings.partitions,
                              key_type=bytes, value_type=bytes)

    feed = ConfigFeed(settings.bootstrap_servers, settings.topic("engine-config"),
                      settings.topic("dead-letter"), contract)
    state: dict[str, Any] = {"decider": None}
    feed.on_change.append(lambda cfg: state.__setitem__("decider", Decider(cfg, settings.seed)))

    async def reject(reason: str, source_topic: str, partition: int, offset: int,
                     timestamp: float | int | None, key: bytes | None, value: bytes | None) -> None:
        ts = int(timestamp * 1000) if isinstance(timestamp, float) else timestamp
        letter = dead_letter(reason, topic=source_topic, partition=partition, offset=offset,
                             timestamp=ts, key=key, value=value, failed_at=_now_ms())
        log.warning("dead_letter", reason=letter["reason"], topic=source_topic, offset=offset)
        await dead.send(key=key, value=orjson.dumps(letter))

    async def reject_event(reason: str, event: faust.EventT) -> None:
        m = event.message
        await reject(reason, m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)

    async def config_loaded() -> None:
        while not feed.loaded.is_set():
            await asyncio.sleep(0.02)

    def decode(name: str, event: faust.EventT) -> dict[str, Any]:
        msg = contract.decode(name, event.message.value)
        key = event.message.key
        if key is None or key.decode("utf-8", "replace") != msg["customer_id"]:
            raise InvalidMessage("message key must be the customer_id (co-partitioning)")
        return msg

    @app.on_before_shutdown.connect
    def stop_feed(app: faust.App, **kwargs: Any) -> None:
        feed.stop()

    feed.start()

    @app.agent(requests)
    async def answer(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            try:
                request = decode("decision-requests", event)
            except InvalidMessage as exc:
                await reject_event(str(exc), event)
                continue
            await config_loaded()
            decider: Decider | None = state["decider"]
            if decider is None:
                await reject_event("no engine config in force: publish one to engine-config", event)
                continue
            cid = request["customer_id"].encode()
            decided = decider.decide(request, Arms.decode(arms_table.get(cid)))
            if decided.pending is not None:
                pending_table[decided.pending["decision_id"].encode()] = orjson.dumps(decided.pending)
            decision = decided.decision
            decision["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
            await decisions.send(key=cid, value=orjson.dumps(decision))

    @app.agent(outcomes)
    async def learn(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                outcome = decode("outcomes", event)
            except InvalidMessage as exc:
                await reject_event(str(exc), event)
                continue
            await config_loaded()
            decider = state["decider"]
            raw_pending = pending_table.get(outcome["decision_id"].encode())
            if raw_pending is None:
                await reject_event(f"unknown decision_id {outcome['decision_id']!r}", event)
                continue
            pending = orjson.loads(raw_pending)
            if pending["customer_id"] != outcome["customer_id"]:
                await reject_event("outcome customer_id differs from its decision's", event)
                continue
            if pending["resolved"]:
                log.info("outcome_duplicate", decision_id=pending["decision_id"],
                         outcome_id=outcome["outcome_id"])
                continue
            cid = outcome["customer_id"].encode()
            learned = decider.learn(Arms.decode(arms_table.get(cid)), pending, outcome)
            arms_table[cid] = learned.arms.encode()
            pending_table[outcome["decision_id"].encode()] = orjson.dumps(learned.pending)
            await deltas.send(key=cid, value=orjson.dumps(learned.delta))

    @app.agent(interactions)
    async def observe(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                decode("interactions", event)
            except InvalidMessage as exc:
                await reject_event(str(exc), event)

    return app


def run_worker(settings: Settings) -> None:
    """Run the worker in this process until SIGINT / SIGTERM."""
    from stream_app.kafka.topics import create_topics

    create_topics(settings)
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
