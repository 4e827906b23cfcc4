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
worker). What the fleet learns (River models, pooled and contextual arms, experiment
statistics, shadow estimators: ``fleet/``) the session reads from the fleet's latest snapshot,
with its own lessons since on top (``FleetView``); the lessons of a batch leave as one
``learning`` record, for the fleet's learner.

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
>>> interaction = {"event_id": "e1", "customer_id": "c1", "ts": 1_764_000_000_100,
...                "type": "login"}
>>> out = session.process("interactions", [InputRecord(b"c1", orjson.dumps(interaction))])
>>> [topic for topic, _, _ in out.records]
['customer-scores', 'learning']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, Evidence, Learned, decision_id_for, segment_of
from stream_app.core.feedback import PendingDecision
from stream_app.deadletter import dead_letter, letter_key
from stream_app.fleet import POPULATION_KEY, FleetSnapshot, FleetView, segment_key, source_of
from stream_app.experiments.enrolment import Enrolments
from stream_app.partition.clock import (
    ENROLMENT_TIMER,
    SILENCE_TIMER,
    EventTimeRule,
    PartitionClock,
    forget_at,
)
from stream_app.partition.erasure import (ERASED_OUTPUTS, ERASURE, ERASURE_AUDIT, audit_record,
                                          erase_customer)
from stream_app.partition.silence import MemorySilence, SilenceSchedule
from stream_app.partition.state import SETTLED_KEY, PartitionState
from stream_app.partition.store import PartitionStore
from stream_app.pseudonym import Pseudonyms
from stream_app.schemas import Contract, InvalidMessage

__all__ = ["Emitted", "InputRecord", "PartitionSession", "SOURCES", "TABLES"]

log = structlog.get_logger("stream_app.partition")

