"""A partition's event time: the watermark, the attribution-window timers and the open delta
roll-up windows, and the rule that keeps one record from moving them.

Time is event time (the ``ts`` in the messages), so replay at any speed fires the same timers and
closes the same windows. Three kinds of timers: a decision's attribution window, a customer's
experiment window (``schedule_enrolment``), both in memory (an ``ExpiryQueue``: as many as
there are open decisions and enrolments, i.e. bounded by the traffic), and a customer's silence
(``schedule_silence``: one per customer with a profile, moved by each of their interactions,
for churn labels), in the partition's ``SilenceSchedule`` (``partition/silence.py``: on disk in
the worker, so memory does not grow with the customers). The silences fire at the same
watermark as the other timers, and ``advance`` merges both in ``(due, timer id)`` order, so
which schedule holds them changes nothing of what the partition does. Timers are not stored on
their own: the open decisions, enrolments and profiles live in their customers' values, and the
timers are rebuilt from them the first time a partition is seen after a start or rebalance
(attribution timers only for the decisions that expire after the partition's settled-through
mark: those before it have fired, ``partition/state.py``; event time resumes at the mark; the
silence schedule is wiped first). Roll-up windows still open when a worker stops are lost
(per-outcome records are not; a roll-up can be recomputed from them).

**The event-time rule** (``EventTimeRule``; settings ``STREAM_APP_MAX_FUTURE_S``,
``STREAM_APP_LAG_TOLERANCE_S``, ``STREAM_APP_IDLE_AFTER_S``):

1. *Future records are refused.* A record stamped more than ``max_future_ms`` ahead of the wall
   clock is dead-lettered (``admit``) and moves nothing; the schemas bound ``ts`` to
   [1970, 2100) as integers.
2. *No record moves time past the wall clock.* The partition's event time is the largest ``ts``
   of its records, each taken at most at the wall clock when it is read: a record stamped a
   little ahead (within ``max_future_ms``) is processed with its own ``ts`` but never settles a
   decision before its window has passed in real time.
3. *Lagging outcomes hold the timers back.* Each input topic of the partition has its own event
   time. Outcomes are what settle a decision before its timer, so while the outcomes topic lags
   (the last outcome read was written to Kafka more than ``lag_ms`` before it was read: a
   consumer catching up), attribution timers fire only up to the outcomes' own event time; after
   a start, while another input lags and no outcome has been read yet, they do not fire at all.
   A hold ends at the latest ``idle_ms`` of wall time after the last outcome read (or the start):
   an idle outcomes topic holds nothing back. An outcome inside its window is therefore never
   settled as ignored because its topic is read later than the requests.
4. *Idle partitions move with the wall clock.* When no record of the partition has been read
   for ``idle_ms``, its event time is the last record's plus the wall time since it was read
   (``idle_until``; the worker ticks every partition it owns once a second), so the timers of a
   partition that stopped receiving traffic still fire. A clock started on a partition's state
   (a restart, a new assignment) resumes from the latest decision that state holds, as if that
   were the last record read when the clock started (``resume``): a partition that reads
   nothing after a restart still fires its timers, and no restart moves event time further
   than its records did.

Rule 3 reads the Kafka timestamps of the records (``InputRecord.timestamp_ms``); records without
one (in-process drivers) never count as lagging, so there event time is simply the largest
``ts`` read. ``max_future_ms`` 0 turns rules 1 and 2 off (a replay of a simulation dated ahead of
the machine's clock).

>>> from stream_app.core.feedback import PendingDecision
>>> p = PendingDecision("dc-1", "c7", "o1", "default", "thompson", "all", 0.1, 0.5, 0, 1000)
>>> clock = PartitionClock()
>>> clock.schedule(p)
>>> clock.advance(999), clock.advance(1000)
([], [('c7', 'dc-1')])
>>> forget_at(p)
2000
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream_app.core.delta import DeltaAggregator
from stream_app.core.expiry import ExpiryQueue
from stream_app.core.feedback import PendingDecision
from stream_app.partition.silence import MemorySilence, SilenceSchedule
from stream_app.schemas import InvalidMessage
from stream_app.settings import Settings

__all__ = ["ENROLMENT_TIMER", "EventTimeRule", "PartitionClock", "SILENCE_TIMER", "TimestampRefused",
           "forget_at"]

GRACE_FACTOR = 1.0  # a settled decision is kept this many attribution windows more, for late outcomes
OUTCOMES = "outcomes"  # the input topic whose lag holds the timers back (contract name)
_SEP = "\x1f"  # between a timer's decision id and its customer id (in neither)
ENROLMENT_TIMER = "\x1eexp:"  # an enrolment's timer: this + experiment id, for the decision id
SILENCE_TIMER = "\x1esilence"  # a customer's silence timer (churn labels), for the decision id
_NOTHING = -(2**63)  # a hold before any outcome was read: no timer fires


def forget_at(pending: PendingDecision) -> int:
    """When a settled decision is forgotten: one more attribution window after it expired
    (until then a late outcome is recognised as late, after it as unknown)."""
    window = pending.expires_at_ms - pending.decided_at_ms
    return pending.expires_at_ms + int(window * GRACE_FACTOR)


def wall_clock_ms() -> int:
    """The wall clock, epoch milliseconds."""
    return time.time_ns() // 1_000_000


class TimestampRefused(InvalidMessage):
    """A record stamped too far ahead of the wall clock (rule 1)."""


class _Timestamped(Protocol):
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class EventTimeRule:
    """The bounds of a partition's event time (the module docstring states the rule).

    Parameters
    ----------
    max_future_ms
        How far ahead of the wall clock a record may be stamped (0: no wall-clock bound).
    lag_ms
        A record read this long after Kafka stored it was read by a consumer catching up.
    idle_ms
        Wall time without a record after which a topic (or the whole partition) counts as idle.
    wall_ms
        The wall clock (tests give a fake one).
    """

    max_future_ms: int = 300_000
    lag_ms: int = 5_000
    idle_ms: int = 10_000
    wall_ms: Callable[[], int] = wall_clock_ms

    @classmethod
    def of(cls, settings: Settings, wall_ms: Callable[[], int] = wall_clock_ms) -> EventTimeRule:
        """The rule the settings ask for."""
        return cls(int(settings.max_future_s * 1000), int(settings.lag_tolerance_s * 1000),
                   int(settings.idle_after_s * 1000), wall_ms)

    @classmethod
    def default(cls) -> EventTimeRule:
        """The rule of the default settings."""
        return cls.of(Settings())


@dataclass(slots=True)
class _Source:
    """What the partition read last from one input topic."""

    time: int | None = None  # the largest event time of its records (rule 2 applied)
    read_at: int = 0  # wall clock of the last batch read
    lagging: bool = False  # the last record of that batch was read more than lag_ms late


@dataclass
class PartitionClock:
    """The event time of one partition: ``admit`` a record's timestamp (or refuse it), say which
    topic a batch comes from (``reading``), ``advance`` to each record's ``ts`` (the timers that
    fired), ``close_rollups`` after it. ``timers`` holds the attribution and enrolment timers,
    ``silences`` the customers' silences."""

    timers: ExpiryQueue = field(default_factory=ExpiryQueue)
    silences: SilenceSchedule = field(default_factory=MemorySilence)
    rollups: DeltaAggregator = field(
        default_factory=lambda: DeltaAggregator(window_s=60.0, allowed_lateness_s=60.0))
    rule: EventTimeRule = field(default_factory=EventTimeRule.default)
    _sources: dict[str, _Source] = field(default_factory=dict, repr=False)
    _source: _Source | None = field(default=None, repr=False)  # the batch's; None: a tick
    _time: int | None = field(default=None, repr=False)  # largest record event time (rule 2)
    _read_at: int | None = field(default=None, repr=False)  # wall clock of the last batch
    _started_at: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._started_at = self.rule.wall_ms()

    @property
    def watermark_ms(self) -> int | None:
        """The partition's event time as its timers see it (rules 2-4); ``None`` before any."""
        return self.timers.watermark_ms

    def schedule(self, pending: PendingDecision) -> None:
        """Set an open decision's attribution timer (a settled one needs none)."""
        if not pending.is_settled:
            self.timers.push(pending.expires_at_ms,
                             f"{pending.decision_id}{_SEP}{pending.customer_id}")

    def schedule_enrolment(self, customer_id: str, experiment: str, until_ms: int) -> None:
        """Set the timer that settles a customer's enrolment when its window closes."""
        self.timers.push(until_ms, f"{ENROLMENT_TIMER}{experiment}{_SEP}{customer_id}")

    def cancel(self, customer_id: str, decision_ids: Iterable[str] = (),
               experiments: Iterable[str] = (), silence_ms: int | None = None) -> int:
        """Drop a customer's timers (an erasure): its decisions', its enrolments' and its
        silence, due at ``silence_ms`` (the due of the customer's profile); the number of
        timers that were set."""
        cancel = self.timers.cancel
        names = [*decision_ids, *(f"{ENROLMENT_TIMER}{e}" for e in experiments)]
        cancelled = sum(cancel(f"{name}{_SEP}{customer_id}") for name in names)
        if silence_ms is not None:
            cancelled += self.silences.cancel(customer_id, silence_ms)
        return cancelled

    def schedule_silence(self, customer_id: str, due_ms: int | None,
                         previous_ms: int | None = None) -> None:
        """Set, or move from ``previous_ms`` (one per customer), the timer at which a customer
        still silent by then becomes churn labels (``ModelSuite.silence_due_ms`` of their
        profile now and before: ``None`` where it has none)."""
        self.silences.move(customer_id, previous_ms, due_ms)

    def schedule_silences(self, entries: list[tuple[str, int]]) -> None:
        """Set the silence timers of customers that have none, ``(customer id, due_ms)``,
        together (a rebuild from the profiles)."""
        self.silences.add(entries)

    def resume(self, ts: int) -> None:
        """The clock starts on a partition whose state holds decisions up to event time ``ts``:
        rule 4 counts the wall time since the start from there, until a record is read."""
        if self._time is None or ts > self._time:
            self._time = ts
            if self._read_at is None:
                self._read_at = self._started_at

    def admit(self, ts: int) -> None:
        """Raise ``TimestampRefused`` for a record stamped too far ahead of the wall clock."""
        limit = self.rule.max_future_ms
        if limit:
            ahead = ts - self.rule.wall_ms()
            if ahead > limit:
                raise TimestampRefused(
                    f"timestamp in the future: ts {ts} is {ahead / 1000:.0f} s ahead of the "
                    f"wall clock (at most {limit / 1000:.0f} s allowed)")

    def reading(self, source: str | None, records: Iterable[_Timestamped] = ()) -> None:
        """The records that follow come from input topic ``source`` (``None``: a tick, no
        record); ``records`` are the batch, whose Kafka timestamps tell whether the topic lags."""
        if source is None:
            self._source = None
            return
        now = self.rule.wall_ms()
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Source()
        stamps = [r.timestamp_ms for r in records if r.timestamp_ms is not None]
        state.lagging = bool(stamps) and now - stamps[-1] > self.rule.lag_ms
        state.read_at = self._read_at = now
        self._source = state

    def advance(self, ts: int) -> list[tuple[str, str]]:
        """Move event time to ``ts`` (a record of the batch being read, or a tick); the
        (customer id, decision id) of the timers that fired."""
        now = self.rule.wall_ms()
        if self.rule.max_future_ms:
            ts = min(ts, now)  # rule 2
        target = ts
        source = self._source
        if source is not None:
            source.time = ts if source.time is None else max(source.time, ts)
            self._time = ts if self._time is None else max(self._time, ts)
            target = self._time
        elif self._time is not None:
            target = max(self._time, ts)
        hold = self._hold(now)
        if hold is not None:
            if hold == _NOTHING:
                return []
            target = min(target, hold)
        timers = self.timers.expire(target)
        watermark = self.timers.watermark_ms
        silences = self.silences.fire(target if watermark is None else watermark)
        if silences:  # in the order of one queue holding both
            timers = list(heapq.merge(timers, [(due, f"{SILENCE_TIMER}{_SEP}{customer_id}")
                                               for due, customer_id in silences]))
        fired = []
        for _, timer in timers:
            decision_id, _, customer_id = timer.partition(_SEP)
            fired.append((customer_id, decision_id))
        return fired

    def close_rollups(self) -> list[dict[str, Any]]:
        """The roll-up windows that closed at the current event time."""
        watermark = self.watermark_ms
        return [] if watermark is None else self.rollups.flush(watermark)

    def idle_until(self) -> int | None:
        """Rule 4: the event time an idle partition has reached (the last record's plus the
        wall time since it was read), or ``None`` while it is not idle (or has read nothing and
        resumed from nothing)."""
        if self._time is None or self._read_at is None:
            return None
        now = self.rule.wall_ms()
        idle = now - self._read_at
        if idle < self.rule.idle_ms:
            return None
        ts = self._time + idle
        return min(ts, now) if self.rule.max_future_ms else ts

    def _hold(self, now: int) -> int | None:
        """Rule 3: how far the timers may go while the outcomes topic lags (``_NOTHING``: not
        at all), or ``None`` when nothing holds them back."""
        idle_ms = self.rule.idle_ms
        outcomes = self._sources.get(OUTCOMES)
        if outcomes is not None:
            if outcomes.lagging and now - outcomes.read_at < idle_ms:
                return _NOTHING if outcomes.time is None else outcomes.time
            return None
        if now - self._started_at < idle_ms and any(s.lagging for s in self._sources.values()):
            return _NOTHING
        return None
