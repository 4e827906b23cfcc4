"""The Faust worker: agents take micro-batches of the input topics and hand each partition's
share to its ``PartitionSession`` (``partition/session.py``), which does all the work; the
worker sends what the sessions return and writes their tables once per batch.

Tables (RocksDB through rocksdict, changelog-backed, so a restarted or rebalanced worker
recovers them) are the session's (``partition.TABLES``), reached through ``worker/tables.py``:
writes held until the batch is done, one RocksDB write batch per store, one changelog record
per key. The input topics are co-partitioned by customer id, so a customer's requests,
interactions, outcomes and state meet on one worker.

Fleet-wide learning (``fleet/``): every session sends its lessons on ``learning`` and decides
with the newest snapshot on ``learner-snapshots`` (``worker/snapshot_feed.py``). ``learning``
has one partition; the fleet's learner (the ``learner`` agent) runs in the worker it is
assigned to (``STREAM_APP_LEARNER=embedded``, the default), or in a process of its own
(``stream-app learner``, with ``STREAM_APP_LEARNER=off`` on the workers), and publishes a
snapshot every ``snapshot_interval_s`` and when it hands the learner over or stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

import faust
import orjson
import structlog

from stream_app.core.decision import Decider
from stream_app.deadletter import dead_letter
from stream_app.failpoints import Failpoint
from stream_app.fleet import FleetSnapshot
from stream_app.fleet.learner import FleetLearner
from stream_app.kafka.security import faust_credentials
from stream_app.observability import metrics
from stream_app.partition import SOURCES, TABLES, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule
from stream_app.partition.silence import RocksSilence
from stream_app.policies import beta_max
from stream_app.pseudonym import Pseudonyms
from stream_app.schemas import Contract
from stream_app.settings import HEARTBEAT_INTERVAL_S, Settings
from stream_app.worker import collector, faust_patches, memory, storage
from stream_app.worker.config_feed import ConfigFeed
from stream_app.worker.output import Output
from stream_app.worker.probes import WorkerProbes, count_batch
from stream_app.worker.snapshot_feed import SnapshotFeed
from stream_app.worker.tables import Tables, faust_tables
from stream_app.worker.transactions import ExactlyOnce, transactional_id

log = structlog.get_logger("stream_app.worker")

AGENT_NAMES = {"decision-requests": "answer", "outcomes": "learn", "interactions": "observe",
               "erasure-requests": "erase", "learning": "learner"}


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _now_ms() -> int:
    return int(time.time() * 1000)


def build_app(settings: Settings, role: str = "worker") -> faust.App:
    """The Faust app: one agent per input topic takes micro-batches of records and hands each
    partition's share to that partition's ``PartitionSession``; everything a session returns
    is sent through the worker's librdkafka producer. The rest is plumbing: the tables, the
    config feed, offsets committed only after the state and outputs they cover are
    acknowledged, hand-over of revoked partitions, the fleet's learner (``learning``).

    ``role="learner"``: the fleet's learner alone (its own consumer group, no tables, no input
    agents)."""
    if role not in ("worker", "learner"):
        raise ValueError(f"role must be worker or learner, not {role!r}")
    partitions_work = role == "worker"
    runs_learner = role == "learner" or settings.learner == "embedded"
    contract = Contract.load(max_bytes=settings.max_message_bytes)
    exactly_once = settings.processing_guarantee == "exactly_once"
    if settings.rocksdb_memory_mb:  # 0: Faust's own RocksDB options (no shared budget)
        storage.configure(settings.rocksdb_memory_mb, settings.bulk_restore_min_records,
                          catch_up=exactly_once)
    faust_patches.install_fetch_wait(settings.fetch_max_wait_ms)  # before Faust's consumer
    faust_patches.install_read_committed(exactly_once)
    data_dir = settings.data_dir if partitions_work else settings.data_dir / "learner"
    app = faust.App(
        settings.app_id if partitions_work else f"{settings.app_id}-learner",
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=faust_credentials(),  # TLS / SASL (``kafka/security.py``)
        store=storage.STORE_URL if settings.rocksdb_memory_mb else "rocksdb://",
        datadir=str(data_dir),
        topic_partitions=settings.partitions,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=2,
        broker_commit_every=500,
        broker_commit_interval=settings.commit_interval_ms / 1000,
        table_cleanup_interval=60.0,
        # no standby replicas: a partition that becomes active is caught up from its changelog
        # by worker/restore.py, not by a standby's record-by-record reading
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_rebalance_timeout=20.0,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    faust_table = {name: app.Table(name, default=None, partitions=settings.partitions,
                                   key_type=bytes, value_type=bytes)
                   for name in (TABLES if partitions_work else ())}
    changelogs = faust_tables(faust_table)
    # everything the worker writes goes through librdkafka, and table writes are held until the
    # next flush (``worker/tables.py``, ``worker/output.py``); exactly once: one transactional
    # lane, and rows reach the stores once their transaction committed
    # (``worker/transactions.py``); at least once: two lanes (decisions, the rest)
    output = Output(settings.bootstrap_servers, linger_ms=settings.decision_linger_ms,
                    bulk_linger_ms=settings.output_linger_ms,
                    urgent_topics=frozenset({settings.topic("decisions")}),
                    tracked_topics=frozenset(topic for topic, _ in changelogs.values()),
                    transactional_id=transactional_id(app.conf.id, settings.worker_id,
                                                      str(data_dir)) if exactly_once else None,
                    transaction_timeout_ms=settings.transaction_timeout_ms)
    tables = Tables(changelogs, output, staged=exactly_once)
    failpoint = Failpoint.parse(settings.fail_at, settings.topic)  # crash tests only
    read_since_commit: set[str] = set()  # at least once: the inputs a commit covers
    eos = ExactlyOnce(output, tables, settings.bootstrap_servers, app.conf.id,
                      failpoint=failpoint, before_cut=lambda: publish_lessons()) \
        if exactly_once else None
    positions = eos.positions if eos is not None else None

    feed = ConfigFeed.of(settings, contract)  # the last good config kept locally and fleet-wide
    state: dict[str, Any] = {"decider": None}
    feed.on_change.append(lambda cfg: state.__setitem__("decider", Decider(cfg, settings.seed)))

    sessions: dict[int, PartitionSession] = {}
    owned: set[int] = set()  # the partitions assigned to this worker
    pseudonyms = Pseudonyms(settings.pseudonymise_key)  # customer ids on analytics outputs

    def session_for(partition: int) -> PartitionSession:
        """The partition's session: made on its first batch since start / assignment, so its
        tables are recovered before it reads them. Its customers' silence timers are kept on
        disk, in a RocksDB of their own under the data dir (``partition/silence.py``)."""
        session = sessions.get(partition)
        if session is None:
            session = sessions[partition] = PartitionSession(
                partition, tables.partition(partition), lambda: state["decider"],
                fleet=lambda: snapshots.latest, topic=settings.topic, contract=contract,
                seed=settings.seed, event_time=EventTimeRule.of(settings),
                pseudonyms=pseudonyms, publish_per_batch=False,
                silences=RocksSilence(data_dir / "silence" / f"partition-{partition}",
                                      shared=storage.budget().shared()
                                      if settings.rocksdb_memory_mb else None))
        return session

    def publish_lessons(partitions: Iterable[int] | None = None) -> bool:
        """Send the sessions' outcome deltas and lessons not yet published (all sessions, or
        those of ``partitions``): once per commit, with it; True if anything was sent."""
        sent = False
        for partition in sessions if partitions is None else partitions:
            session = sessions.get(partition)
            if session is not None:
                for topic_name, key, value in session.publish().records:
                    output.send(topic_name, key, value)
                    sent = True
        return sent

    async def rebuilt(partition: int) -> PartitionSession:
        """The partition's session with its timers rebuilt from every customer of the
        partition: in steps, so commits and heartbeats go on meanwhile (a transaction left open
        longer than STREAM_APP_TRANSACTION_TIMEOUT_MS is aborted by the broker)."""
        session = session_for(partition)
        for _ in session.rebuild_clock():
            await asyncio.sleep(0)
            if partition not in owned:  # revoked meanwhile: its store is closed
                break
        return session

    snapshots = SnapshotFeed(settings.bootstrap_servers, settings.topic("learner-snapshots"))

    @app.on_before_shutdown.connect
    def stop_feed(app: faust.App, **kwargs: Any) -> None:
        feed.stop()
        snapshots.stop()

    async def write_out() -> None:
        """The tables' held writes to their stores and changelogs, everything produced
        acknowledged, and the stores' changelog offsets moved to what was acknowledged: a
        recovery after this (the next rebalance, a restart) reads nothing this worker wrote.
        Without the last step, a worker that kept a partition across a rebalance had to read
        its own writes back from the changelog, a read Faust could lose (a fetch returning
        while the flow is stopped is dropped: ``worker/seeking.py``). Exactly once: all that
        is the commit of the open transaction."""
        if eos is not None:
            await eos.commit()  # its cut publishes the lessons first
            return
        publish_lessons()
        tables.flush()
        await output.flush()
        if failpoint is not None:
            failpoint.reached("committing", read_since_commit)
            read_since_commit.clear()
        tables.persist_acked()

    # before an offset commit, a revocation and a stop: no offset is committed before the
    # state and the outputs of the records it covers are acknowledged (at least once), or
    # the offsets are committed in the transaction that holds them (exactly once)
    faust_patches.flush_before_commit(app, write_out)
    if eos is not None:
        faust_patches.commit_by(app, eos.commit)
        eos.begin()

    feed.start()
    snapshots.start()

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
            if app.should_stop:  # none ever in force: nothing processed, nothing to save
                feed.leave_without_config()
            await asyncio.sleep(0.02)
        shares: dict[int, list[InputRecord]] = {}
        for event in events:
            m = event.message
            ts = m.timestamp
            shares.setdefault(m.partition, []).append(InputRecord(
                m.key, m.value, m.offset, int(ts * 1000) if isinstance(ts, float) else ts,
                m.topic))
        read_from = settings.topic(source)
        metrics.count_in(read_from, len(events))
        send = output.send
        for partition, records in shares.items():
            emitted = (await rebuilt(partition)).process(source, records)
            for topic_name, key, value in emitted.records:
                send(topic_name, key, value)
            count_batch(read_from, partition, emitted)
            if positions is not None:
                positions.advance(read_from, partition, records[-1].offset)
        tables.flush()
        output.poll()
        if failpoint is not None:
            read_since_commit.add(read_from)
            failpoint.reached("processed", (read_from,))

    @app.timer(interval=1.0)
    async def tick_idle_partitions() -> None:
        """A partition that read nothing for a while still fires its attribution timers: its
        event time moves with the wall clock (``partition/clock.py``, rule 4). Every partition
        this worker owns is ticked, once its tables are recovered, read since or not."""
        if owned and app.tables.recovery.completed.is_set() and not app.rebalancing:
            for partition in sorted(owned - sessions.keys()):
                await rebuilt(partition)
        fired = False
        for session in list(sessions.values()):
            emitted = session.tick_idle()
            if emitted is not None:
                fired = True
                for topic_name, key, value in emitted.records:
                    output.send(topic_name, key, value)
        if fired:
            tables.flush()
            output.poll()

    inputs = {settings.topic(name) for name in SOURCES}
    # /health, /ready, /metrics: a dependency of the app starts before its consumer and tables
    app.add_dependency(WorkerProbes(app, feed, inputs, host=settings.probe_host,
                                    port=settings.probe_port))

    faust_patches.seek_back_after_drops(app, inputs, log)

    @app.on_partitions_assigned.connect
    async def assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        parts = {tp.partition for tp in assigned if tp.topic in inputs}
        if partitions_work:
            owned.update(parts)
        log.info("partitions_assigned", partitions=sorted(parts))

    @app.on_partitions_revoked.connect
    async def hand_over(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        """Partitions leave this worker: forget their sessions (a partition that comes back is
        read afresh), hand the learner over when the learning partition leaves, write out."""
        parts = sorted({tp.partition for tp in revoked if tp.topic in inputs})
        publish_lessons(parts)  # with the commit below
        for partition in parts:
            session = sessions.pop(partition, None)
            if session is not None:
                session.close()
            owned.discard(partition)
        if any(tp.topic == learning_topic for tp in revoked):
            hand_over_learner()
        await write_out()
        if positions is not None:
            positions.forget({(tp.topic, tp.partition) for tp in revoked})
        if parts:
            log.info("partitions_revoked", partitions=parts)

    async def publish_at_stop() -> None:
        """At a clean stop, once the streams are empty and before the stores close: the
        sessions' last lessons, and the learner's last snapshot, so its successor reads nothing
        again."""
        published = publish_lessons()
        for session in sessions.values():
            session.close()
        sessions.clear()
        if fleet["learner"] is not None:
            hand_over_learner()
        if published or fleet["learner"] is not None:
            await write_out()

    faust_patches.before_tables_stop(app, publish_at_stop)

    within = settings.batch_within_ms / 1000.0

    def agent_for(source: str) -> None:
        async def take(stream: faust.StreamT) -> None:
            async for events in stream.take_events(settings.batch_max, within):
                await handle(source, events)

        app.agent(topic(source), name=AGENT_NAMES[source])(take)

    if partitions_work:
        for source in SOURCES:
            agent_for(source)

    # -- the fleet's learner: the worker assigned the one partition of ``learning`` -----------
    learning_topic = settings.topic("learning")
    fleet: dict[str, Any] = {"learner": None}

    def publish_snapshot() -> None:
        learner = fleet["learner"]
        if learner is None or not (learner.changed or learner.version == 0):
            return
        started = time.perf_counter()
        snapshot = learner.snapshot()
        snapshot.offset = fleet["offset"]
        messages = snapshot.to_messages()
        for key, value in messages:
            output.send(settings.topic("learner-snapshots"), key, value)
        log.info("snapshot_published", version=snapshot.version, chunks=len(messages),
                 bytes=sum(len(v) for _, v in messages),
                 ms=round((time.perf_counter() - started) * 1000, 1))

    def hand_over_learner() -> None:
        """Publish the learner's last snapshot and let it go (a rebalance gave the learning
        partition to another worker, or this one stops)."""
        publish_snapshot()
        fleet["learner"] = None

    async def start_learner(first_offset: int) -> FleetLearner | None:
        """The learner from the newest snapshot on the topic, caught up on the learning
        records between that snapshot and where the consumer starts; None if the worker stops
        first (the records are read again by the next learner: their offsets are not
        committed)."""
        loop = asyncio.get_running_loop()
        while not feed.loaded.is_set() or not snapshots.loaded.is_set():
            if app.should_stop:
                return None
            await asyncio.sleep(0.05)
        if not await loop.run_in_executor(None, snapshots.caught_up):
            log.warning("snapshots_not_caught_up")
        blob = snapshots.latest_blob
        base = FleetSnapshot.decode(blob) if blob is not None else None
        learner = FleetLearner(lambda: state["decider"], base, seed=settings.seed)
        fleet["learner"], fleet["offset"] = learner, first_offset
        # without a snapshot, from the beginning of ``learning`` (what is still kept): a learner
        # that died before its first snapshot may have had its offsets committed
        start = base.offset if base is not None and base.offset is not None else 0
        missed: list = []
        if start < first_offset:  # committed, but not in the snapshot
            from stream_app.kafka.client import read_range

            missed = await loop.run_in_executor(
                None, read_range, settings.bootstrap_servers, learning_topic, 0, start,
                first_offset)
            for offset, key, value in missed:
                learn_record(learner, key, value, offset)
        log.info("learner_started", version=learner.version, from_offset=start,
                 consumer_offset=first_offset, caught_up=len(missed))
        return learner

    def learn_record(learner: FleetLearner, key: bytes | None, value: bytes | None,
                     offset: int) -> None:
        try:  # internal records, bounded by LESSONS_PER_RECORD: not the inputs' size limit
            record = contract.validate("learning", orjson.loads(value or b"null"))
            out = learner.apply(record)
        except Exception as exc:  # noqa: BLE001 - a record the learner cannot read: dead-letter
            log.warning("learning_record_rejected", offset=offset, error=str(exc))
            letter = dead_letter(f"learning record rejected: {exc}", topic=learning_topic,
                                 partition=0, offset=offset, timestamp=None, key=key,
                                 value=value, failed_at=_now_ms())
            output.send(settings.topic("dead-letter"), key, _dumps(letter))
            return
        send = output.send
        deltas = settings.topic("delta-metrics")
        for rec in out:
            send(deltas, rec["kind"].encode(), _dumps(rec))
        fleet["offset"] = offset + 1

    async def learn(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_max, within):
            learner = fleet["learner"]
            if learner is None:
                learner = await start_learner(events[0].message.offset)
                if learner is None:
                    break
            for event in events:
                m = event.message
                learn_record(learner, m.key, m.value, m.offset)
                if positions is not None:
                    positions.advance(m.topic, m.partition, m.offset)
            reports, configs = learner.reports()
            for rec in reports:
                output.send(settings.topic("delta-metrics"), rec["kind"].encode(), _dumps(rec))
            for doc in configs:
                output.send(settings.topic("engine-config"), b"engine", _dumps(doc))
            output.poll()

    if runs_learner:
        app.agent(topic("learning"), name=AGENT_NAMES["learning"])(learn)

    @app.timer(interval=settings.snapshot_interval_s)
    async def publish_snapshots() -> None:
        """The fleet's learners to every worker, about every ``snapshot_interval_s``."""
        publish_snapshot()

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


def run_worker(settings: Settings, role: str = "worker") -> None:
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
    app = build_app(settings, role)
    create_changelog_topics(settings, app)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it sees every record: each
    # debug call of Faust and aiokafka (several per message sent) then builds a LogRecord that
    # the handler drops. Without the spinner the root logger keeps the configured level.
    worker.spinner = None
    log.info("gc_tuned", **collector.tune(settings.gc_threshold, freeze=settings.gc_freeze))
    worker.execute_from_commandline()
