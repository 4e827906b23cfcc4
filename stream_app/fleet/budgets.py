"""Budgets that hold across the fleet: an offer's count budget and its value budget per day,
used up by the offers accepted on every partition, never overspent.

**What is used up.** An accepted offer -- a decision settled with a positive reward, inside its
attribution window -- uses up 1 of its offer's count budget (``budgets.<offer>.count``: accepted
offers in total) and the offer's ``value`` of its value budget (``budgets.<offer>.value_per_day``)
of the UTC day of the *decision* (event time): a value budget of V allows ``floor(V / value)``
accepted offers per day; an offer of value 0 costs nothing. The budget is counted on *lines*:
``(offer, ALL_TIME)`` for the count, ``(offer, day)`` for one day of the value budget.

**How the fleet keeps to it.**

- A partition's *claim* on a line is what it may have to pay: the offers it showed that were
  accepted, plus those still open (shown, neither answered nor expired: each may still be
  accepted). It knows its claim exactly: its open offers are counted in its memory
  (``PartitionBudget``, rebuilt at a start from the open decisions in its customers' values),
  its accepted ones are those of the last fleet snapshot plus its own outcome lessons since,
  added with ``learn_consumption`` -- the function the learner counts the fleet's with, so
  nothing is counted twice (the overlay pattern of ``evidence.learn_evidence``).
- The learner (``FleetBudgets``, part of ``PopulationState``: in every snapshot, and restored
  with the learner) counts every partition's accepted offers from the outcome lessons and its
  open ones from the numbers its learning records report, and grants every partition a
  *share* of each line: the most its claim may reach. A partition shows a budgeted offer only
  while one more claim stays within its share in the snapshot it reads; otherwise the offer
  is removed from the candidates with its reason (``rule_reasons``), never silently.
- At every snapshot the learner divides again what is left (the cap minus every claim)
  evenly among the partitions it knows, the busiest first for the remainder. A share is only
  raised out of what no partition may still use; a share that was lowered still counts at its
  old value until the partition's learning records say that it reads the snapshot that lowered
  it (each record names the snapshot version its partition reads, ``read``).

**The bound.** So at every moment the most that all partitions together may still reach is
within the cap, and the accepted offers of a line never exceed it: a count budget of N is never
overspent, nor is a value budget (the overspend bound is 0). One case escapes it: a partition
that changes owner (a rebalance, a restart after a crash) is resumed from the last snapshot and
its own store, so the accepted offers of the previous owner that the learner had not applied
yet are unknown to the new owner, which may show that many again: at a hand-over, a line may be
overspent by at most the previous owner's share of it. Open offers are not affected (the new
owner counts them from its customers' values). A budget lowered by a new config below what is
claimed already is not taken back: no more are shown until the claims fall below it. A value
budget is counted in accepted offers: a new ``value`` of the offer re-prices the day.

**What it costs.** A partition waits for its first share (a snapshot of the learner after its
first learning record: about a second in the worker); a share a partition does not use is out of
the others' reach until the learner divides again and the partition acknowledges it (about two
snapshot intervals); a partition sends a learning record with nothing to teach only to ask for
its first share or to release an old one (one after a snapshot that lowered its share).
``tests/unit/test_budgets.py`` checks the first wait (at most two snapshot intervals after the
partition's first request) and that the whole budget is used when demand lasts. Outcomes that
come after the attribution window are not counted (they are not learned from either).

>>> from stream_app.core.catalogue import parse_config
>>> config = parse_config({"version": "v1", "offers": [{"id": "gift", "value": 10.0}],
...                        "use_cases": [{"id": "default"}],
...                        "budgets": {"gift": {"count": 3, "value_per_day": 25.0}}})
>>> fleet = FleetBudgets()
>>> fleet.learn({"source": "p0", "epoch": 1, "lessons": [], "budget": {"read": 1}})
>>> fleet.allocate(line_caps(config, day=0), version=2, day=0)
>>> fleet.share("p0", ("gift", ALL_TIME)), fleet.share("p0", ("gift", 0))   # 3 in total, 2 today
(3, 2)
>>> partition = PartitionBudget("p0")
>>> partition.install(fleet, version=2)
>>> gate = partition.gate(config, now_ms=0)
>>> partition.reserve("gift", 0); partition.reserve("gift", 0)   # two shown, not answered yet
>>> gate.out_of_budget("gift")
"budget: this partition's share of the value budget of 25 per day is taken (2 accepted or awaiting an answer here; 0 accepted fleet-wide)"
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from stream_app.core.catalogue import Budget, EngineConfig
    from stream_app.core.feedback import PendingDecision

__all__ = ["ALL_TIME", "BudgetGate", "Consumption", "FleetBudgets", "Line", "PartitionBudget",
           "day_cap", "day_of", "learn_consumption", "line_caps"]

log = structlog.get_logger("stream_app.fleet")

Line = tuple[str, int]  # (offer id, UTC day number), or (offer id, ALL_TIME) for the count
ALL_TIME = -1
DAY_MS = 86_400_000
DAYS_KEPT = 2  # day lines older than this many days before the learner's day are dropped
HISTORY_KEPT = 16  # per line and partition, the shares granted since its last acknowledgement


def day_of(ts_ms: int) -> int:
    """The UTC day of an event time (days since 1970-01-01).

    >>> day_of(86_399_999), day_of(86_400_000)
    (0, 1)
    """
    return int(ts_ms) // DAY_MS


def day_cap(budget: Budget, value: float) -> int | None:
    """How many accepted offers of value ``value`` one day of ``budget`` allows (``None``: no
    value budget, or an offer that costs nothing).

    >>> from stream_app.core.catalogue import Budget
    >>> day_cap(Budget(value_per_day=100.0), 30.0), day_cap(Budget(value_per_day=0.3), 0.1)
    (3, 3)
    """
    if budget.value_per_day is None or value <= 0:
        return None
    return math.floor(budget.value_per_day / value + 1e-9)


def line_caps(config: EngineConfig, day: int) -> dict[Line, int]:
    """Every budgeted line of ``config`` and its cap in accepted offers: the count lines, and the
    value lines of the day before ``day``, ``day`` and the day after (so that a partition
    crossing midnight finds its share granted)."""
    caps: dict[Line, int] = {}
    for offer_id, budget in config.budgets.items():
        if budget.count is not None:
            caps[offer_id, ALL_TIME] = budget.count
        cap = day_cap(budget, config.offers[config.index_of(offer_id)].value)
        if cap is not None:
            for d in (day - 1, day, day + 1):
                if d >= 0:  # event time starts in 1970; ALL_TIME is -1
                    caps[offer_id, d] = cap
    return caps


class Consumption:
    """Accepted offers per partition and line (what ``learn_consumption`` adds to)."""

    def __init__(self) -> None:
        self.accepted: dict[str, dict[Line, int]] = {}  # partition -> line -> accepted offers

    def add(self, source: str, line: Line, n: int = 1) -> None:
        lines = self.accepted.setdefault(source, {})
        lines[line] = lines.get(line, 0) + n

    def of(self, source: str, line: Line) -> int:
        return self.accepted.get(source, {}).get(line, 0)

    def total(self, line: Line) -> int:
        """The line's accepted offers on every partition."""
        return sum(lines.get(line, 0) for lines in self.accepted.values())

    def prune(self, first_day: int) -> None:
        """Forget the day lines before ``first_day`` (the count lines are kept)."""
        for lines in self.accepted.values():
            for line in [ln for ln in lines if ALL_TIME < ln[1] < first_day]:
                del lines[line]