# the input topics, contract names (an erasure request: ``partition/erasure.py``)
SOURCES = ("decision-requests", "outcomes", "interactions", ERASURE)
TABLES = ("customers", "enrolments")  # the state a partition keeps
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
    """What a batch produced: ``records`` to send, in order, as (topic, key, value: ``None``
    for a tombstone); the ``decisions`` made (for in-process drivers); counts of what was
    recognised as a duplicate or dead-lettered, and the dead letters' reasons (for the
    worker's metrics)."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: int = 0
    dead_letter_reasons: list[str] = field(default_factory=list)


class PartitionSession:
    """The engine for one partition.

    Parameters
    ----------
    partition
        The partition number (written into pending decisions and metrics; ``p<n>`` is the
        source id of its learning records).
    store
        The partition's tables (``TABLES``).
    decider
        Returns the decision core of the configuration in force, ``None`` while there is none.
    fleet
        Returns the fleet's latest snapshot (``None`` while there is none); a newer one is read
        at the start of the next batch.
    topic
        Maps a contract topic name to the topic to write (the worker's prefix).
    contract
        Validates input messages; the ``schemas/`` contract by default.
    seed
        Seeds the population learners of the empty view, before any snapshot.
    epoch
        Names this life of the partition's session in its learning records (default: the
        wall clock in microseconds, different at every start and hand-over).
    event_time
        The bounds of the partition's event time (``partition/clock.py``; default: the
        settings' defaults).
    pseudonyms
        Replaces the customer id on ``customer-scores``, the outcome rows of ``delta-metrics``
        and ``erasure-audit`` (``stream_app/pseudonym.py``; default: the id itself).
    publish_per_batch
        Whether each batch's outcome deltas and lessons (``delta-metrics`` kind ``outcomes``,
        ``learning``) leave with the batch (the default) or when the driver asks (``publish``:
        the worker, once per commit, so a commit carries one such record per partition whatever
        the number of batches in it).
    silences
        Where the customers' silence timers are kept (``partition/silence.py``): the worker's
        is on disk; default: in memory. Wiped and rebuilt with the clock; ``close`` closes it.
    """

    def __init__(self, partition: int, store: PartitionStore,
                 decider: Callable[[], Decider | None], *,
                 fleet: Callable[[], FleetSnapshot | None] | None = None,
                 topic: Callable[[str], str] = str, contract: Contract | None = None,
                 seed: int = 0, epoch: int | None = None,
                 event_time: EventTimeRule | None = None,
                 pseudonyms: Pseudonyms | None = None, publish_per_batch: bool = True,
                 silences: SilenceSchedule | None = None) -> None:
        self.partition = partition
        self.store = store
        self._decider = decider
        self._fleet = fleet
        self._contract = contract or default_contract()
        self._topics = {name: topic(name) for name in (
            "decisions", "delta-metrics", "customer-scores", "dead-letter", "learning",
            ERASURE_AUDIT, *ERASED_OUTPUTS)}
        self._pseudonym = pseudonyms or Pseudonyms(None)
        self._decisions_topic = self._topics["decisions"]
        self._deltas_topic = self._topics["delta-metrics"]
        self._source = source_of(partition).encode()
        self.view = FleetView(source_of(partition),
                              time.time_ns() // 1000 if epoch is None else epoch, seed=seed)
        self._clock: PartitionClock | None = None
        self._building: Iterator[None] | None = None  # a clock rebuild in steps, under way
        self._event_time = event_time or EventTimeRule.default()
        self._silences = MemorySilence() if silences is None else silences
        self._state = PartitionState(store)
        self._state.lapse = self._lapsed
        # every decision that expired at or before this has been settled (its timer fired)
        self._settled_through: int | None = None
        self._horizon_ms: int | None = None  # the partition's event time before this record
        self._deltas: list[dict[str, Any]] = []  # outcome deltas not yet published, in order
        self._publish_per_batch = publish_per_batch
        self._out = Emitted()
        self._handlers = {"decision-requests": self._answer, "outcomes": self._learn,
                          "interactions": self._observe}

    # -- the entry points --------------------------------------------------------------------
    def process(self, source: str, records: Sequence[InputRecord]) -> Emitted:
        """Handle a batch of records read, in order, from input topic ``source`` (a contract
        name, ``SOURCES``); returns what to send. A record that cannot be processed is
        dead-lettered with the reason; it never stops the batch. The customers of the batch are
        read in one multi-get and written once each, when the batch is done. Erasure requests
        need no config and do not move event time (``erase``)."""
        if source == ERASURE:
            return self.erase(records)
        handler = self._handlers[source]
        decider = self._decider()
        self._out = out = Emitted()
        started = time.perf_counter()
        self._read_fleet()
        if decider is None:
            for record in records:
                self._reject("no engine config in force: publish one to engine-config", record)
            return out
        accepted: list[tuple[dict[str, Any], InputRecord]] = []
        self.clock.reading(source, records)  # event time: which topic, and whether it lags
        for record in records:
            try:
                accepted.append((self._decode(source, record), record))
            except InvalidMessage as exc:
                self._reject(str(exc), record)
        self._state.enrolments = bool(decider.experiments)
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
        self._read_fleet()
        if decider is not None:
            self.clock.reading(None)  # not a record: no input topic's time moves
            self._state.enrolments = bool(decider.experiments)
            try:
                self._advance(ts, decider)
            finally:
                self._write_back()
        return out

    def erase(self, records: Sequence[InputRecord]) -> Emitted:
        """Handle a batch of erasure requests (``partition/erasure.py``): each customer's rows
        deleted from every table, their timers cancelled, a tombstone for each compacted output
        keyed by customer id, then one ``erasure-audit`` record. A request that cannot be read
        is dead-lettered with the reason. Needs no config; event time does not move."""
        self._out = out = Emitted()
        clock = self.clock  # built (from the store) before anything is deleted from it
        for record in records:
            try:
                request = self._decode(ERASURE, record)
            except InvalidMessage as exc:
                self._reject(str(exc), record)
                continue
            try:
                self._erase(request, clock)
            except Exception as exc:  # noqa: BLE001 - one request lost to a bug, not the batch
                log.exception("erasure_failed", topic=record.topic, offset=record.offset)
                self._reject(f"internal error: {type(exc).__name__}: {exc}", record)
        return out

    def _erase(self, request: dict[str, Any], clock: PartitionClock) -> None:
        cid = request["customer_id"]
        erased = erase_customer(self.store, TABLES, cid, clock, self.view.budget,
                                self._settled_through,
                                silence_due=self.view.suite.silence_due_ms)
        name = self._pseudonym(cid)
        key = name.encode()
        send = self._out.records.append
        for topic in ERASED_OUTPUTS:
            send((self._topics[topic], key, None))
        audit = audit_record(request, erased, partition=self.partition, customer_id=name,
                             pseudonymised=self._pseudonym.enabled,
                             erased_at=int(time.time() * 1000))
        send((self._topics[ERASURE_AUDIT], key, _dumps(audit)))
        log.info("customer_erased", request_id=request["request_id"], partition=self.partition,
                 found=erased.found, timers_cancelled=erased.timers_cancelled)

    def tick_idle(self) -> Emitted | None:
        """Fire what is due on a partition that has read nothing for a while (its event time
        moves with the wall clock: ``PartitionClock.idle_until``); ``None`` when not idle."""
        ts = self.clock.idle_until()
        return None if ts is None else self.tick(ts)

    def _read_fleet(self) -> None:
        """Read from the fleet's latest snapshot when there is a newer one."""
        if self._fleet is not None:
            snapshot = self._fleet()
            if snapshot is not None and snapshot is not self.view.snapshot:
                self.view.install(snapshot)

    @property
    def clock(self) -> PartitionClock:
        """The partition's event time and timers, rebuilt on first use from the open decisions
        kept in the customers' values (read without decoding the rest of each value)."""
        if self._clock is None:
            for _ in self.rebuild_clock():
                pass
        return self._clock

    def rebuild_clock(self, chunk: int = 10_000) -> Iterator[None]:
        """Rebuild the clock, pausing (a ``yield``) after every ``chunk`` customers, so a
        driver with other work (the worker's event loop: commits, heartbeats) can do it in
        steps; the clock is in place once the iteration ends. A use of ``clock`` meanwhile
        finishes the rebuild at once."""
        if self._clock is not None:
            return
        building = self._building
        if building is None:
            building = self._building = self._rebuild(chunk)
        for _ in building:
            yield

    def close(self) -> None:
        """The partition leaves this process: release its silence schedule."""
        self._silences.close()

    def _rebuild(self, chunk: int) -> Iterator[None]:
        self._silences.clear()  # derived from the profiles read below
        clock = PartitionClock(rule=self._event_time, silences=self._silences)
        # the decisions that expired by the settled-through mark have had their timers fired:
        # event time starts there, and they are settled as their customers are read
        through = self._settled_through = self._state.settled_through()
        if through is not None:
            clock.timers.advance(through)
        unreadable = 0
        latest = through  # the latest event time the state holds: where event time resumes
        reopen = self.view.budget.reopen
        silence_due = self.view.suite.silence_due_ms
        silences: list[tuple[str, int]] = []  # written to the schedule a chunk at a time
        for n, (key, raw) in enumerate(self.store.items("customers"), 1):
            if key == SETTLED_KEY:
                continue
            try:
                decisions, clocks = CustomerState.timers_of(raw, cid := key.decode())
                for pending in decisions:
                    if latest is None or pending.decided_at_ms > latest:
                        latest = pending.decided_at_ms
                    if through is not None and pending.expires_at_ms <= through:
                        continue  # lapsed: settled when the customer is read
                    clock.schedule(pending)
                    reopen(pending)  # an open offer counts against its budget
                if (due := silence_due(clocks)) is not None:
                    silences.append((cid, due))
            except ValueError:  # CustomerCodecError, or a value without its customer id
                unreadable += 1  # written by an incompatible version: never joined again
            if n % chunk == 0:
                clock.schedule_silences(silences)
                silences.clear()
                yield
        clock.schedule_silences(silences)
        for key, raw in self.store.items("enrolments"):
            try:
                for e in Enrolments.decode(raw).open():
                    clock.schedule_enrolment(key.decode(), e.experiment, e.until_ms)
            except ValueError:
                unreadable += 1
        if unreadable:
            log.warning("customers_unreadable", partition=self.partition, count=unreadable)
        if latest is not None:
            clock.resume(latest)
        self._clock, self._building = clock, None

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
        loaded = customer
        customer = decider.with_segment(customer, int(request["ts"]), self.view)
        segment = segment_of(request, customer.profile.segment)
        decided = decider.decide(request, customer, self._evidence(customer, segment),
                                 self.view)
        if decided.pending is not None:
            self._put(cid, decided.customer.with_decision(decided.pending))
            clock.schedule(decided.pending)
            watermark = clock.watermark_ms
            if watermark is not None and decided.pending.expires_at_ms <= watermark:
                self._advance(request["ts"], decider)  # lapsed already (a late request): now
        elif decided.customer is not loaded:  # no offer, but enrolled (or given a segment)
            self._put(cid, decided.customer)
        if decided.customer.enrolments is not loaded.enrolments:  # enrolled: its window's timer
            for e in decided.customer.enrolments.open():
                if loaded.enrolments.get(e.experiment) is None:
                    clock.schedule_enrolment(cid, e.experiment, e.until_ms)
        decision = decided.decision
        decision["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        self._out.decisions.append(decision)
        self._out.records.append((self._decisions_topic, cid.encode(), _dumps(decision)))

    def _learn(self, outcome: dict[str, Any], record: InputRecord, decider: Decider,
               started: float) -> None:
        cid = outcome["customer_id"]
        if self._customer(cid).decision(outcome["decision_id"]) is None and not \
                self._customer(cid).seen_outcomes.seen_before(outcome["outcome_id"]):
            # refused before it moves event time: an outcome for no decision of this customer
            # (a stranger's, a forged one) must not fire anyone's timers
            self._reject(f"unknown decision_id {outcome['decision_id']!r} for this customer "
                         "(never made here, or forgotten after its grace period)", record)
            return
        clock = self._advance(outcome["ts"], decider)
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
            self._evidence(customer, pending.segment), customer, pending, outcome, self.view))

    def _observe(self, interaction: dict[str, Any], record: InputRecord, decider: Decider,
                 started: float) -> None:
        self._advance(interaction["ts"], decider)
        cid = interaction["customer_id"]
        before = self._customer(cid)
        try:
            observed = decider.observe(before, interaction, self.view)
        except ValueError as exc:  # an interaction the profile cannot take (e.g. a bad amount)
            self._reject(f"interaction rejected: {exc}", record)
            return
        if observed.duplicate:
            log.info("interaction_duplicate", event_id=interaction["event_id"])
            self._out.duplicates += 1
            return
        self._put(cid, observed.customer)
        due = self.view.suite.silence_due_ms  # one timer per customer, moved by each interaction
        self.clock.schedule_silence(cid, due(observed.customer.profile), due(before.profile))
        if observed.scores is not None:
            scores, name = observed.scores, cid
            if self._pseudonym.enabled:
                name = self._pseudonym(cid)
                scores = {**scores, "customer_id": name}
            self._out.records.append(
                (self._topics["customer-scores"], name.encode(), _dumps(scores)))

    # -- event time ----------------------------------------------------------------------------
    def _advance(self, ts: int, decider: Decider) -> PartitionClock:
        """Move the partition's event time: fire due attribution timers, close roll-up windows."""
        clock = self.clock
        # what is forgotten is judged by the event time before this record: a record never
        # makes the decision it is about forgotten (an outcome that comes after its decision's
        # grace period, and moves time past it, is recognised as late, not refused)
        self._horizon_ms = clock.watermark_ms
        lapsed = False
        for cid, decision_id in clock.advance(ts):
            customer = self._customer(cid)
            if decision_id.startswith(ENROLMENT_TIMER):  # a customer's experiment window closed
                settled = decider.settle_enrolment(
                    customer, decision_id[len(ENROLMENT_TIMER):], self.view)
                if settled is not customer:
                    self._put(cid, settled)
                continue
            if decision_id == SILENCE_TIMER:  # silent since: churn labels for the fleet
                silent = decider.silence(customer, clock.watermark_ms, self.view)
                if silent is not customer:
                    self._put(cid, silent)
                continue
            pending = customer.decision(decision_id)
            if pending is None or pending.is_settled:  # settled by an outcome meanwhile
                continue
            self._settle(clock, decider.expire(
                self._evidence(customer, pending.segment), customer, pending, self.view),
                hold=True)
            lapsed = True
        watermark = self._settled_through = clock.watermark_ms
        if lapsed:
            self._state.mark_settled(watermark)
        send = self._out.records.append
        for rollup in clock.close_rollups():
            send((self._deltas_topic, b"rollup", _dumps(rollup)))
        return clock

    # -- state -------------------------------------------------------------------------------
    def _customer(self, cid: str) -> CustomerState:
        return self._state.customer(cid)

    def _put(self, cid: str, customer: CustomerState) -> None:
        self._state.put(cid, customer, self._horizon_ms)

    def _lapsed(self, customer: CustomerState) -> CustomerState:
        """A customer as read, with the decisions that lapsed since it was written settled as
        their timers settled them (in the timers' order), teaching nothing again."""
        through = self._settled_through
        if through is None:
            return customer
        lapsed = [p for p in customer.decisions
                  if p.settled_by is None and p.expires_at_ms <= through]
        if lapsed:
            decider = self._decider()
            if decider is not None:
                lapsed.sort(key=lambda p: (p.expires_at_ms, p.decision_id))
                for pending in lapsed:
                    customer = decider.lapse(customer, pending, self.view)
        return customer

    def _known(self, customer: CustomerState, decision_id: str) -> PendingDecision | None:
        """The customer's decision ``decision_id`` unless its grace period is over."""
        pending = customer.decision(decision_id)
        if pending is not None and pending.is_settled:
            horizon = self._horizon_ms
            if horizon is not None and forget_at(pending) <= horizon:
                return None
        return pending

    def publish(self) -> Emitted:
        """The outcome deltas and lessons not yet published (``publish_per_batch`` off): one
        ``delta-metrics`` record (or a few) and one ``learning`` record (or a few)."""
        self._out = out = Emitted()
        self._publish()
        return out

    def _write_back(self) -> None:
        """The batch is done: its state written; its outcome deltas and lessons published
        (``publish_per_batch``)."""
        if self._publish_per_batch:
            self._publish()
        self._state.write_back(self.clock.watermark_ms)

    def _publish(self) -> None:
        deltas = self._deltas
        for start in range(0, len(deltas), OUTCOMES_PER_RECORD):
            rows = deltas[start:start + OUTCOMES_PER_RECORD]
            if self._pseudonym.enabled:
                rows = [{**r, "customer_id": self._pseudonym(r["customer_id"])} for r in rows]
            self._out.records.append((self._deltas_topic, b"outcomes", _dumps({
                "schema_version": 1, "kind": "outcomes", "ts": max(r["ts"] for r in rows),
                "partition": self.partition, "outcomes": rows})))
        deltas.clear()
        watermark = None if self._clock is None else self._clock.watermark_ms
        for lessons in self.view.records(watermark):
            self._out.records.append((self._topics["learning"], self._source, _dumps(lessons)))

    def _evidence(self, customer: CustomerState, segment: str) -> Evidence:
        pooled = self.view.pooled
        return Evidence(customer.arms, pooled(segment_key(segment)), pooled(POPULATION_KEY))

    def _settle(self, clock: PartitionClock, learned: Learned, hold: bool = False) -> None:
        """Store what an outcome or an expired window taught (``hold``: a lapse, held rather
        than written: ``partition/state.py``), keep the decision (settled), publish the
        deltas."""
        cid, customer = learned.pending.customer_id, learned.settled_customer()
        if hold:
            self._state.hold(cid, customer, self._horizon_ms)
        else:
            self._put(cid, customer)
        for rec in learned.records:
            if rec.get("kind") == "outcome":
                clock.rollups.add(rec)
                self._deltas.append(rec)
            else:
                self._out.records.append((self._deltas_topic, rec["kind"].encode(), _dumps(rec)))

    # -- input -------------------------------------------------------------------------------
    def _decode(self, source: str, record: InputRecord) -> dict[str, Any]:
        msg = self._contract.decode(source, record.value)
        key = record.key
        if key is None or key.decode("utf-8", "replace") != msg["customer_id"]:
            raise InvalidMessage("message key must be the customer_id (co-partitioning)")
        self.clock.admit(msg["ts"])  # a record stamped in the future is refused
        return msg

    def _reject(self, reason: str, record: InputRecord) -> None:
        letter = dead_letter(reason, topic=record.topic, partition=self.partition,
                             offset=record.offset, timestamp=record.timestamp_ms, key=record.key,
                             value=record.value, failed_at=int(time.time() * 1000))
        log.warning("dead_letter", reason=letter["reason"], topic=record.topic,
                    offset=record.offset)
        self._out.dead_letters += 1
        self._out.dead_letter_reasons.append(letter["reason"])
        self._out.records.append((self._topics["dead-letter"], letter_key(record.key),
                                  _dumps(letter)))
