"""Erasure of one customer from the partition that holds them.

An erasure request (``erasure-requests``, keyed by customer id like every input, so it reaches
the partition that holds the customer; ``stream-app erase``) removes everything the engine keeps
of the customer:

- their row in every partition table (``customers``: profile, contact history, arms, open and
  settled decisions, the de-duplication windows of their interactions and outcomes;
  ``enrolments``: their experiment enrolments), deleted through the store, so the worker's
  changelogs get a tombstone for each and a restart or rebalance does not bring them back;
- their timers (their decisions' attribution timers, their enrolments' windows, their silence
  timer), and their open offers' places in the partition's budgets;
- their records on the compacted output topics keyed by customer id (``customer-scores``): a
  tombstone each, under the key the records were written with (the pseudonym when
  pseudonymising, ``stream_app/pseudonym.py``).

Then one ``erasure-audit`` record says what was removed. Erasing a customer the partition does
not hold still gets one (``found: false``); a redelivered request removes nothing more and gets
another. Records of the customer read after the erasure start a new customer.

What an erasure cannot reach: the topics that are not compacted keep the customer's records
until their retention deletes them (the inputs, ``decisions``, the outcome rows of
``delta-metrics``, ``dead-letter``, the erasure request itself); the audit record lists them
(``retained_until_expiry``). The fleet's ``learning`` records carry no customer id (lessons carry
a profile, the interaction without its ids, and aggregates), and what the learner made of them
is pooled over customers.

>>> from stream_app.core.customer import CustomerState
>>> from stream_app.partition.store import DictStore
>>> store = DictStore()
>>> store.set("customers", b"c1", CustomerState.empty().encode())
>>> erased = erase_customer(store, ("customers", "enrolments"), "c1", None, None)
>>> erased.found, erased.removed["customers"], store.get("customers", b"c1")
(True, 1, None)
>>> erase_customer(store, ("customers", "enrolments"), "c1", None, None).found
False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from stream_app.core.customer import CustomerState
from stream_app.experiments.enrolment import Enrolments
from stream_app.fleet.budgets import PartitionBudget
from stream_app.partition.clock import PartitionClock
from stream_app.partition.store import PartitionStore
from stream_app.profile import Profile

__all__ = ["ERASED_OUTPUTS", "ERASURE", "ERASURE_AUDIT", "RETAINED", "Erased", "audit_record",
           "erase_customer"]

log = structlog.get_logger("stream_app.partition")

ERASURE = "erasure-requests"  # the input topic (contract name)
ERASURE_AUDIT = "erasure-audit"  # the output topic
# the compacted outputs keyed by customer id (``kafka/topics.py``): a tombstone erases the
# customer's record
ERASED_OUTPUTS = ("customer-scores",)
# the topics keyed by customer id that are not compacted: they may hold the customer's records
# until their retention deletes them
RETAINED = ("interactions", "decision-requests", "outcomes", "decisions", "delta-metrics",
            "dead-letter", ERASURE)


@dataclass(slots=True)
class Erased:
    """What erasing one customer removed: ``removed`` counts rows deleted per table and what
    they held (open and settled decisions, open enrolments, remembered message ids);
    ``tables`` the tables it was deleted from."""

    found: bool
    tables: tuple[str, ...] = ()
    removed: dict[str, int] = field(default_factory=dict)
    timers_cancelled: int = 0


def erase_customer(store: PartitionStore, tables: Sequence[str], customer_id: str,
                   clock: PartitionClock | None, budget: PartitionBudget | None,
                   settled_through: int | None = None, *,
                   silence_due: Callable[[Profile], int | None] | None = None) -> Erased:
    """Delete the customer's rows from every table of ``store`` named in ``tables`` (a delete
    even where there is no row: the changelog gets its tombstone whatever the local store
    held; ``customers`` and ``enrolments`` are read first for what they hold), cancel their
    timers on ``clock`` (their silence is found by its due time, ``silence_due`` of their
    profile: ``ModelSuite.silence_due_ms``) and release their open offers from ``budget``
    (both ``None`` before the partition built them: they are built from the store, without
    this customer). A decision that expired by ``settled_through`` is settled, whatever the
    stored value says (``partition/state.py``)."""
    key = customer_id.encode()
    rows = {table: store.get(table, key) for table in tables}
    removed = {table: int(raw is not None) for table, raw in rows.items()}
    removed.update(open_decisions=0, settled_decisions=0, open_enrolments=0, remembered_ids=0)
    decisions: tuple[Any, ...] = ()
    experiments: list[str] = []
    silence_ms: int | None = None
    raw = rows.get("customers")
    if raw is not None:
        try:
            customer = CustomerState.decode(raw, customer_id)
        except ValueError as exc:  # written by an incompatible version: deleted all the same
            log.warning("erasure_customer_unreadable", error=str(exc))
        else:
            decisions = customer.decisions
            removed["remembered_ids"] = len(customer.recent_events) + len(customer.seen_outcomes)
            if silence_due is not None:
                silence_ms = silence_due(customer.profile)
    raw = rows.get("enrolments")
    if raw is not None:
        try:
            experiments = [e.experiment for e in Enrolments.decode(raw).open()]
        except ValueError as exc:
            log.warning("erasure_enrolments_unreadable", error=str(exc))
    for table in tables:
        store.delete(table, key)
    open_decisions = [p for p in decisions if p.settled_by is None and (
        settled_through is None or p.expires_at_ms > settled_through)]  # else lapsed
    removed["open_decisions"] = len(open_decisions)
    removed["settled_decisions"] = len(decisions) - len(open_decisions)
    removed["open_enrolments"] = len(experiments)
    timers = 0
    if clock is not None:
        # a settled decision's timer may still be set (an outcome does not cancel it)
        timers = clock.cancel(customer_id, (p.decision_id for p in decisions), experiments,
                              silence_ms)
    if budget is not None:
        for pending in open_decisions:
            budget.withdraw(pending)
    found = any(removed[table] for table in tables)
    return Erased(found, tuple(tables), removed, timers)


def audit_record(request: dict[str, Any], erased: Erased, *, partition: int,
                 customer_id: str, pseudonymised: bool, erased_at: int) -> dict[str, Any]:
    """The ``erasure-audit`` record of one request (``customer_id``: as the audit names it, the
    pseudonym when pseudonymising)."""
    record: dict[str, Any] = {
        "schema_version": 1, "kind": "erasure", "request_id": request["request_id"],
        "customer_id": customer_id, "pseudonymised": pseudonymised, "partition": partition,
        "found": erased.found, "removed": erased.removed,
        "timers_cancelled": erased.timers_cancelled,
        "tombstones": [f"{t}-changelog" for t in erased.tables] + list(ERASED_OUTPUTS),
        "retained_until_expiry": list(RETAINED),
        "requested_at": request["ts"], "erased_at": erased_at,
    }
    for name in ("reason", "requested_by"):
        if name in request:
            record[name] = request[name]
    return record
