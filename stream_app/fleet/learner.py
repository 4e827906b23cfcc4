"""The fleet's learner: merges the lessons of every partition into one set of population
learners and says when to publish a snapshot of them.

One learner serves the fleet (the ``learning`` topic has one partition; in the worker it is the
``learner`` agent, so exactly one worker process of the group runs it, and a rebalance moves
it). It applies every learning record once: a record whose ``(source, epoch, seq)`` it has
applied is skipped, so redeliveries are harmless. What it learns:

- the pooled Beta evidence and the contextual arms (``fleet/evidence.py``): additive, exact;
- the River models and the online segmenter (``ModelSuite.learn_interaction`` /
  ``learn_outcome`` / ``learn_silence``), from the profiles the lessons carry: the same examples
  a single process would learn from, in the order the records arrive;
- experiment statistics per customer (an enrolment is an exposure, its settlement an outcome:
  ``experiments/enrolment.py``), shadow estimators and promotion watches (``PopulationState``);
- the budgets: every partition's accepted and open offers, and the share of each budget it may
  use, divided again at every snapshot (``fleet/budgets.py``).

Its outputs: the drift records of the models and of each use case's response rate (an alarm
that raises the use case's exploration: ``models/reward_drift.py``), and at every ``report_every_ms`` of event time
one record per experiment, per challenger (shadow estimate and promotion state) and per
segment for the whole fleet, on ``delta-metrics``; a challenger whose automatic promotion
became due is promoted once, by the learner alone (a config on ``engine-config``). The fleet's
event time is the slowest partition's (each learning record carries its partition's event
time; a partition silent for ``STALE_WINDOWS`` report windows behind the fastest no longer
holds it back), so a window is reported once every partition has passed its end.

A learner restarts from its last snapshot (``snapshot.FleetSnapshot``, which carries the
numbers of the records it covers) and reads on from its committed offset: the worker publishes a
snapshot before every offset commit, so nothing committed is missing from the snapshot.

>>> from stream_app.core.catalogue import offer_key, parse_config
>>> from stream_app.core.decision import Decider
>>> from stream_app.simulator import default_engine_config
>>> decider = Decider(parse_config(default_engine_config()))
>>> learner = FleetLearner(lambda: decider)
>>> record = {"source": "p0", "epoch": 1, "seq": 1, "ts": 10, "lessons": [
...     {"k": "o", "p": None, "offer": "cashback", "key": offer_key("cashback"), "urgent": False,
...      "r": 1.0, "ts": 10, "seg": "all", "hl": None, "x": None, "uc": "default"}]}
>>> _ = learner.apply(record); _ = learner.apply(record)   # the second is a redelivery
>>> learner.snapshot().applied, learner.duplicates
({'p0@1': 1}, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from stream_app.core.decision import Decider
from stream_app.core.population import PopulationState
from stream_app.fleet.evidence import learn_evidence
from stream_app.fleet.lessons import HEARTBEAT_MS, decode_profile
from stream_app.fleet.snapshot import FleetSnapshot

__all__ = ["FleetLearner", "REPORT_EVERY_MS"]

log = structlog.get_logger("stream_app.fleet")

REPORT_EVERY_MS = HEARTBEAT_MS  # fleet statistics records: one per window of event time
STALE_WINDOWS = 10  # a partition this many windows behind the fastest one is not waited for
EPOCHS_KEPT = 8  # per source, the numbers of this many recent epochs are remembered


class FleetLearner:
    """The population learners of the whole fleet, fed by learning records."""

    def __init__(self, decider: Callable[[], Decider | None],
                 snapshot: FleetSnapshot | None = None, *, seed: int = 0,
                 population: PopulationState | None = None,
                 report_every_ms: int = REPORT_EVERY_MS) -> None:
        self._decider = decider
        if snapshot is not None:
            self.population = snapshot.population
            self.version, self.applied, self.ts = snapshot.version, dict(snapshot.applied), \
                snapshot.ts
        else:
            self.population = population if population is not None else \
                PopulationState(seed=seed)
            self.version, self.applied, self.ts = 0, {}, None
        self.report_every_ms = report_every_ms
        # the end of the next report window: after the snapshot's last lesson (a restarted
        # learner reports the window it was in), else after the first record's time
        self._report_end: int | None = None if self.ts is None else \
            (self.ts // report_every_ms + 1) * report_every_ms
        self._times: dict[str, int] = {}  # partition -> its event time (learning records)
        self.changed = False  # learned something since the last snapshot
        self.duplicates = 0  # records skipped as already applied
        self.rejected = 0  # lessons that could not be learned from (logged)

    # -- learning ------------------------------------------------------------------------------
    def apply(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Learn a learning record's lessons (once); returns the ``delta-metrics`` records to
        publish (drift of a model, fleet statistics when a report window closed)."""
        source = f"{record['source']}@{record['epoch']}"
        seq = int(record["seq"])
        if seq <= self.applied.get(source, 0):
            self.duplicates += 1
            return []
        decider = self._decider()
        out: list[dict[str, Any]] = []
        for lesson in record["lessons"]:
            try:
                out += self._learn(lesson, decider)
            except (KeyError, TypeError, ValueError) as exc:  # a lesson of another version
                self.rejected += 1
                log.warning("lesson_rejected", source=source, seq=seq, kind=lesson.get("k"),
                            error=f"{type(exc).__name__}: {exc}")
        self.population.budgets.learn(record)  # accepted and open offers, snapshot read
        self._applied(source, seq)
        self.changed = True
        ts = record.get("ts")
        if ts is not None:
            ts = int(ts)
            self.ts = ts if self.ts is None else max(self.ts, ts)
            if self._report_end is None:
                self._report_end = (ts // self.report_every_ms + 1) * self.report_every_ms
            name = str(record["source"])
            self._times[name] = max(self._times.get(name, ts), ts)
        return out

    @property
    def watermark_ms(self) -> int | None:
        """The fleet's event time: the slowest partition's that is not stale."""
        if self.ts is None or not self._times:
            return self.ts
        floor = self.ts - STALE_WINDOWS * self.report_every_ms
        return min(t for t in self._times.values() if t >= floor)

    def _applied(self, source: str, seq: int) -> None:
        self.applied[source] = seq
        name = source.rpartition("@")[0]
        epochs = [k for k in self.applied if k.rpartition("@")[0] == name]
        if len(epochs) > EPOCHS_KEPT:
            for old in sorted(epochs, key=lambda k: int(k.rpartition("@")[2]))[:-EPOCHS_KEPT]:
                del self.applied[old]

    def _learn(self, lesson: Mapping[str, Any], decider: Decider | None) -> list[dict[str, Any]]:
        pop, kind = self.population, lesson["k"]
        if kind == "o":
            learn_evidence(pop, lesson)
            out = pop.suite.learn_reward(lesson["uc"], float(lesson["r"]), int(lesson["ts"]))
            if lesson.get("p") is not None:
                channel = lesson.get("ch")
                out += pop.suite.learn_outcome(
                    decode_profile(lesson["p"]), lesson["offer"], bool(lesson["urgent"]),
                    float(lesson["r"]), int(lesson["ts"]),
                    context={"channel": channel} if channel else None,
                    decided_ms=lesson.get("at"), value=float(lesson.get("v") or 0.0))
            propensity = float(lesson.get("prop") or 0.0)
            if propensity > 0:
                for label, q in (lesson.get("sh") or {}).items():
                    pop.shadow_for(f"{lesson['uc']}/{label}", label, lesson["pol"]).add(
                        propensity, q, float(lesson["r"]))
            return out
        if kind == "i":
            return pop.suite.learn_interaction(decode_profile(lesson["p"]), lesson["e"],
                                               lesson.get("s"))
        if kind == "s":  # a customer silent for good: their checkpoints are churn labels
            return pop.suite.learn_silence(decode_profile(lesson["p"]), int(lesson["ts"]))
        if kind in ("x", "w", "g"):
            exp = decider.experiments.get(lesson["exp"]) if decider is not None else None
            if exp is None or lesson["arm"] not in exp.arm_names:
                return []
            stats = pop.stats_for(exp)
            if kind == "x":  # a customer enrolled (first exposure)
                stats.add_exposure(lesson["arm"])
            elif kind == "w":  # a customer's window closed: converted or not
                stats.add_outcome(lesson["arm"], float(lesson["r"]), float(lesson.get("v") or 0))
            else:
                stats.add_guardrail_event(lesson["arm"], lesson["m"])
            return []
        raise ValueError(f"unknown lesson kind {kind!r}")

    # -- reports and snapshots -------------------------------------------------------------------
    def reports(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """At the end of a report window of event time: the fleet's statistics records, and the
        configs of challengers promoted now. Nothing before the window is over."""
        decider, ts, every = self._decider(), self.watermark_ms, self.report_every_ms
        if decider is None or ts is None or self._report_end is None:
            return [], []
        if ts < self._report_end:
            return [], []
        end = (ts // every) * every  # the last window every partition has passed
        self._report_end = end + every
        records, due = decider.snapshots(self.population, end)
        configs = []
        for key in due:  # automatic promotion: a config change like any other, audited
            doc = decider.promoted_config(key)
            log.info("challenger_promoted", challenger=key, version=doc["version"])
            configs.append(doc)
        return records, configs

    def snapshot(self) -> FleetSnapshot:
        """The learner's state now, as a new version when it learned something since the last
        one. The snapshot shares the learner's objects: encode it before learning more."""
        if self.changed or self.version == 0:
            self.version += 1
            self.changed = False
            decider = self._decider()
            if decider is not None:  # every partition's share of the budgets, for this version
                self.population.budgets.divide(decider.config, self.version, self.ts)
        return FleetSnapshot(self.version, dict(self.applied), self.ts, self.population)
