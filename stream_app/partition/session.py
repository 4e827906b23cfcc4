"""One partition of the engine: everything a partition does with a batch of input records.

A ``PartitionSession`` is the engine as the worker, the core benchmark, the learning benchmark
and the tests all run it. Given a batch of records read from one input topic of its partition,
it decodes and validates them (dead-lettering what cannot be used, with the reason), advances
the partition's event time (firing attribution timers, closing roll-up windows), loads the
customers' state through a ``PartitionStore``, calls the decision core (``core/decision.py``),
stores the new state and returns the records to send. It never touches Kafka: the Faust worker
(``worker/app.py``) hands it the batches its agents take and sends what it returns.

Per-customer state is exact after any restart (the store's tables are changelog-backed in the
worker); the partition's population learners (``PopulationState``: River models, contextual
arms, experiment statistics, shadow estimators) live in memory and are checkpointed to the
``models`` table every ``checkpoint_every`` learning events (at most once every
``checkpoint_min_interval_s``), at a hand-over and at a stop (``checkpoint``).

>>> import orjson
>>> from stream_app.core.catalogue import parse_config
>>> from stream_app.core.decision import Decider
>>> from stream_app.partition.store import DictStore
>>> from stream_app.simulator import default_engine_config
>>> decider = Decider(parse_config(default_engine_config()), seed=1)
>>> session = PartitionSession(0, DictStore(), lambda: decider)
>>> request = {"request_id": "r1", "customer_id": "c1", "ts": 1_764_000_000_000,
...            "channel": "app", "use_case": "default"}
>>> out = session.process("decision-requests", [InputRecord(b"c1", orjson.dumps(request))])
>>> [topic for topic, _, _ in out.records], out.decisions[0]["action"]
(['decisions'], 'offer')
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from stream_app.core.arms import Arms
from stream_app.core.customer import CustomerCodecError, CustomerState
from stream_app.core.decision import Decider, Evidence, Learned, decision_id_for, segment_of
from stream_app.core.dedup import DedupWindow
from stream_app.core.feedback import PendingCodecError, PendingDecision
from stream_app.core.population import PopulationState
from stream_app.deadletter import dead_letter
from stream_app.partition import checkpoints
from stream_app.partition.clock import PartitionClock, pack_pending, unpack_pending
from stream_app.partition.store import PartitionStore
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import Settings

__all__ = ["Emitted", "InputRecord", "PartitionSession", "SOURCES", "TABLES"]

log = structlog.get_logger("stream_app.partition")

SOURCES = ("decision-requests", "outcomes", "interactions")  # the input topics, contract names
TABLES = ("customers", "arms", "pending", "seen", "models")  # the state a partition keeps
POPULATION_KEY = b"\x00population"  # the partition's population arms, in ``arms``
SEGMENT_KEY = b"\x00segment:"  # a segment's arms, in ``arms``

_DEFAULTS = Settings()
_contract: Contract | None = None


def default_contract() -> Contract:
    """The topic contract (``schemas/``), loaded once per process."""
    global _contract
    if _contract is None:
        _contract = Contract.load()
    return _contract


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One message read from an input topic (``topic`` and ``offset`` name it in dead letters)."""

    key: bytes | None
    value: bytes | None
    offset: int = -1
    timestamp_ms: int | None = None
    topic: str = ""


@dataclass(slots=True)
class Emitted:
    """What a batch produced: ``records`` to send, in order, as (topic, key, value); the
    ``decisions`` made (for in-process drivers); counts of what was recognised as a duplicate
    or dead-lettered."""

    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: int = 0


