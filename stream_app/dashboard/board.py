"""What the dashboard shows, aggregated from the engine's output topics in plain Python.

``Board.add(topic, value)`` takes one raw message of ``decisions``, ``delta-metrics`` or
``dead-letter`` (contract names) and ``Board.summary()`` returns the JSON-ready picture served at
``/api/summary``:

- ``totals``: decisions (offers, no-actions), outcome deltas (rows of the batched ``outcomes``
  records; late ones are counted but kept out of every rate, as the engine's roll-ups do),
  responses, the response rate with its 95 % Wilson interval, dead letters, drift alarms;
- ``offers``, ``policies``, ``arms``: per offer / policy / experiment arm, decisions, share of
  decisions, settled outcomes, responses, response rate and interval, and lift over the rate of
  all outcomes;
- ``experiments``: the engine's latest ``experiment`` record per experiment (per partition when
  partitions publish their own: their counts are added up, and their anytime-valid intervals,
  which do not add up, are then left out);
- ``series``: over event time (``series.TimeBuckets``), the response rate overall, per policy
  and per arm with intervals, the mean predicted probability, each offer's share of decisions,
  and, with a ``SimulatorOracle``, the true response rate of the engine's choices, of the
  oracle's and of a random choice;
- ``oracle`` (with a simulator: those three rates over every decision scored, and over the first
  and second half of them as read), ``drift`` and ``dead_letters`` (counts by reason, the
  latest).

A message that cannot be read (not JSON, a field missing or of the wrong type) changes nothing
but the ``unreadable`` count of its topic.

>>> import orjson
>>> board = Board()
>>> board.add("decisions", orjson.dumps({"ts": 1_000, "action": "offer", "offer_id": "a",
...                                      "policy": "thompson"}))
>>> board.add("delta-metrics", orjson.dumps({"kind": "outcomes", "ts": 5_000, "outcomes": [
...     {"ts": 5_000, "offer_id": "a", "policy": "thompson", "predicted": 0.4, "actual": 1.0}]}))
>>> s = board.summary()
>>> s["totals"]["decisions"], s["totals"]["outcomes"], s["offers"][0]["response_rate"]
(1, 1, 1.0)
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from stream_app.core.delta import outcome_rows
from stream_app.dashboard.oracle import SimulatorOracle
from stream_app.dashboard.rates import lift, rate, wilson
from stream_app.dashboard.series import TimeBuckets
from stream_app.dashboard.views import experiment_rows, read_experiment, series_view

__all__ = ["DIMENSIONS", "NO_ACTION", "TOPICS", "Board"]

log = structlog.get_logger("stream_app.dashboard")

TOPICS = ("decisions", "delta-metrics", "dead-letter")
DIMENSIONS = ("offer_id", "policy", "experiment_arm")
NO_ACTION = "(no action)"
OTHER = "(other)"
MAX_GROUPS = 100  # distinct values kept per dimension (and dead-letter reasons); the rest: OTHER


class UnreadableMessage(ValueError):
    """A message of a dashboard topic that is not what its schema says."""


@dataclass(slots=True)
class Tally:
    """Decisions and settled outcomes of one group."""

    decisions: int = 0
    outcomes: int = 0
    responses: int = 0
    predicted: float = 0.0

    def view(self, all_rate: float | None, all_decisions: int) -> dict[str, Any]:
        r = rate(self.responses, self.outcomes)
        return {"decisions": self.decisions,
                "share": self.decisions / all_decisions if all_decisions else None,
                "outcomes": self.outcomes, "responses": self.responses, "response_rate": r,
                "interval": wilson(self.responses, self.outcomes), "lift": lift(r, all_rate),
                "mean_predicted": rate(self.predicted, self.outcomes)}


class Board:
    """Running figures of the engine's output topics (see the module docstring).

    Parameters
    ----------
    oracle
        The simulator's ground truth, when the traffic comes from the seeded simulator.
    max_buckets
        Points per chart.
    recent
        Drift alarms and dead letters listed one by one (the latest).
    """

    def __init__(self, oracle: SimulatorOracle | None = None, max_buckets: int = 40,
                 recent: int = 10) -> None:
        self.oracle = oracle
        self.version = 0  # moves on every message: the server re-renders only after a change
        self.read: Counter[str] = Counter()
        self.unreadable: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()  # delta-metrics records by kind
        self.updated_ms: int | None = None  # wall clock of the last message
        self.event_time_ms: int | None = None  # the latest event time seen
        self.all = Tally()
        self.no_action = self.outcomes = self.late = self.ignored = 0
        self.groups: dict[str, dict[str, Tally]] = {d: {} for d in DIMENSIONS}
        self.series = TimeBuckets(max_buckets)
        self.experiments: dict[tuple[str, Any], dict[str, Any]] = {}
        self.drift_alarms = 0
        self.drift_recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self.dead_letters = 0
        self.dead_reasons: Counter[str] = Counter()
        self.dead_recent: deque[dict[str, Any]] = deque(maxlen=recent)
        # per decision of a simulated run, as read: (chosen, oracle, random) true probabilities
        self.trace: list[tuple[float, float, float]] = []

    # -- input ---------------------------------------------------------------------------------
    def add(self, topic: str, value: bytes | None) -> None:
        """Count one raw message of ``topic`` (a contract name)."""
        self.version += 1
        self.read[topic] += 1
        self.updated_ms = int(time.time() * 1000)
        try:
            message = orjson.loads(value) if value is not None else None
            if not isinstance(message, dict):
                raise UnreadableMessage("not a JSON object")
            if topic == "decisions":
                self._decision(message)
            elif topic == "delta-metrics":
                self._delta(message)
            elif topic == "dead-letter":
                self._dead_letter(message)
            else:
                raise UnreadableMessage(f"not a dashboard topic: {topic}")
        except (orjson.JSONDecodeError, UnreadableMessage, AttributeError, KeyError, TypeError,
                ValueError) as exc:
            self.unreadable[topic] += 1
            if self.unreadable[topic] <= 10:  # the first few say why; the count says the rest
                log.warning("dashboard_unreadable_message", topic=topic,
                            reason=f"{type(exc).__name__}: {exc}")

    def _decision(self, m: dict[str, Any]) -> None:
        ts, action, policy = _ts(m), m["action"], _name(m["policy"])
        offer = _name(m["offer_id"]) if action == "offer" else None
        if action not in ("offer", "no_action"):
            raise UnreadableMessage(f"decision action {action!r}")
        experiment = m.get("experiment") or {}
        if not isinstance(experiment, dict):
            raise UnreadableMessage("experiment is not an object")
        arm = None if experiment.get("arm") is None else _name(experiment["arm"])
        self._seen(ts)
        self.all.decisions += 1
        shown = offer or NO_ACTION
        if offer:
            self._group("offer_id", shown).decisions += 1
        else:
            self.no_action += 1
        self._group("policy", policy).decisions += 1
        if arm is not None:
            self._group("experiment_arm", arm).decisions += 1
        self.series.add(ts, ("shown", self._bounded("offer_id", shown)), (1.0,))
        if self.oracle is not None:
            scored = self.oracle.score(m)
            if scored is not None:
                self.trace.append(scored)
                self.series.add(ts, ("oracle",), (1.0, *scored))

    def _delta(self, m: dict[str, Any]) -> None:
        kind, ts = m["kind"], _ts(m)
        if not isinstance(kind, str):
            raise UnreadableMessage("kind is not a string")
        if kind in ("outcome", "outcomes"):
            rows = [_outcome(row) for row in outcome_rows(m)]  # all read before any is counted
            for row in rows:
                self._outcome(*row)
        elif kind == "experiment":
            record = read_experiment(m)
            key = (record["experiment_id"], record["partition"])
            if key not in self.experiments and len(self.experiments) >= MAX_GROUPS:
                raise UnreadableMessage("too many experiments to show")
            if ts >= self.experiments.get(key, {}).get("ts", -1):
                self.experiments[key] = record
        elif kind == "drift":
            self.drift_alarms += 1
            self.drift_recent.appendleft({k: m.get(k) for k in (
                "ts", "model", "candidate", "detector", "error_before", "error_after", "action",
                "partition")})
        self.kinds[kind] += 1
        self._seen(ts)

    def _outcome(self, ts: int, groups: dict[str, str], predicted: float, responded: bool,
                 late: bool, ignored: bool) -> None:
        self.outcomes += 1
        if late:  # its decision was settled already (as ignored): counted once, there
            self.late += 1
            return
        self.ignored += ignored
        tallies = [self.all] + [self._group(d, g) for d, g in groups.items()]
        for t in tallies:
            t.outcomes += 1
            t.responses += responded
            t.predicted += predicted
        sums = (1.0, float(responded), predicted)
        self.series.add(ts, ("rate", "all", "*"), sums)
        for d in ("policy", "experiment_arm"):
            if d in groups:
                self.series.add(ts, ("rate", d, self._bounded(d, groups[d])), sums)

    def _dead_letter(self, m: dict[str, Any]) -> None:
        reason, source = str(m["reason"]), m.get("source") or {}
        if not isinstance(source, dict):
            raise UnreadableMessage("source is not an object")
        self.dead_letters += 1
        group = _reason_group(reason)
        if group not in self.dead_reasons and len(self.dead_reasons) >= MAX_GROUPS:
            group = OTHER
        self.dead_reasons[group] += 1
        self.dead_recent.appendleft({"reason": reason[:300], "topic": source.get("topic"),
                                     "partition": source.get("partition"),
                                     "offset": source.get("offset"),
                                     "failed_at": m.get("failed_at")})

    def _group(self, dimension: str, name: str) -> Tally:
        groups = self.groups[dimension]
        name = self._bounded(dimension, name)
        tally = groups.get(name)
        if tally is None:
            tally = groups[name] = Tally()
        return tally

    def _bounded(self, dimension: str, name: str) -> str:
        groups = self.groups[dimension]
        return name if name in groups or len(groups) < MAX_GROUPS else OTHER

    def _seen(self, ts: int) -> None:
        if self.event_time_ms is None or ts > self.event_time_ms:
            self.event_time_ms = ts

    # -- output --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The JSON-ready picture (see the module docstring)."""
        a = self.all
        all_rate = rate(a.responses, a.outcomes)
        tables = {d: sorted(({"name": name, **t.view(all_rate, a.decisions)}
                             for name, t in self.groups[d].items()),
                            key=lambda row: (-row["decisions"], -row["outcomes"], row["name"]))
                  for d in DIMENSIONS}
        return {
            "updated_ms": self.updated_ms, "event_time_ms": self.event_time_ms,
            "read": dict(self.read), "unreadable": dict(self.unreadable),
            "delta_kinds": dict(self.kinds),
            "totals": {"decisions": a.decisions, "offers": a.decisions - self.no_action,
                       "no_action": self.no_action, "outcomes": self.outcomes,
                       "settled": a.outcomes, "late": self.late, "ignored": self.ignored,
                       "responses": a.responses, "response_rate": all_rate,
                       "interval": wilson(a.responses, a.outcomes),
                       "mean_predicted": rate(a.predicted, a.outcomes),
                       "dead_letters": self.dead_letters, "drift_alarms": self.drift_alarms,
                       "experiment_alarms": sum(bool(r.get("alarm"))
                                                for r in self.experiments.values())},
            "offers": tables["offer_id"], "policies": tables["policy"],
            "arms": tables["experiment_arm"],
            "experiments": experiment_rows(self.experiments.values()),
            "series": series_view(self.series, oracle=self.oracle is not None),
            "oracle": self._oracle_view(),
            "drift": {"alarms": self.drift_alarms, "recent": list(self.drift_recent)},
            "dead_letters": {"count": self.dead_letters,
                             "by_reason": [{"reason": r, "count": n}
                                           for r, n in self.dead_reasons.most_common()],
                             "recent": list(self.dead_recent)},
        }

    def _oracle_view(self) -> dict[str, Any] | None:
        if self.oracle is None:
            return None

        def part(trace: list[tuple[float, float, float]]) -> dict[str, Any]:
            chosen, best, random = (sum(col) for col in zip(*trace)) if trace else (0, 0, 0)
            return {"decisions": len(trace), "chosen_rate": rate(chosen, len(trace)),
                    "oracle_rate": rate(best, len(trace)),
                    "random_rate": rate(random, len(trace)),
                    "of_oracle": chosen / best if best > 0 else None}

        half = len(self.trace) // 2
        return {**part(self.trace), "first_half": part(self.trace[:half]),
                "second_half": part(self.trace[half:]), "foreign": self.oracle.foreign}


