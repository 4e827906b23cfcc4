"""The Faust worker: agents take micro-batches of the input topics and hand each partition's
share to its ``PartitionSession`` (``partition/session.py``), which does all the work; the
worker sends what the sessions return and writes their tables once per batch.

Tables (RocksDB through rocksdict, changelog-backed, so a restarted or rebalanced worker
recovers them) are the session's (``partition.TABLES``), reached through ``worker/tables.py``:
writes held until the batch is done, one RocksDB write batch per store, one changelog record
per key. The input topics are co-partitioned by customer id, so a customer's requests,
interactions, outcomes and state meet on one worker.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from typing import Any

import faust
import structlog

from stream_app.core.decision import Decider
from stream_app.partition import SOURCES, TABLES, InputRecord, PartitionSession
from stream_app.policies import beta_max
from stream_app.schemas import Contract
from stream_app.settings import Settings
from stream_app.worker import collector, faust_patches, memory, storage
from stream_app.worker.config_feed import ConfigFeed
from stream_app.worker.output import Output
from stream_app.worker.tables import Tables, faust_tables

log = structlog.get_logger("stream_app.worker")

AGENT_NAMES = {"decision-requests": "answer", "outcomes": "learn", "interactions": "observe"}


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _now_ms() -> int:
    return int(time.time() * 1000)


def build_app(settings: Settings) -> faust.App:
    """The Faust app: one agent per input topic takes micro-batches of records and hands each
    partition's share to that partition's ``PartitionSession``; everything a session returns
    is sent through the worker's librdkafka producer. The rest is plumbing: the tables, the
    config feed, offsets committed only after the state and outputs they cover are
    acknowledged, hand-over of revoked partitions, the last checkpoint at a clean stop."""
    contract = Contract.load(max_bytes=settings.max_message_bytes)
    if settings.rocksdb_memory_mb:  # 0: Faust's own RocksDB options (no shared budget)
        storage.configure(settings.rocksdb_memory_mb, settings.bulk_restore_min_records)
    faust_patches.install_fetch_wait(settings.fetch_max_wait_ms)  # before Faust's consumer
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

    faust_table = {name: app.Table(name, default=None, partitions=settings.partitions,
                                   key_type=bytes, value_type=bytes) for name in TABLES}
    changelogs = faust_tables(faust_table)
    # everything the worker writes goes through librdkafka (two lanes: decisions, the rest), and
    # table writes are held until the next flush (``worker/tables.py``, ``worker/output.py``)
    output = Output(settings.bootstrap_servers, linger_ms=settings.decision_linger_ms,
                    bulk_linger_ms=settings.output_linger_ms,
                    urgent_topics=frozenset({settings.topic("decisions")}),
                    tracked_topics=frozenset(topic for topic, _ in changelogs.values()))
    tables = Tables(changelogs, output)

    feed = ConfigFeed(settings.bootstrap_servers, settings.topic("engine-config"),
                      settings.topic("dead-letter"), contract)
    state: dict[str, Any] = {"decider": None}
    feed.on_change.append(lambda cfg: state.__setitem__("decider", Decider(cfg, settings.seed)))

    def after_restore() -> None:
        if settings.gc_freeze:  # long-lived: no collection needs to walk them again
            gc.freeze()

    sessions: dict[int, PartitionSession] = {}

    def session_for(partition: int) -> PartitionSession:
        """The partition's session: made on its first batch since start / assignment, so its
        tables are recovered before it reads them."""
        session = sessions.get(partition)
        if session is None:
            session = sessions[partition] = PartitionSession(
                partition, tables.partition(partition), lambda: state["decider"],
                topic=settings.topic, contract=contract, seed=settings.seed,
                checkpoint_every=settings.checkpoint_every,
                checkpoint_min_interval_s=settings.checkpoint_min_interval_s,
                on_restored=after_restore)
        return session

    @app.on_before_shutdown.connect
    def stop_feed(app: faust.App, **kwargs: Any) -> None:
        feed.stop()

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

    # before an offset commit, a revocation and a stop: no offset is committed before the
    # state and the outputs of the records it covers are acknowledged (at least once)
    faust_patches.flush_before_commit(app, write_out)

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

    async def handle(source: str, events: Sequence[faust.EventT]) -> None:
        """Hand each partition its share of a batch (in order), send what the sessions return,
        then write the tables once for the whole batch."""
        while not feed.loaded.is_set():  # the config is read before the first record
            await asyncio.sleep(0.02)
        shares: dict[int, list[InputRecord]] = {}
        for event in events:
            m = event.message
            ts = m.timestamp
            shares.setdefault(m.partition, []).append(InputRecord(
                m.key, m.value, m.offset, int(ts * 1000) if isinstance(ts, float) else ts,
                m.topic))
        send = output.send
        for partition, records in shares.items():
            for topic_name, key, value in session_for(partition).process(source, records).records:
                send(topic_name, key, value)
        tables.flush()
        output.poll()

    inputs = {settings.topic(name) for name in SOURCES}

    faust_patches.seek_back_after_drops(app, inputs, log)

    @app.on_partitions_assigned.connect
    async def assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        log.info("partitions_assigned",
                 partitions=sorted({tp.partition for tp in assigned if tp.topic in inputs}))

    @app.on_partitions_revoked.connect
    async def hand_over(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        """Partitions leave this worker: checkpoint their population state (so the next owner
        resumes from what was learned here, not from the last periodic checkpoint), write it out
        and forget their sessions (a partition that comes back is read afresh)."""
        parts = sorted({tp.partition for tp in revoked if tp.topic in inputs})
        handed = {}
        for partition in parts:
            session = sessions.pop(partition, None)
            version = session.checkpoint() if session is not None else None
            if version is not None:
                handed[str(partition)] = version
        await write_out()
        if parts:
            log.info("partitions_revoked", partitions=parts, checkpointed=handed)

    async def checkpoint_at_stop() -> None:
        """At a clean stop, once the streams are empty and before the stores close: the last
        checkpoint, so a restart does not forget what was learned since the periodic one."""
        if sessions:  # Faust stops the tables twice: the first time counts
            stored = {str(p): v for p, s in sorted(sessions.items())
                      if (v := s.checkpoint()) is not None}
            sessions.clear()
            await write_out()
            log.info("checkpointed_at_shutdown", checkpointed=stored)

    faust_patches.before_tables_stop(app, checkpoint_at_stop)

    within = settings.batch_within_ms / 1000.0

    def agent_for(source: str) -> None:
        async def take(stream: faust.StreamT) -> None:
            async for events in stream.take_events(settings.batch_max, within):
                await handle(source, events)

        app.agent(topic(source), name=AGENT_NAMES[source])(take)

    for source in SOURCES:
        agent_for(source)
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