class PartitionSession:
    """The engine for one partition.

    Parameters
    ----------
    partition
        The partition number (written into pending decisions and metrics).
    store
        The partition's tables (``TABLES``).
    decider
        Returns the decision core of the configuration in force, ``None`` while there is none.
    topic
        Maps a contract topic name to the topic to write (the worker's prefix).
    contract
        Validates input messages; the ``schemas/`` contract by default.
    seed
        Seeds the population learners when no checkpoint exists.
    checkpoint_every, checkpoint_min_interval_s
        When the population learners are checkpointed (``checkpoints.Schedule``).
    on_restored
        Called after a checkpoint was restored (the worker freezes the garbage collector).
    population
        Population learners to start from instead of the partition's checkpoint (benchmarks
        that run lighter models).
    """

    def __init__(self, partition: int, store: PartitionStore,
                 decider: Callable[[], Decider | None], *,
                 topic: Callable[[str], str] = str, contract: Contract | None = None,
                 seed: int = 0, checkpoint_every: int = _DEFAULTS.checkpoint_every,
                 checkpoint_min_interval_s: float = _DEFAULTS.checkpoint_min_interval_s,
                 on_restored: Callable[[], None] | None = None,
                 population: PopulationState | None = None) -> None:
        self.partition = partition
        self.store = store
        self._decider = decider
        self._contract = contract or default_contract()
        self._topics = {name: topic(name) for name in (
            "decisions", "delta-metrics", "customer-scores", "dead-letter", "engine-config")}
        self._decisions_topic = self._topics["decisions"]
        self._deltas_topic = self._topics["delta-metrics"]
        self._seed = seed
        self._schedule = checkpoints.Schedule(checkpoint_every, checkpoint_min_interval_s)
        self._on_restored = on_restored
        self._population: PopulationState | None = population
        if population is not None:
            self._schedule.loaded(partition)
        self._clock: PartitionClock | None = None
        self._pooled: dict[bytes, Arms] = {}
        self._out = Emitted()
        self._handlers = {"decision-requests": self._answer, "outcomes": self._learn,
                          "interactions": self._observe}

    # -- the entry points --------------------------------------------------------------------
    def process(self, source: str, records: Sequence[InputRecord]) -> Emitted:
        """Handle a batch of records read, in order, from input topic ``source`` (a contract
        name, ``SOURCES``); returns what to send. A record that cannot be processed is
        dead-lettered with the reason; it never stops the batch."""
        handler = self._handlers[source]
        decider = self._decider()
        self._out = out = Emitted()
        started = time.perf_counter()
        for record in records:
            if decider is None:
                self._reject("no engine config in force: publish one to engine-config", record)
                continue
            try:
                message = self._decode(source, record)
            except InvalidMessage as exc:
                self._reject(str(exc), record)
                continue
            try:
                handler(message, record, decider, started)
            except Exception as exc:  # noqa: BLE001 - one message is lost to a bug, not the batch
                log.exception("processing_failed", topic=record.topic, offset=record.offset)
                self._reject(f"internal error: {type(exc).__name__}: {exc}", record)
        return out

    def tick(self, ts: int) -> Emitted:
        """Event time reached ``ts`` without a message (fires due timers, closes windows)."""
        self._out = out = Emitted()
        decider = self._decider()
        if decider is not None:
            self._advance(ts, decider)
        return out

    def checkpoint(self) -> str | None:
        """Store the population learners now (hand-over, stop); the model version stored, or
        ``None`` when there is nothing in memory or the store refused it."""
        if self._population is None:
            return None
        try:
            checkpoints.store(_TableView(self.store, "models"), self._population)
        except Exception as exc:  # noqa: BLE001 - the events were processed: keep them
            # e.g. the changelog topic's metadata not known yet right after start-up; the
            # last checkpoint stands, the next one (schedule, hand-over, stop) tries again
            log.warning("checkpoint_failed", partition=self.partition, error=str(exc))
            return None
        self._schedule.stored(self.partition)
        return self._population.suite.version

    @property
    def population(self) -> PopulationState:
        """The partition's population learners, restored from its checkpoint on first use."""
        population = self._population
        if population is None:
            try:
                population = checkpoints.load(_TableView(self.store, "models"))
            except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint: learn afresh
                log.warning("checkpoint_unreadable", partition=self.partition, error=str(exc))
                population = None
            if population is None:
                population = PopulationState(seed=self._seed)
            else:
                log.info("checkpoint_restored", partition=self.partition,
                         model_version=population.suite.version)
                if self._on_restored is not None:
                    self._on_restored()
            self._population = population
            self._schedule.loaded(self.partition)
        return population

    @property
    def clock(self) -> PartitionClock:
        """The partition's event time and timers, rebuilt from ``pending`` on first use."""
        clock = self._clock
        if clock is None:
            clock = self._clock = PartitionClock()
            unreadable = 0
            for _, raw in self.store.items("pending"):
                try:
                    p, pending = unpack_pending(raw)
                except (PendingCodecError, struct.error):
                    unreadable += 1  # written by an incompatible version: never joined again
                    continue
                if p == self.partition:
                    clock.schedule(pending)
            if unreadable:
                log.warning("pending_unreadable", partition=self.partition, count=unreadable)
        return clock

    # -- the three inputs --------------------------------------------------------------------
    def _answer(self, request: dict[str, Any], record: InputRecord, decider: Decider,
                started: float) -> None:
        clock = self._advance(request["ts"], decider)
        if self.store.get("pending", decision_id_for(request["request_id"]).encode()) is not None:
            log.info("request_duplicate", request_id=request["request_id"])
            self._out.duplicates += 1
            return
        cid = request["customer_id"]
        customer = self._customer(cid)
        segment = segment_of(request, customer.profile.segment)
        decided = decider.decide(request, customer, self._evidence(cid, segment),
                                 self.population)
        if decided.pending is not None:
            self._keep(clock, decided.pending)
            self._store_customer(cid, decided.customer)
        decision = decided.decision
        decision["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        self._out.decisions.append(decision)
        self._out.records.append((self._decisions_topic, cid.encode(), _dumps(decision)))

    def _learn(self, outcome: dict[str, Any], record: InputRecord, decider: Decider,
               started: float) -> None:
        clock = self._advance(outcome["ts"], decider)
        cid = outcome["customer_id"]
        seen_key = b"o:" + cid.encode()
        seen = DedupWindow.decode(self.store.get("seen", seen_key))
        if seen.seen_before(outcome["outcome_id"]):
            log.info("outcome_duplicate", outcome_id=outcome["outcome_id"])
            self._out.duplicates += 1
            return
        raw = self.store.get("pending", outcome["decision_id"].encode())
        if raw is None:
            self._reject(f"unknown decision_id {outcome['decision_id']!r} "
                         "(never made here, or forgotten after its grace period)", record)
            return
        _, pending = unpack_pending(raw)
        if pending.customer_id != cid:
            self._reject("outcome customer_id differs from its decision's", record)
            return
        seen.remember(outcome["outcome_id"])
        self.store.set("seen", seen_key, seen.encode())
        self._settle(clock, decider.learn(self._evidence(cid, pending.segment),
                                          self._customer(cid), pending, outcome,
                                          self.population))

    def _observe(self, interaction: dict[str, Any], record: InputRecord, decider: Decider,
                 started: float) -> None:
        self._advance(interaction["ts"], decider)
        cid = interaction["customer_id"]
        try:
            observed = decider.observe(self._customer(cid), interaction, self.population)
        except ValueError as exc:  # an interaction the profile cannot take (e.g. a bad amount)
            self._reject(f"interaction rejected: {exc}", record)
            return
        if observed.duplicate:
            log.info("interaction_duplicate", event_id=interaction["event_id"])
            self._out.duplicates += 1
            return
        self._store_customer(cid, observed.customer)
        self._learned()
        send = self._out.records.append
        for rec in observed.records:
            send((self._deltas_topic, rec["kind"].encode(), _dumps(rec)))
        if observed.scores is not None:
            send((self._topics["customer-scores"], cid.encode(), _dumps(observed.scores)))

    # -- event time ----------------------------------------------------------------------------
    def _advance(self, ts: int, decider: Decider) -> PartitionClock:
        """Move the partition's event time: fire due attribution timers, close roll-up windows."""
        clock = self.clock
        for decision_id in clock.timers.advance(ts):
            key = decision_id.encode()
            raw = self.store.get("pending", key)
            if raw is None:
                continue
            _, pending = unpack_pending(raw)
            if pending.is_settled:  # grace period over: late outcomes are no longer recognised
                self.store.delete("pending", key)
                continue
            cid = pending.customer_id
            self._settle(clock, decider.expire(self._evidence(cid, pending.segment),
                                               self._customer(cid), pending, self.population))
        closed = clock.rollups.flush(clock.timers.watermark_ms)
        send = self._out.records.append
        for rollup in closed:
            send((self._deltas_topic, b"rollup", _dumps(rollup)))
        if closed:  # a roll-up window closed: publish the partition's in-stream statistics
            self._publish_snapshots(clock.timers.watermark_ms, decider)
        return clock

    def _publish_snapshots(self, ts: int, decider: Decider) -> None:
        records, due = decider.snapshots(self.population, ts, self.partition)
        send = self._out.records.append
        for rec in records:
            send((self._deltas_topic, rec["kind"].encode(), _dumps(rec)))
        for key in due:  # automatic promotion: a config change like any other, audited
            doc = decider.promoted_config(key)
            log.info("challenger_promoted", challenger=key, version=doc["version"])
            send((self._topics["engine-config"], b"engine", _dumps(doc)))

    # -- state -------------------------------------------------------------------------------
    def _customer(self, cid: str) -> CustomerState:
        try:
            return CustomerState.decode(self.store.get("customers", cid.encode()))
        except CustomerCodecError as exc:  # written by an incompatible version: start over
            log.warning("customer_unreadable", customer_id=cid, error=str(exc))
            return CustomerState.empty()

    def _store_customer(self, cid: str, customer: CustomerState) -> None:
        self.store.set("customers", cid.encode(), customer.encode())

    def _pooled_arms(self, key: bytes) -> Arms:
        # read by every decision and settlement: cached in memory, written through on change
        arms = self._pooled.get(key)
        if arms is None:
            arms = self._pooled[key] = Arms.decode(self.store.get("arms", key))
        return arms

    def _evidence(self, cid: str, segment: str) -> Evidence:
        return Evidence(Arms.decode(self.store.get("arms", cid.encode())),
                        self._pooled_arms(SEGMENT_KEY + segment.encode()),
                        self._pooled_arms(POPULATION_KEY))

    def _store_evidence(self, cid: str, segment: str, evidence: Evidence) -> None:
        self.store.set("arms", cid.encode(), evidence.customer.encode())
        for key, arms in ((SEGMENT_KEY + segment.encode(), evidence.segment),
                          (POPULATION_KEY, evidence.population)):
            self._pooled[key] = arms
            self.store.set("arms", key, arms.encode())

    def _keep(self, clock: PartitionClock, pending: PendingDecision) -> None:
        """Store a pending decision and set its timer (expiry while open, forgetting once settled)."""
        self.store.set("pending", pending.decision_id.encode(),
                       pack_pending(self.partition, pending))
        clock.schedule(pending)

    def _settle(self, clock: PartitionClock, learned: Learned) -> None:
        """Store what an outcome or an expired window taught, keep the decision, publish deltas."""
        p = learned.pending
        self._store_evidence(p.customer_id, p.segment, learned.evidence)
        self._store_customer(p.customer_id, learned.customer)
        self._keep(clock, p)
        send = self._out.records.append
        for rec in learned.records:
            if rec.get("kind") == "outcome":
                clock.rollups.add(rec)
                send((self._deltas_topic, rec["customer_id"].encode(), _dumps(rec)))
            else:  # drift and other population-level records
                send((self._deltas_topic, rec["kind"].encode(), _dumps(rec)))
        self._learned()

    def _learned(self) -> None:
        """Count one learning event; checkpoint when the schedule says so."""
        self.population  # noqa: B018 - restored (and the schedule started) before counting
        if self._schedule.count(self.partition):
            started = time.perf_counter()
            version = self.checkpoint()
            if version is not None:
                log.info("checkpoint_stored", partition=self.partition, model_version=version,
                         ms=round((time.perf_counter() - started) * 1000, 1))

    # -- input -------------------------------------------------------------------------------
    def _decode(self, source: str, record: InputRecord) -> dict[str, Any]:
        msg = self._contract.decode(source, record.value)
        key = record.key
        if key is None or key.decode("utf-8", "replace") != msg["customer_id"]:
            raise InvalidMessage("message key must be the customer_id (co-partitioning)")
        return msg

    def _reject(self, reason: str, record: InputRecord) -> None:
        letter = dead_letter(reason, topic=record.topic, partition=self.partition,
                             offset=record.offset, timestamp=record.timestamp_ms, key=record.key,
                             value=record.value, failed_at=int(time.time() * 1000))
        log.warning("dead_letter", reason=letter["reason"], topic=record.topic,
                    offset=record.offset)
        self._out.dead_letters += 1
        self._out.records.append((self._topics["dead-letter"], record.key, _dumps(letter)))


class _TableView:
    """One table of a store as the mapping checkpoints read and write (``get``, ``[]=``)."""

    __slots__ = ("_store", "_table")

    def __init__(self, store: PartitionStore, table: str) -> None:
        self._store, self._table = store, table

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self._store.get(self._table, key)
        return default if value is None else value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._store.set(self._table, key, value)