def learn_consumption(target: Consumption, source: str, lesson: Mapping[str, Any]) -> None:
    """An outcome lesson (``k == "o"``) of partition ``source`` whose reward is positive: its
    offer was accepted, and uses up one of its count line and of its decision day's line.

    >>> used = Consumption()
    >>> learn_consumption(used, "p1", {"k": "o", "offer": "gift", "r": 1.0, "at": 5, "ts": 9})
    >>> learn_consumption(used, "p1", {"k": "o", "offer": "gift", "r": 0.0, "at": 6, "ts": 9})
    >>> used.accepted
    {'p1': {('gift', -1): 1, ('gift', 0): 1}}
    """
    if lesson.get("k") != "o" or not float(lesson["r"]) > 0:
        return
    at = lesson.get("at")
    offer, day = str(lesson["offer"]), day_of(int(at if at is not None else lesson["ts"]))
    target.add(source, (offer, ALL_TIME))
    target.add(source, (offer, day))


class FleetBudgets:
    """The learner's budgets: every partition's claims and the shares it granted them.

    ``learn`` takes each learning record once (after the learner's de-duplication);
    ``allocate`` divides the budgets at every new snapshot version.
    """

    def __init__(self) -> None:
        self.consumption = Consumption()
        self.open: dict[str, dict[Line, int]] = {}  # partition -> line -> open offers reported
        self.open_epoch: dict[str, int] = {}  # partition -> the life its open numbers are of
        self.read: dict[str, int] = {}  # partition -> newest snapshot version it said it reads
        # line -> partition -> [[version, share], ...]: the share granted from each version on
        self.grants: dict[Line, dict[str, list[list[int]]]] = {}
        self.rejected = 0  # lessons or reports that could not be read (logged)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]  # a field added since the state was written
        self.__dict__.update(state)

    # -- learning ---------------------------------------------------------------------------
    def learn(self, record: Mapping[str, Any]) -> None:
        """A learning record: the accepted offers of its outcome lessons, the open offers and
        the snapshot version its ``budget`` section reports."""
        source = str(record["source"])
        for lesson in record.get("lessons") or ():
            try:
                learn_consumption(self.consumption, source, lesson)
            except (KeyError, TypeError, ValueError) as exc:
                self._reject(source, exc)
        section = record.get("budget")
        if section:
            try:
                self._report(source, int(record["epoch"]), section)
            except (KeyError, TypeError, ValueError) as exc:
                self._reject(source, exc)

    def _reject(self, source: str, exc: Exception) -> None:
        self.rejected += 1
        log.warning("budget_lesson_rejected", source=source, error=f"{type(exc).__name__}: {exc}")

    def _report(self, source: str, epoch: int, section: Mapping[str, Any]) -> None:
        self.read[source] = max(self.read.get(source, 0), int(section.get("read") or 0))
        if "open" not in section:
            return
        known = self.open_epoch.get(source)
        if known is not None and epoch < known:
            return  # from an earlier life of the partition: its new owner reported already
        opens = self.open.get(source)
        if opens is None or known != epoch or section.get("full"):
            opens = self.open[source] = {}
            self.open_epoch[source] = epoch
        for offer, day, n in section["open"]:
            line = (str(offer), int(day))
            if int(n):
                opens[line] = int(n)
            else:
                opens.pop(line, None)

    # -- reading ----------------------------------------------------------------------------
    def claim(self, source: str, line: Line) -> int:
        """What partition ``source`` may have to pay on ``line``, as the learner knows it."""
        return self.consumption.of(source, line) + self.open.get(source, {}).get(line, 0)

    def share(self, source: str, line: Line) -> int | None:
        """The share of ``line`` granted to ``source`` in this state (``None``: none yet)."""
        history = self.grants.get(line, {}).get(source)
        return history[-1][1] if history else None

    def held(self, source: str, line: Line) -> int:
        """The most partition ``source`` may reach on ``line`` under any snapshot it may still
        read: the share of the version it last said it reads, or any granted since."""
        history = self.grants.get(line, {}).get(source)
        if not history:
            return 0
        read = self.read.get(source, 0)
        current = 0
        later = 0
        for version, share in history:
            if version <= read:
                current = share
            else:
                later = max(later, share)
        return max(current, later)

    def holding(self, source: str) -> bool:
        """Whether the learner holds more for ``source`` than its share, on some line, until it
        hears that the partition reads a newer snapshot."""
        return any(self.held(source, line) > history[source][-1][1]
                   for line, history in self.grants.items() if history.get(source))

    # -- dividing ---------------------------------------------------------------------------
    def divide(self, config: EngineConfig, version: int, ts_ms: int | None) -> None:
        """Divide the budgets of ``config`` for snapshot ``version`` at the learner's event time
        ``ts_ms`` (nothing before the learner has heard from any partition)."""
        if ts_ms is not None:
            day = day_of(ts_ms)
            self.allocate(line_caps(config, day), version, day)

    def allocate(self, caps: Mapping[Line, int], version: int, day: int | None) -> None:
        """Divide every budgeted line again for snapshot ``version`` (``caps``: ``line_caps``);
        ``day``: the learner's UTC day, older day lines are dropped."""
        parts = sorted(self.read)
        if day is not None:
            self._prune(day - DAYS_KEPT)
        if not parts:
            return
        everyone = sorted(set(parts) | set(self.consumption.accepted) | set(self.open))
        for line, cap in caps.items():
            claims = {p: self.claim(p, line) for p in everyone}
            committed = {p: max(claims[p], self.held(p, line)) for p in everyone}
            left = cap - sum(claims.values())
            share, extra = divmod(left, len(parts)) if left > 0 else (0, 0)
            order = sorted(parts, key=lambda p: (-claims[p], p))
            free = cap - sum(committed.values())
            granted = self.grants.setdefault(line, {})
            for i, p in enumerate(order):
                target = claims[p] + share + (1 if i < extra else 0)
                if target > committed[p]:
                    give = min(target - committed[p], max(free, 0))
                    free -= give
                    target = committed[p] + give
                self._grant(granted.setdefault(p, []), version, target, self.read.get(p, 0))

    @staticmethod
    def _grant(history: list[list[int]], version: int, share: int, read: int) -> None:
        if not history or history[-1][1] != share:
            history.append([version, share])
        first = 0  # keep the share in force at the version the partition reads, and later ones
        for i, (v, _) in enumerate(history):
            if v <= read:
                first = i
        del history[:first]
        while len(history) > HISTORY_KEPT:  # merge the oldest of the later ones: holds more
            history[1:3] = [[history[1][0], max(history[1][1], history[2][1])]]

    def _prune(self, first_day: int) -> None:
        self.consumption.prune(first_day)
        for opens in self.open.values():
            for line in [ln for ln in opens if ALL_TIME < ln[1] < first_day]:
                del opens[line]
        for line in [ln for ln in self.grants if ALL_TIME < ln[1] < first_day]:
            del self.grants[line]


