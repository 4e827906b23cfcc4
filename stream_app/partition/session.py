"""One partition of the engine: everything a partition does with a batch of input records.

A ``PartitionSession`` is the engine as the worker, the core benchmark, the learning benchmark
and the tests all run it. Given a batch of records read from one input topic of its partition,
it decodes and validates them (dead-lettering what cannot be used, with the reason), advances
the partition's event time (firing attribution timers, closing roll-up windows), loads the
customers' state (``partition/state.py``: one multi-get per batch, one write per customer)
from a ``PartitionStore``, calls the decision core (``core/decision.py``), stores the new state
and returns the records to send. It never touches Kafka: the Faust worker
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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, Evidence, Learned, decision_id_for, segment_of
from stream_app.core.feedback import PendingDecision
from stream_app.core.population import PopulationState
from stream_app.deadletter import dead_letter
from stream_app.partition import checkpoints
from stream_app.partition.clock import PartitionClock, forget_at
from stream_app.partition.state import POPULATION_KEY, SEGMENT_KEY, PartitionState
from stream_app.partition.store import PartitionStore
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import Settings

__all__ = ["Emitted", "InputRecord", "PartitionSession", "SOURCES", "TABLES"]

log = structlog.get_logger("stream_app.partition")

SOURCES = ("decision-requests", "outcomes", "interactions")  # the input topics, contract names
TABLES = ("customers", "arms", "models")  # the state a partition keeps

_DEFAULTS = Settings()
# Outcome deltas are published per batch, at most this many per ``delta-metrics`` record
# (kind ``outcomes``; ~500 B each: a record stays far below the broker's 1 MB limit).
OUTCOMES_PER_RECORD = 500
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
        self._state = PartitionState(store)
        self._horizon_ms: int | None = None  # the partition's event time before this record
        self._deltas: list[dict[str, Any]] = []  # the batch's outcome deltas, in order
        self._out = Emitted()
        self._handlers = {"decision-requests": self._answer, "outcomes": self._learn,
                          "interactions": self._observe}

    # -- the entry points --------------------------------------------------------------------
    def process(self, source: str, records: Sequence[InputRecord]) -> Emitted:
        """Handle a batch of records read, in order, from input topic ``source`` (a contract
        name, ``SOURCES``); returns what to send. A record that cannot be processed is
        dead-lettered with the reason; it never stops the batch. The customers of the batch are
        read in one multi-get and written once each, when the batch is done."""
        handler = self._handlers[source]
        decider = self._decider()
        self._out = out = Emitted()
        started = time.perf_counter()
        if decider is None:
            for record in records:
                self._reject("no engine config in force: publish one to engine-config", record)
            return out
        accepted: list[tuple[dict[str, Any], InputRecord]] = []
        for record in records:
            try:
                accepted.append((self._decode(source, record), record))
            except InvalidMessage as exc:
                self._reject(str(exc), record)
        self._state.prefetch([m["customer_id"] for m, _ in accepted])
        try:
            for message, record in accepted:
                try:
                    handler(message, record, decider, started)
                except Exception as exc:  # noqa: BLE001 - one message lost to a bug, not the batch
                    log.exception("processing_failed", topic=record.topic, offset=record.offset)
                    self._reject(f"internal error: {type(exc).__name__}: {exc}", record)
        finally:
            self._write_back()
        return out

    def tick(self, ts: int) -> Emitted:
        """Event time reached ``ts`` without a message (fires due timers, closes windows)."""
        self._out = out = Emitted()
        decider = self._decider()
        if decider is not None:
            try:
                self._advance(ts, decider)
            finally:
                self._write_back()
        return out

    def checkpoint(self) -> str | None:
        """Store the population learners and the pooled arms now (hand-over, stop); the model
        version stored, or ``None`` when there is nothing in memory or the store refused it."""
        self._state.write_pooled()
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
        """The partition's event time and timers, rebuilt on first use from the open decisions
        kept in the customers' values (read without decoding the rest of each value)."""
        clock = self._clock
        if clock is None:
            clock = self._clock = PartitionClock()
            unreadable = 0
            decisions_of = CustomerState.decisions_of
            for key, raw in self.store.items("customers"):
                try:
                    for pending in decisions_of(raw, key.decode()):
                        clock.schedule(pending)
                except ValueError:  # CustomerCodecError, or a value without its customer id
                    unreadable += 1  # written by an incompatible version: never joined again
            if unreadable:
                log.warning("customers_unreadable", partition=self.partition, count=unreadable)
        return clock

    # -- the three inputs --------------------------------------------------------------------
    def _answer(self, request: dict[str, Any], record: InputRecord, decider: Decider,
                started: float) -> None:
        clock = self._advance(request["ts"], decider)
        cid = request["customer_id"]
        customer = self._customer(cid)
        if self._known(customer, decision_id_for(request["request_id"])) is not None:
            log.info("request_duplicate", request_id=request["request_id"])
            self._out.duplicates += 1
            return
        segment = segment_of(request, customer.profile.segment)
        decided = decider.decide(request, customer, self._evidence(customer, segment),
                                 self.population)
        if decided.pending is not None:
            self._put(cid, decided.customer.with_decision(decided.pending))
            clock.schedule(decided.pending)
        decision = decided.decision
        decision["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        self._out.decisions.append(decision)
        self._out.records.append((self._decisions_topic, cid.encode(), _dumps(decision)))

    def _learn(self, outcome: dict[str, Any], record: InputRecord, decider: Decider,
               started: float) -> None:
        clock = self._advance(outcome["ts"], decider)
        cid = outcome["customer_id"]
        customer = self._customer(cid)
        if customer.seen_outcomes.seen_before(outcome["outcome_id"]):
            log.info("outcome_duplicate", outcome_id=outcome["outcome_id"])
            self._out.duplicates += 1
            return
        pending = self._known(customer, outcome["decision_id"])
        if pending is None:
            self._reject(f"unknown decision_id {outcome['decision_id']!r} for this customer "
                         "(never made here, or forgotten after its grace period)", record)
            return
        customer = customer.replace(
            seen_outcomes=customer.remembered_outcome(outcome["outcome_id"]))
        self._settle(clock, decider.learn(
            self._evidence(customer, pending.segment), customer, pending, outcome,
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
        self._put(cid, observed.customer)
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
        # what is forgotten is judged by the event time before this record: a record never
        # makes the decision it is about forgotten (an outcome that comes after its decision's
        # grace period, and moves time past it, is recognised as late, not refused)
        self._horizon_ms = clock.watermark_ms
        for cid, decision_id in clock.advance(ts):
            customer = self._customer(cid)
            pending = customer.decision(decision_id)
            if pending is None or pending.is_settled:  # settled by an outcome meanwhile
                continue
            self._settle(clock, decider.expire(
                self._evidence(customer, pending.segment), customer, pending, self.population))
        closed = clock.rollups.flush(clock.watermark_ms)
        send = self._out.records.append
        for rollup in closed:
            send((self._deltas_topic, b"rollup", _dumps(rollup)))
        if closed:  # a roll-up window closed: publish the partition's in-stream statistics
            self._publish_snapshots(clock.watermark_ms, decider)
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
        return self._state.customer(cid)

    def _put(self, cid: str, customer: CustomerState) -> None:
        self._state.put(cid, customer, self._horizon_ms)

    def _known(self, customer: CustomerState, decision_id: str) -> PendingDecision | None:
        """The customer's decision ``decision_id`` unless its grace period is over."""
        pending = customer.decision(decision_id)
        if pending is not None and pending.is_settled:
            horizon = self._horizon_ms
            if horizon is not None and forget_at(pending) <= horizon:
                return None
        return pending

    def _write_back(self) -> None:
        """The batch is done: its outcome deltas as one record (or a few), its state written."""
        deltas = self._deltas
        for start in range(0, len(deltas), OUTCOMES_PER_RECORD):
            rows = deltas[start:start + OUTCOMES_PER_RECORD]
            self._out.records.append((self._deltas_topic, b"outcomes", _dumps({
                "schema_version": 1, "kind": "outcomes", "ts": max(r["ts"] for r in rows),
                "partition": self.partition, "outcomes": rows})))
        deltas.clear()
        self._state.write_back(self.clock.watermark_ms)

    def _evidence(self, customer: CustomerState, segment: str) -> Evidence:
        pooled = self._state.pooled
        return Evidence(customer.arms, pooled(SEGMENT_KEY + segment.encode()),
                        pooled(POPULATION_KEY))

    def _settle(self, clock: PartitionClock, learned: Learned) -> None:
        """Store what an outcome or an expired window taught, keep the decision (settled),
        publish the deltas."""
        p = learned.pending
        evidence = learned.evidence
        self._put(p.customer_id, learned.customer.replace(arms=evidence.customer).with_decision(p))
        self._state.set_pooled(SEGMENT_KEY + p.segment.encode(), evidence.segment)
        self._state.set_pooled(POPULATION_KEY, evidence.population)
        for rec in learned.records:
            if rec.get("kind") == "outcome":
                clock.rollups.add(rec)
                self._deltas.append(rec)
            else:  # drift and other population-level records
                self._out.records.append((self._deltas_topic, rec["kind"].encode(), _dumps(rec)))
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
