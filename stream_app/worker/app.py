"""The Faust worker: short loops of decode -> load state -> call the core -> store -> send.

Tables (RocksDB through rocksdict, changelog-backed, so a restarted or rebalanced worker
recovers them): ``customers`` (customer id -> profile + contact history, ``CustomerState``),
``arms`` (customer id -> packed Beta evidence, plus the partition-local segment and population
arms), ``pending`` (decision id -> the decision an outcome will be joined to), ``seen``
(customer -> the outcome ids already applied) and ``models`` (the partition's population state:
River models, contextual arms, experiment statistics, shadow estimators; checkpointed every
``checkpoint_every`` events of the partition, at most once every ``checkpoint_min_interval_s``,
see ``core/population.py``). The input topics are
co-partitioned by customer id, so a customer's requests, interactions, outcomes and state meet
on one worker.
"""

from __future__ import annotations

import asyncio
import gc
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
from stream_app.policies import beta_max
from stream_app.worker import checkpoints, collector, fetching, memory, seeking, storage
from stream_app.worker.output import Output
from stream_app.worker.tables import Tables, faust_tables
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
    fetching.install(settings.fetch_max_wait_ms)  # before Faust creates its consumer
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

    faust_table = {name: app.Table(name, default=None, partitions=settings.partitions,
                                   key_type=bytes, value_type=bytes)
                   for name in ("arms", "pending", "seen", "customers", "models")}
    changelogs = faust_tables(faust_table)
    # everything the worker writes goes through librdkafka (two lanes: decisions, the rest), and
    # table writes are grouped per event-loop tick (``worker/tables.py``, ``worker/output.py``)
    decisions, deltas = settings.topic("decisions"), settings.topic("delta-metrics")
    output = Output(settings.bootstrap_servers, linger_ms=settings.decision_linger_ms,
                    bulk_linger_ms=settings.output_linger_ms, urgent_topics=frozenset({decisions}),
                    tracked_topics=frozenset(topic for topic, _ in changelogs.values()))
    tables = Tables(changelogs, output)
    dead, scores_topic = settings.topic("dead-letter"), settings.topic("customer-scores")
    config_topic = settings.topic("engine-config")

    feed = ConfigFeed(settings.bootstrap_servers, settings.topic("engine-config"),
                      settings.topic("dead-letter"), contract)
    state: dict[str, Any] = {"decider": None}
    feed.on_change.append(lambda cfg: state.__setitem__("decider", Decider(cfg, settings.seed)))

    def reject_event(reason: str, event: faust.EventT) -> None:
        m = event.message
        ts = int(m.timestamp * 1000) if isinstance(m.timestamp, float) else m.timestamp
        letter = dead_letter(reason, topic=m.topic, partition=m.partition, offset=m.offset,
                             timestamp=ts, key=m.key, value=m.value, failed_at=_now_ms())
        log.warning("dead_letter", reason=letter["reason"], topic=m.topic, offset=m.offset)
        output.send(dead, m.key, _dumps(letter))

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

    # Faust flushes its producer before it commits input offsets, before a rebalance revokes
    # partitions and when it stops: ours (the tables' held writes, then every message produced)
    # is flushed first, so no offset is committed before the state and the outputs of the
    # messages it covers are acknowledged (at least once).
    faust_producer = app.producer
    faust_flush = faust_producer.flush

    async def write_out() -> None:
        """The tables' held writes to their stores and changelogs, everything produced
        acknowledged, and the stores' changelog offsets moved to what was acknowledged: a
        recovery after this (the next rebalance, a restart) reads nothing this worker wrote.
        Without the last step, a worker that kept a partition across a rebalance had to read
        its own hand-over checkpoint back from the changelog, a read Faust could lose (a fetch
        returning while the flow is stopped is dropped: ``worker/seeking.py``)."""
        tables.flush()
        await output.flush()
        tables.persist_acked()

    async def flush_before_commit() -> None:
        await write_out()
        await faust_flush()

    faust_producer.flush = flush_before_commit  # type: ignore[method-assign]

    flush_due = [False]

    def flush_tick() -> None:
        flush_due[0] = False
        tables.flush()
        output.poll()

    def flush_soon() -> None:
        """Write the tables once the event loop has run what is ready (one flush per tick: the
        events processed meanwhile share it)."""
        if not flush_due[0]:
            flush_due[0] = True
            asyncio.get_running_loop().call_soon(flush_tick)

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

    pauses = collector.Pauses(on_long_pause=lambda generation, ms: log.warning(
        "gc_pause", generation=generation, ms=round(ms, 1)))
    pauses.install()

    @app.timer(interval=60.0)
    async def report_gc() -> None:
        """What Python's garbage collector cost the event loop in the last minute
        (``worker/collector.py``): a cost no profile of the handlers shows."""
        log.info("gc", **pauses.report())

    if settings.memory_report_s > 0:
        memory_report = memory.MemoryReport(settings.tracemalloc_frames)

        @app.timer(interval=settings.memory_report_s)
        async def report_memory() -> None:
            """What the worker's memory is made of (``worker/memory.py``), for operators."""
            log.info("memory", **memory_report(memory.store_databases(app.tables.values())))

    async def guarded(handler: Any, event: faust.EventT) -> None:
        """An unexpected error costs one message (dead-lettered with the reason), never the agent."""
        if not feed.loaded.is_set():
            await config_loaded()
        try:
            handler(event)
        except Exception as exc:  # noqa: BLE001
            log.exception("processing_failed", topic=event.message.topic, offset=event.message.offset)
            reject_event(f"internal error: {type(exc).__name__}: {exc}", event)
        flush_soon()

    def accept(name: str, event: faust.EventT) -> tuple[dict[str, Any], Decider] | None:
        """Decode and validate (the config has loaded); dead-letter what cannot be used."""
        try:
            message = decode(name, event)
        except InvalidMessage as exc:
            reject_event(str(exc), event)
            return None
        decider: Decider | None = state["decider"]
        if decider is None:
            reject_event("no engine config in force: publish one to engine-config", event)
            return None
        return message, decider

    clocks: dict[int, PartitionClock] = {}

    def clock_for(partition: int) -> PartitionClock:
        clock = clocks.get(partition)
        if clock is None:  # first event of this partition since start / rebalance
            clock = clocks[partition] = PartitionClock()
            unreadable = 0
            for _, raw in tables.items("pending", partition):
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
    schedule = checkpoints.Schedule(settings.checkpoint_every, settings.checkpoint_min_interval_s)

    def population_for(partition: int) -> PopulationState:
        """The partition's population learners: restored from its checkpoint on the first event
        since start / rebalance (the table reads the current event's partition)."""
        population = populations.get(partition)
        if population is None:
            try:
                population = checkpoints.load(tables.partition("models", partition))
            except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint: learn afresh
                log.warning("checkpoint_unreadable", partition=partition, error=str(exc))
                population = None
            if population is None:
                population = PopulationState(seed=settings.seed)
            else:
                log.info("checkpoint_restored", partition=partition,
                         model_version=population.suite.version)
                if settings.gc_freeze:  # long-lived: no collection needs to walk them again
                    gc.freeze()
            populations[partition] = population
            schedule.loaded(partition)
        return population

    def learned_from(partition: int) -> PopulationState:
        """Count one learning event; checkpoint the partition's population every
        ``checkpoint_every`` of them, but not more often than every ``checkpoint_min_interval_s``."""
        population = population_for(partition)
        if schedule.count(partition):
            started = time.perf_counter()
            stored = checkpoint_now([partition])
            if stored:
                log.info("checkpoint_stored", partition=partition,
                         model_version=stored[str(partition)],
                         ms=round((time.perf_counter() - started) * 1000, 1))
        return population

    def checkpoint_now(parts: Any) -> dict[str, str]:
        """Checkpoint the population state of the partitions this worker has in memory (decisions
        change it too: experiment exposures); returns partition -> the model version stored."""
        stored: dict[str, str] = {}
        for partition in parts:
            population = populations.get(partition)
            if population is None:
                continue
            try:
                checkpoints.store(tables.partition("models", partition), population)
            except Exception as exc:  # noqa: BLE001 - the event itself was processed: keep it
                # e.g. the changelog topic's metadata not known yet right after start-up; the
                # last checkpoint stands, the next one (schedule, hand-over, stop) tries again
                log.warning("checkpoint_failed", partition=partition, error=str(exc))
                continue
            schedule.stored(partition)
            stored[str(partition)] = population.suite.version
        return stored

    def load_customer(partition: int, customer_id: str) -> CustomerState:
        try:
            return CustomerState.decode(tables.get("customers", partition, customer_id.encode()))
        except CustomerCodecError as exc:  # written by an incompatible version: start over
            log.warning("customer_unreadable", customer_id=customer_id, error=str(exc))
            return CustomerState.empty()

    def store_customer(partition: int, customer_id: str, customer: CustomerState) -> None:
        tables.set("customers", partition, customer_id.encode(), customer.encode())

    # The partition's segment and population arms are read by every decision and settlement:
    # they are cached in memory (read once from the table per partition since start) and
    # written through to the table whenever they change, so the table stays exact.
    pooled: dict[int, dict[bytes, Arms]] = {}

    def pooled_arms(partition: int, key: bytes) -> Arms:
        rows = pooled.setdefault(partition, {})
        arms = rows.get(key)
        if arms is None:
            arms = rows[key] = Arms.decode(tables.get("arms", partition, key))
        return arms

    def load_evidence(partition: int, customer_id: str, segment: str) -> Evidence:
        return Evidence(Arms.decode(tables.get("arms", partition, customer_id.encode())),
                        pooled_arms(partition, SEGMENT_KEY + segment.encode()),
                        pooled_arms(partition, POPULATION_KEY))

    def store_evidence(partition: int, customer_id: str, segment: str, evidence: Evidence) -> None:
        tables.set("arms", partition, customer_id.encode(), evidence.customer.encode())
        rows = pooled.setdefault(partition, {})
        for key, arms in ((SEGMENT_KEY + segment.encode(), evidence.segment),
                          (POPULATION_KEY, evidence.population)):
            rows[key] = arms
            tables.set("arms", partition, key, arms.encode())

    def publish(clock: PartitionClock, records: tuple[dict, ...] | list[dict]) -> None:
        for record in records:
            if record.get("kind") == "outcome":
                clock.rollups.add(record)
                output.send(deltas, record["customer_id"].encode(), _dumps(record))
            else:  # drift and other population-level records
                output.send(deltas, record["kind"].encode(), _dumps(record))

    def keep(partition: int, clock: PartitionClock, pending: PendingDecision) -> None:
        """Store a pending decision and set its timer (expiry while open, forgetting once settled)."""
        tables.set("pending", partition, pending.decision_id.encode(), pack_pending(partition, pending))
        clock.schedule(pending)

    def settle(partition: int, clock: PartitionClock, learned: Learned) -> None:
        """Store what an outcome or an expired window taught, keep the decision, publish deltas."""
        store_evidence(partition, learned.pending.customer_id, learned.pending.segment,
                       learned.evidence)
        store_customer(partition, learned.pending.customer_id, learned.customer)
        keep(partition, clock, learned.pending)
        publish(clock, learned.records)
        learned_from(partition)

    def advance(partition: int, ts: int, decider: Decider) -> PartitionClock:
        """Move the partition's event time: fire due attribution timers, close roll-up windows."""
        clock = clock_for(partition)
        for decision_id in clock.timers.advance(ts):
            key = decision_id.encode()
            raw = tables.get("pending", partition, key)
            if raw is None:
                continue
            _, pending = unpack_pending(raw)
            if pending.is_settled:  # grace period over: late outcomes are no longer recognised
                tables.delete("pending", partition, key)
                continue
            settle(partition, clock, decider.expire(
                load_evidence(partition, pending.customer_id, pending.segment),
                load_customer(partition, pending.customer_id), pending, population_for(partition)))
        closed = clock.rollups.flush(clock.timers.watermark_ms)
        for rollup in closed:
            output.send(deltas, b"rollup", _dumps(rollup))
        if closed:  # a roll-up window closed: publish the partition's in-stream statistics
            publish_snapshots(partition, clock.timers.watermark_ms, decider)
        return clock

    def publish_snapshots(partition: int, ts: int, decider: Decider) -> None:
        records, due = decider.snapshots(population_for(partition), ts, partition)
        for record in records:
            output.send(deltas, record["kind"].encode(), _dumps(record))
        for key in due:  # automatic promotion: a config change like any other, audited
            doc = decider.promoted_config(key)
            log.info("challenger_promoted", challenger=key, version=doc["version"])
            output.send(config_topic, b"engine", _dumps(doc))

    def handle_answer(event: faust.EventT) -> None:
        started = time.perf_counter()
        accepted = accept("decision-requests", event)
        if accepted is None:
            return
        request, decider = accepted
        partition = event.message.partition
        clock = advance(partition, request["ts"], decider)
        if tables.get("pending", partition,
                      decision_id_for(request["request_id"]).encode()) is not None:
            log.info("request_duplicate", request_id=request["request_id"])
            return
        cid = request["customer_id"]
        customer = load_customer(partition, cid)
        segment = segment_of(request, customer.profile.segment)
        decided = decider.decide(request, customer, load_evidence(partition, cid, segment),
                                 population_for(partition))
        if decided.pending is not None:
            keep(partition, clock, decided.pending)
            store_customer(partition, cid, decided.customer)
        decision = decided.decision
        decision["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        output.send(decisions, cid.encode(), _dumps(decision))

    inputs = {requests.get_topic_name(), outcomes.get_topic_name(), interactions.get_topic_name()}

    # After a rebalance, and after dropping records fetched while the flow was stopped, Faust
    # seeks only the committed input partitions back: the others are sought back too
    # (``worker/seeking.py``), or their dropped records would never be processed or recovered.
    consumer = app.consumer
    consumer.perform_seek = seeking.seek_back(  # type: ignore[method-assign]
        consumer, inputs, app.tables, log)

    @app.on_partitions_assigned.connect
    async def assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        log.info("partitions_assigned",
                 partitions=sorted({tp.partition for tp in assigned if tp.topic in inputs}))

    @app.on_partitions_revoked.connect
    async def hand_over(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        """Partitions leave this worker: checkpoint their population state (so the next owner
        resumes from what was learned here, not from the last periodic checkpoint), write it out
        and forget their in-memory state (a partition that comes back is read afresh)."""
        parts = sorted({tp.partition for tp in revoked if tp.topic in inputs})
        handed = checkpoint_now(parts)
        for partition in parts:
            populations.pop(partition, None)
            clocks.pop(partition, None)
            pooled.pop(partition, None)
            schedule.forget(partition)
        await write_out()
        if parts:
            log.info("partitions_revoked", partitions=parts, checkpointed=handed)

    # At a clean stop Faust waits for the streams to be empty, then stops the tables (closing
    # their stores) and only then sends ``on_before_shutdown``: the last checkpoint is written
    # in between, so a restart does not forget what was learned since the periodic one.
    table_manager = app.tables
    stop_tables = table_manager.stop

    async def checkpoint_then_stop_tables() -> None:
        try:
            if populations:  # Faust stops the tables twice: the first time counts
                stored = checkpoint_now(sorted(populations))
                populations.clear()
                await write_out()
                log.info("checkpointed_at_shutdown", checkpointed=stored)
        finally:  # the stores are closed whatever happened to the checkpoint
            await stop_tables()

    table_manager.stop = checkpoint_then_stop_tables  # type: ignore[method-assign]

    @app.agent(requests)
    async def answer(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await guarded(handle_answer, event)

    def handle_learn(event: faust.EventT) -> None:
        accepted = accept("outcomes", event)
        if accepted is None:
            return
        outcome, decider = accepted
        partition = event.message.partition
        clock = advance(partition, outcome["ts"], decider)
        cid = outcome["customer_id"]
        seen_key = b"o:" + cid.encode()
        seen = DedupWindow.decode(tables.get("seen", partition, seen_key))
        if seen.seen_before(outcome["outcome_id"]):
            log.info("outcome_duplicate", outcome_id=outcome["outcome_id"])
            return
        raw = tables.get("pending", partition, outcome["decision_id"].encode())
        if raw is None:
            reject_event(f"unknown decision_id {outcome['decision_id']!r} "
                         "(never made here, or forgotten after its grace period)", event)
            return
        _, pending = unpack_pending(raw)
        if pending.customer_id != cid:
            reject_event("outcome customer_id differs from its decision's", event)
            return
        seen.remember(outcome["outcome_id"])
        tables.set("seen", partition, seen_key, seen.encode())
        settle(partition, clock, decider.learn(
            load_evidence(partition, cid, pending.segment), load_customer(partition, cid), pending,
            outcome, population_for(partition)))

    @app.agent(outcomes)
    async def learn(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await guarded(handle_learn, event)

    def handle_observe(event: faust.EventT) -> None:
        accepted = accept("interactions", event)
        if accepted is None:
            return
        interaction, decider = accepted
        partition = event.message.partition
        advance(partition, interaction["ts"], decider)
        cid = interaction["customer_id"]
        try:
            observed = decider.observe(load_customer(partition, cid), interaction,
                                       population_for(partition))
        except ValueError as exc:  # an interaction the profile cannot take (e.g. a bad amount)
            reject_event(f"interaction rejected: {exc}", event)
            return
        if observed.duplicate:
            log.info("interaction_duplicate", event_id=interaction["event_id"])
            return
        store_customer(partition, cid, observed.customer)
        learned_from(partition)
        for record in observed.records:
            output.send(deltas, record["kind"].encode(), _dumps(record))
        if observed.scores is not None:
            output.send(scores_topic, cid.encode(), _dumps(observed.scores))

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
    from stream_app.kafka.topics import TopicSpec, ensure_topics

    changelog = TopicSpec("changelog", compacted=True)
    ensure_topics(settings, [(t.changelog_topic.get_topic_name(), changelog)
                             for t in app.tables.values()], timeout_s)


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

    log.info("kernels_ready", seconds=round(beta_max.warm_up(), 3))  # not on the first request
    create_topics(settings)
    app = build_app(settings)
    create_changelog_topics(settings, app)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it sees every record: each
    # debug call of Faust and aiokafka (several per message sent) then builds a LogRecord that
    # the handler drops. Without the spinner the root logger keeps the configured level.
    worker.spinner = None
    log.info("gc_tuned", **collector.tune(settings.gc_threshold, freeze=settings.gc_freeze))
    worker.execute_from_commandline()