class PartitionBudget:
    """A partition's reading of the fleet's budgets: the snapshot's ``FleetBudgets``, its own
    accepted offers since (``since``) and its open offers (``open``, exact)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.fleet = FleetBudgets()  # the snapshot's: read only
        self.version = 0  # the snapshot version read
        self.since = Consumption()  # own accepted offers the snapshot does not hold yet
        self.open: dict[Line, int] = {}  # own open offers per line
        self.waiting = False  # an offer was refused for want of a share: tell the learner
        self._changed: set[Line] = set()  # lines whose open count changed since the last report
        self._full = True  # the next report gives every line (a new life, or a pause)
        self._reported = -1  # the version the last report named

    def install(self, fleet: FleetBudgets, version: int) -> None:
        """Read ``fleet`` (a snapshot's) from now on; the caller re-applies its own outcome
        lessons the snapshot does not hold (``learn_consumption`` on ``since``)."""
        self.fleet, self.version, self.since = fleet, version, Consumption()

    # -- open offers -------------------------------------------------------------------------
    def reserve(self, offer_id: str, decided_ms: int) -> None:
        """An offer shown at ``decided_ms``: open until answered or expired."""
        self._count(offer_id, day_of(decided_ms), 1)

    def reopen(self, pending: PendingDecision) -> None:
        """A decision found in a customer's value at a start: counted while it is open."""
        if pending.settled_by is None:
            self.reserve(pending.offer_id, pending.decided_at_ms)

    def withdraw(self, pending: PendingDecision) -> None:
        """An open decision dropped without an answer (its customer erased): no longer open,
        and nothing used up."""
        if pending.settled_by is None:
            self._count(pending.offer_id, day_of(pending.decided_at_ms), -1)

    def settled(self, lesson: Mapping[str, Any]) -> None:
        """An outcome lesson of this partition: its offer is no longer open, and an accepted one
        is used up."""
        at = lesson.get("at")
        self._count(str(lesson["offer"]), day_of(int(at if at is not None else lesson["ts"])), -1)
        learn_consumption(self.since, self.source, lesson)

    def _count(self, offer_id: str, day: int, n: int) -> None:
        opens = self.open
        for line in ((offer_id, ALL_TIME), (offer_id, day)):
            left = opens.get(line, 0) + n
            if left:
                opens[line] = left
            else:
                opens.pop(line, None)
            self._changed.add(line)

    # -- reading -----------------------------------------------------------------------------
    def claim(self, line: Line) -> int:
        """Accepted (the snapshot's and own since) plus open offers of this partition."""
        return self.fleet.consumption.of(self.source, line) + \
            self.since.of(self.source, line) + self.open.get(line, 0)

    def accepted(self, line: Line) -> int:
        """The line's accepted offers fleet-wide, as this partition knows them."""
        return self.fleet.consumption.total(line) + self.since.of(self.source, line)

    def gate(self, config: EngineConfig, now_ms: int) -> BudgetGate:
        """The budget rule for one request of ``config`` at event time ``now_ms``."""
        return BudgetGate(self, config, now_ms)

    def check(self, offer_id: str, budget: Budget, value: float, now_ms: int) -> str | None:
        """Why ``offer_id`` may not be shown now, or ``None``."""
        if budget.count is not None:
            why = self._within((offer_id, ALL_TIME), budget.count, f"count budget of "
                               f"{budget.count}", 1.0)
            if why:
                return why
        cap = day_cap(budget, value)
        if cap is not None:
            return self._within((offer_id, day_of(now_ms)), cap, f"value budget of "
                                f"{budget.value_per_day:g} per day", value)
        return None

    def _within(self, line: Line, cap: int, what: str, unit: float) -> str | None:
        share, claim = self.fleet.share(self.source, line), self.claim(line)
        if share is not None and claim < share:
            return None
        accepted = self.accepted(line)
        if accepted >= cap:
            spent = f"{accepted}" if unit == 1.0 else f"{accepted * unit:g} of it"
            return f"budget: {what} spent ({spent} accepted fleet-wide)"
        if share is None:
            self.waiting = True
            return f"budget: no share of the {what} for this partition yet (the fleet's " \
                   "learner grants one at its next snapshot)"
        return f"budget: this partition's share of the {what} is taken ({claim} accepted or " \
               f"awaiting an answer here; {accepted} accepted fleet-wide)"

    # -- reporting ---------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether a learning record is due even without lessons: the partition waits for a
        share, or it reads a newer snapshot whose learner still holds an old, larger share of
        it (which that record releases)."""
        return self.version != self._reported and (
            self.waiting or self.fleet.holding(self.source))

    def report(self) -> dict[str, Any]:
        """The ``budget`` section of the next learning record: the snapshot version read and,
        while the fleet has budgets, the open offers of the lines that changed (all of them
        in the first report of a life)."""
        section: dict[str, Any] = {"read": self.version}
        if not (self.fleet.grants or self.waiting):
            self._full = True  # nothing to keep to: the next report that counts gives all
            self._changed.clear()
        elif self._full or self._changed:
            lines: Iterable[tuple[Line, int]] = self.open.items() if self._full else \
                ((line, self.open.get(line, 0)) for line in self._changed)
            section["open"] = [[offer, day, n] for (offer, day), n in sorted(lines)]
            if self._full:
                section["full"] = True
            self._full = False
            self._changed.clear()
        self._reported = self.version
        self.waiting = False
        return section


class BudgetGate:
    """The budget rule of one request (``rules.evaluate``'s ``budgets``)."""

    __slots__ = ("_budget", "_config", "_now")

    def __init__(self, budget: PartitionBudget, config: EngineConfig, now_ms: int) -> None:
        self._budget, self._config, self._now = budget, config, now_ms

    def limits(self, offer_id: str) -> bool:
        """Whether the offer has a budget."""
        return offer_id in self._config.budgets

    def out_of_budget(self, offer_id: str) -> str | None:
        """Why the offer may not be shown now (its budget is spent or this partition's share
        of it is taken), or ``None``."""
        budget = self._config.budgets.get(offer_id)
        if budget is None:
            return None
        value = self._config.offers[self._config.index_of(offer_id)].value
        return self._budget.check(offer_id, budget, value, self._now)
