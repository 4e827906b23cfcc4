"""The Faust worker: short loops of decode -> load state -> call the core -> store -> send.

Tables (RocksDB through rocksdict, changelog-backed, so a restarted or rebalanced worker
recovers them): ``customers`` (customer id -> profile + contact history, ``CustomerState``),
``arms`` (customer id -> packed Beta evidence, plus the partition-local segment and population
arms), ``pending`` (decision id -> the decision an outcome will be joined to), ``seen``
(customer -> the outcome ids already applied) and ``models`` (the partition's population state:
River models, contextual arms, experiment statistics, shadow estimators; checkpointed every
``checkpoint_every`` events of the partition, see ``core/population.py``). The input topics are
co-partitioned by customer id, so a customer's requests, interactions, outcomes and state meet
on one worker.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import faust
import orjson
import structlog

from stream_app.core.arms import Arms
from stream_app.core.customer import CustomerCodecError, CustomerState
from stream_app.core.dedup import DedupWindow
from stream_app.core.feedback import PendingCodecError, PendingDecision
from stream_app.core.decision import Decider, Evidence, Learned, decision_id_for, segment_of
from stream_app.core.population import PopulationState
from stream_app.worker import checkpoints, memory, storage
from stream_app.deadletter import dead_letter
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import Settings
from stream_app.worker.config_feed import ConfigFeed
from stream_app.worker.partition_clock import PartitionClock, pack_pending, unpack_pending

POPULATION_KEY = b"\x00population"  # partition-local population arms
SEGMENT_KEY = b"\x00segment:"  # partition-local segment arms

log = structlog.get_logger("stream_app.worker")


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _now_ms() -> int:
    return int(time.time() * 1000)


def build_app(settings: Settings) -> faust.App:
    contract = Contract.load(max_bytes=settings.max_message_bytes)
    if settings.rocksdb_memory_mb:  # 0: Faust's own RocksDB options (no shared budget)
        storage.configure(settings.rocksdb_memory_mb, settings.bulk_restore_min_records)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=storage.STORE_URL if settings.rocksdb_memory_mb else "rocksdb://",
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
    scores_topic, config_topic = topic("customer-scores"), topic("engine-config")

    arms_table = app.Table("arms", default=None, partitions=settings.partitions,
                           key_type=bytes, value_type=bytes)
    pending_table = app.Table("pending", default=None, partitions=settings.partitions,
                              key_type=bytes, value_type=bytes)
    seen_table = app.Table("seen", default=None, partitions=settings.partitions,
                           key_type=bytes, value_type=bytes)
    customers_table = app.Table("customers", default=None, partitions=settings.partitions,
                                key_type=bytes, value_type=bytes)
    models_table = app.Table("models", default=None, partitions=settings.partitions,
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
        await dead.send(key=key, value=_dumps(letter))

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

    if settings.malloc_arenas:
        @app.timer(interval=60.0)
        async def release_memory() -> None:
            """Hand the pages glibc's malloc holds free back to the system: RocksDB's block cache
            churns once the data outgrows it, and the freed blocks would stay in the worker's
            RSS (measured: +54 MB in 60 s over 1 M customers; ~ms per call)."""
            started = time.perf_counter()
            storage.trim_malloc()
            log.debug("malloc_trimmed", ms=round((time.perf_counter() - started) * 1000, 2))

    if settings.memory_report_s > 0:
        memory_report = memory.MemoryReport(settings.tracemalloc_frames)

        @app.timer(interval=settings.memory_report_s)
        async def report_memory() -> None:
            """What the worker's memory is made of (``worker/memory.py``), for operators."""
            log.info("memory", **memory_report(memory.store_databases(app.tables.values())))

    async def guarded(handler: Any, event: faust.EventT) -> None:
        """An unexpected error costs one message (dead-lettered with the reason), never the agent."""
        try:
            await handler(event)
        except Exception as exc:  # noqa: BLE001
            log.exception("processing_failed", topic=event.message.topic, offset=event.message.offset)
            await reject_event(f"internal error: {type(exc).__name__}: {exc}", event)

    async def accept(name: str, event: faust.EventT) -> tuple[dict[str, Any], Decider] | None:
        """Decode and validate; wait for the config at start-up; dead-letter what cannot be used."""
        try:
            message = decode(name, event)
        except InvalidMessage as exc:
            await reject_event(str(exc), event)
            return None
        await config_loaded()
        decider: Decider | None = state["decider"]
        if decider is None:
            await reject_event("no engine config in force: publish one to engine-config", event)
            return None
        return message, decider

    clocks: dict[int, PartitionClock] = {}

    def clock_for(partition: int) -> PartitionClock:
        clock = clocks.get(partition)
        if clock is None:  # first event of this partition since start / rebalance
            clock = clocks[partition] = PartitionClock()
            unreadable = 0
            for _, raw in pending_table.items():
                try:
                    p, pending = unpack_pending(raw)
                except (PendingCodecError, struct.error):
                    unreadable += 1  # written by an incompatible version: never joined again
                    continue
                if p == partition:
                    clock.schedule(pending)
            if unreadable:
                log.warning("pending_unreadable", partition=partition, count=unreadable)
        return clock

    populations: dict[int, PopulationState] = {}

    def population_for(partition: int) -> PopulationState:
        """The partition's population learners: restored from its checkpoint on the first event
        since start / rebalance (the table reads the current event's partition)."""
        population = populations.get(partition)
        if population is None:
            try:
                population = checkpoints.load(models_table)
            except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint: learn afresh
                log.warning("checkpoint_unreadable", partition=partition, error=str(exc))
                population = None
            if population is None:
                population = PopulationState(seed=settings.seed)
            else:
                log.info("checkpoint_restored", partition=partition,
                         model_version=population.suite.version)
            populations[partition] = population
        return population

    def learned_from(partition: int) -> PopulationState:
        """Count one learning event; checkpoint the partition's population every N of them."""
        population = population_for(partition)
        population.events += 1
        if population.events >= settings.checkpoint_every:
            started = time.perf_counter()
            population.events = 0
            try:
                checkpoints.store(models_table, population)
            except Exception as exc:  # noqa: BLE001 - the event itself was processed: keep it
                # e.g. the changelog topic's metadata not known yet right after start-up; the
                # next checkpoint (another checkpoint_every events) tries again
                log.warning("checkpoint_failed", partition=partition, error=str(exc))
                return population
            log.info("checkpoint_stored", partition=partition,
                     model_version=population.suite.version,
                     ms=round((time.perf_counter() - started) * 1000, 1))
        return population

    def load_customer(customer_id: str) -> CustomerState:
        try:
            return CustomerState.decode(customers_table.get(customer_id.encode()))
        except CustomerCodecError as exc:  # written by an incompatible version: start over
            log.warning("customer_unreadable", customer_id=customer_id, error=str(exc))
            return CustomerState.empty()

    def store_customer(customer_id: str, customer: CustomerState) -> None:
        customers_table[customer_id.encode()] = customer.encode()

    # The partition's segment and population arms are read by every decision and settlement:
    # they are cached in memory (read once from the table per partition since start) and
    # written through to the table whenever they change, so the table stays exact.
    pooled: dict[int, dict[bytes, Arms]] = {}

    def pooled_arms(partition: int, key: bytes) -> Arms:
        rows = pooled.setdefault(partition, {})
        arms = rows.get(key)
        if arms is None:
            arms = rows[key] = Arms.decode(arms_table.get(key))
        return arms

    def load_evidence(partition: int, customer_id: str, segment: str) -> Evidence:
        return Evidence(Arms.decode(arms_table.get(customer_id.encode())),
                        pooled_arms(partition, SEGMENT_KEY + segment.encode()),
                        pooled_arms(partition, POPULATION_KEY))

    def store_evidence(partition: int, customer_id: str, segment: str, evidence: Evidence) -> None:
        arms_table[customer_id.encode()] = evidence.customer.encode()
        rows = pooled.setdefault(partition, {})
        for key, arms in ((SEGMENT_KEY + segment.encode(), evidence.segment),
                          (POPULATION_KEY, evidence.population)):
            rows[key] = arms
            arms_table[key] = arms.encode()

    async def publish(clock: PartitionClock, records: tuple[dict, ...] | list[dict]) -> None:
        for record in records:
            if record.get("kind") == "outcome":
                clock.rollups.add(record)
                await deltas.send(key=record["customer_id"].encode(), value=_dumps(record))
            else:  # drift and other population-level records
                await deltas.send(key=record["kind"].encode(), value=_dumps(record))

    def keep(partition: int, clock: PartitionClock, pending: PendingDecision) -> None:
        """Store a pending decision and set its timer (expiry while open, forgetting once settled)."""
        pending_table[pending.decision_id.encode()] = pack_pending(partition, pending)
        clock.schedule(pending)

    async def settle(partition: int, clock: PartitionClock, learned: Learned) -> None:
        """Store what an outcome or an expired window taught, keep the decision, publish deltas."""
        store_evidence(partition, learned.pending.customer_id, learned.pending.segment,
                       learned.evidence)
        store_customer(learned.pending.customer_id, learned.customer)
        keep(partition, clock, learned.pending)
        await publish(clock, learned.records)
        learned_from(partition)

    async def advance(partition: int, ts: int, decider: Decider) -> PartitionClock:
        """Move the partition's event time: fire due attribution timers, close roll-up windows."""
        clock = clock_for(partition)
        for decision_id in clock.timers.advance(ts):
            key = decision_id.encode()
            raw = pending_table.get(key)
            if raw is None:
                continue
            _, pending = unpack_pending(raw)
            if pending.is_settled:  # grace period over: late outcomes are no longer recognised
                del pending_table[key]
                continue
            await settle(partition, clock, decider.expire(
                load_evidence(partition, pending.customer_id, pending.segment),
                load_customer(pending.customer_id), pending, population_for(partition)))
        closed = clock.rollups.flush(clock.timers.watermark_ms)
        for rollup in closed:
            await deltas.send(key=b"rollup", value=_dumps(rollup))
        if closed:  # a roll-up window closed: publish the partition's in-stream statistics
            await publish_snapshots(partition, clock.timers.watermark_ms, decider)
        return clock

    async def publish_snapshots(partition: int, ts: int, decider: Decider) -> None:
        records, due = decider.snapshots(population_for(partition), ts, partition)
        for record in records:
            await deltas.send(key=record["kind"].encode(), value=_dumps(record))
        for key in due:  # automatic promotion: a config change like any other, audited
            doc = decider.promoted_config(key)
            log.info("challenger_promoted", challenger=key, version=doc["version"])
            await config_topic.send(key=b"engine", value=_dumps(doc))

    async def handle_answer(event: faust.EventT) -> None:
        started = time.perf_counter()
        accepted = await accept("decision-requests", event)
        if accepted is None:
            return
        request, decider = accepted
        partition = event.message.partition
        clock = await advance(partition, request["ts"], decider)
        if pending_table.get(decision_id_for(request["request_id"]).encode()) is not None:
            log.info("request_duplicate", request_id=request["request_id"])
            return
        cid = request["customer_id"]
        customer = load_customer(cid)
        segment = segment_of(request, customer.profile.segment)
        decided = decider.decide(request, customer, load_evidence(partition, cid, segment),
                                 population_for(partition))
        if decided.pending is not None:
            keep(partition, clock, decided.pending)
            store_customer(cid, decided.customer)
        decision = decided.decision
        decision["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        await decisions.send(key=request["customer_id"].encode(), value=_dumps(decision))

    @app.agent(requests)
    async def answer(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await guarded(handle_answer, event)

    async def handle_learn(event: faust.EventT) -> None:
        accepted = await accept("outcomes", event)
        if accepted is None:
            return
        outcome, decider = accepted
        clock = await advance(event.message.partition, outcome["ts"], decider)
        cid = outcome["customer_id"]
        seen_key = b"o:" + cid.encode()
        seen = DedupWindow.decode(seen_table.get(seen_key))
        if seen.seen_before(outcome["outcome_id"]):
            log.info("outcome_duplicate", outcome_id=outcome["outcome_id"])
            return
        raw = pending_table.get(outcome["decision_id"].encode())
        if raw is None:
            await reject_event(f"unknown decision_id {outcome['decision_id']!r} "
                               "(never made here, or forgotten after its grace period)", event)
            return
        partition, pending = unpack_pending(raw)
        if pending.customer_id != cid:
            await reject_event("outcome customer_id differs from its decision's", event)
            return
        seen.remember(outcome["outcome_id"])
        seen_table[seen_key] = seen.encode()
        await settle(partition, clock, decider.learn(
            load_evidence(partition, cid, pending.segment), load_customer(cid), pending, outcome,
            population_for(partition)))

    @app.agent(outcomes)
    async def learn(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await guarded(handle_learn, event)

    async def handle_observe(event: faust.EventT) -> None:
        accepted = await accept("interactions", event)
        if accepted is None:
            return
        interaction, decider = accepted
        partition = event.message.partition
        await advance(partition, interaction["ts"], decider)
        cid = interaction["customer_id"]
        try:
            observed = decider.observe(load_customer(cid), interaction, population_for(partition))
        except ValueError as exc:  # an interaction the profile cannot take (e.g. a bad amount)
            await reject_event(f"interaction rejected: {exc}", event)
            return
        store_customer(cid, observed.customer)
        learned_from(partition)
        for record in observed.records:
            await deltas.send(key=record["kind"].encode(), value=_dumps(record))
        if observed.scores is not None:
            await scores_topic.send(key=cid.encode(), value=_dumps(observed.scores))

    @app.agent(interactions)
    async def observe(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await guarded(handle_observe, event)

    return app


def create_changelog_topics(settings: Settings, app: faust.App, timeout_s: float = 30.0) -> None:
    """Create the tables' changelog topics (compacted, co-partitioned) before the worker starts.

    Left to Faust, they are created during start-up, and Faust's co-partitioning check (made
    once per table and source topic, at the table's first write) reads the consumer's metadata
    snapshot, which in benchmark runs still said 0 partitions for ``models-changelog`` minutes
    later: the first checkpoints failed with ``PartitionsMismatch``. Created here, the topics
    exist before the consumer's first snapshot."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [NewTopic(name, num_partitions=settings.partitions, replication_factor=1,
                    config={"cleanup.policy": "compact"})
           for name in sorted(t.changelog_topic.get_topic_name() for t in app.tables.values())
           if name not in existing]
    for name, fut in (admin.create_topics(new, operation_timeout=timeout_s).items() if new else ()):
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def run_worker(settings: Settings) -> None:
    """Run the worker in this process until SIGINT / SIGTERM, on uvloop where installed (a
    dependency on POSIX; Faust does not select it by itself)."""
    import mode.loop

    from stream_app.kafka.topics import create_topics

    if settings.malloc_arenas:  # before any thread of RocksDB, librdkafka or the config feed
        storage.limit_malloc_arenas(settings.malloc_arenas)
    try:
        mode.loop.use("uvloop")  # sets the event loop policy: before the app creates its loop
    except ImportError:
        log.info("uvloop_unavailable")

    create_topics(settings)
    app = build_app(settings)
    create_changelog_topics(settings, app)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it sees every record: each
    # debug call of Faust and aiokafka (several per message sent) then builds a LogRecord that
    # the handler drops. Without the spinner the root logger keeps the configured level.
    worker.spinner = None
    worker.execute_from_commandline()