def _ts(m: dict[str, Any]) -> int:
    ts = m["ts"]
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise UnreadableMessage(f"ts is not epoch milliseconds: {ts!r}")
    return ts


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise UnreadableMessage(f"not a name: {value!r}")
    return value[:128]


def _outcome(row: Any) -> tuple[int, dict[str, str], float, bool, bool, bool]:
    """One outcome delta, read: (ts, {dimension: group}, predicted, responded, late, ignored)."""
    if not isinstance(row, dict):
        raise UnreadableMessage("an outcome row is not an object")
    predicted, actual = float(row["predicted"]), float(row["actual"])
    if not (0.0 <= predicted <= 1.0 and 0.0 <= actual <= 1.0):  # also refuses NaN
        raise UnreadableMessage(f"predicted and actual must be in [0, 1]: {predicted}, {actual}")
    groups = {d: _name(row[d]) for d in DIMENSIONS if row.get(d) is not None}
    return (_ts(row), groups, predicted, actual >= 0.5, bool(row.get("late")),
            bool(row.get("ignored")))


def _reason_group(reason: str) -> str:
    """A dead-letter reason without its particulars: the text before the first ':' or quote
    ("unknown decision_id 'dc-9' for ..." -> "unknown decision_id")."""
    cut = min((i for i in (reason.find(":"), reason.find("'"), reason.find('"')) if i > 0),
              default=len(reason))
    return reason[:cut].strip()[:80] or "unknown"
