"""What one partition knows of the fleet's learning: the last snapshot, plus its own lessons
since.

A worker decides with the models and evidence of the last fleet snapshot it loaded. Its own
outcomes since that snapshot are not in it yet, so the view applies them on top of the
snapshot's evidence (``learn_evidence``, the learner's own function): a partition never waits
for the learner to see what it just learned, and nothing is counted twice, because a new
snapshot says which of the partition's records it holds (``applied``) and the view re-applies
only the others. While the learner is down, the view keeps its lessons (at most
``MAX_KEPT_RECORDS`` records) and goes on deciding with the last snapshot.

River models are read from the snapshot as they are (they are not additive): a model learns a
partition's events when the learner has them, about one snapshot interval later.

Budgets (``budget``, ``fleet/budgets.py``) follow the same pattern: the snapshot's accepted
offers with the partition's own since (``learn_consumption``), its open offers counted exactly,
and the share of each budget the learner granted it.

>>> from stream_app.core.catalogue import offer_key
>>> view = FleetView("p0", epoch=1)
>>> view.teach({"k": "o", "offer": "a", "key": offer_key("a"), "r": 1.0, "ts": 0, "seg": "all",
...             "hl": None, "x": None, "uc": "default"})
>>> [record] = view.records(ts=0)
>>> float(view.pooled(POPULATION_KEY).records["succ"][0])
1.0
>>> view.install(FleetSnapshot(1, {"p0@1": record["seq"]}, 0, PopulationState()))
>>> len(view.pooled(POPULATION_KEY))    # the snapshot holds it now (here: an empty one)
0
"""

from __future__ import annotations

from collections import deque
from typing import Any

from stream_app.core.arms import Arms
from stream_app.core.population import PopulationState
from stream_app.fleet.budgets import PartitionBudget, learn_consumption
from stream_app.fleet.evidence import EMPTY_ARMS, POPULATION_KEY, learn_evidence
from stream_app.fleet.lessons import Lessons
from stream_app.fleet.snapshot import FleetSnapshot
from stream_app.models.suite import ModelSuite
from stream_app.policies.linear_arms import LinearArms

__all__ = ["FleetView", "MAX_KEPT_RECORDS"]

MAX_KEPT_RECORDS = 100_000  # own learning records kept for the overlay while not in a snapshot


class FleetView:
    """A partition's reading of the fleet's learners (``snapshot`` + own lessons)."""

    def __init__(self, source: str, epoch: int, snapshot: FleetSnapshot | None = None,
                 seed: int = 0) -> None:
        self.source = source
        self.lessons = Lessons(source, epoch)
        self._key = f"{source}@{epoch}"
        self._kept: deque[tuple[int, list[dict[str, Any]]]] = deque(maxlen=MAX_KEPT_RECORDS)
        self._batch: list[dict[str, Any]] = []  # this batch's outcome lessons
        self.budget = PartitionBudget(source)  # budgets: the snapshot's + own offers since
        self.snapshot = snapshot if snapshot is not None else \
            FleetSnapshot(0, {}, None, PopulationState(seed=seed))
        self._reset()

    # -- reading -----------------------------------------------------------------------------
    @property
    def suite(self) -> ModelSuite:
        return self.snapshot.population.suite

    @property
    def model_version(self) -> str:
        return self.snapshot.model_version()

    def pooled(self, key: bytes) -> Arms:
        """A segment's (``segment_key``) or the population's (``POPULATION_KEY``) arms."""
        return self.arms.get(key, EMPTY_ARMS)

    def linear_for(self, use_case: str, dim: int, ridge: float = 1.0,
                   half_life_s: float | None = None) -> LinearArms:
        """The use case's contextual arms: the snapshot's, with this partition's lessons."""
        arms = self._linear.get(use_case)
        if arms is None or arms.dim != dim:
            shared = self.snapshot.population.linear_for(use_case, dim, ridge, half_life_s)
            arms = self._linear[use_case] = LinearArms.decode(shared.encode())
        arms.half_life_s = half_life_s or None
        return arms

    # -- learning ----------------------------------------------------------------------------
    def teach(self, lesson: dict[str, Any]) -> None:
        """A lesson for the fleet; an outcome's evidence counts here at once."""
        self.lessons.teach(lesson)
        if lesson["k"] == "o":
            learn_evidence(self, lesson)
            self.budget.settled(lesson)
            self._batch.append(lesson)

    def records(self, ts: int | None) -> list[dict[str, Any]]:
        """The batch's learning records to send (none when nothing was learned, unless the
        budgets need one); the last one says what the partition reads (``budget``)."""
        records = self.lessons.records(ts, force=self.budget.due())
        if records:
            records[-1]["budget"] = self.budget.report()
        if records and self._batch:
            self._kept.append((records[-1]["seq"], self._batch))
            self._batch = []
        return records

    def install(self, snapshot: FleetSnapshot) -> None:
        """Read from ``snapshot`` from now on, with the own lessons it does not hold yet."""
        if snapshot.version <= self.snapshot.version and self.snapshot.version:
            return
        self.snapshot = snapshot
        applied = snapshot.applied.get(self._key, 0)
        kept = self._kept
        while kept and kept[0][0] <= applied:
            kept.popleft()
        self._reset()
        for _, lessons in kept:
            for lesson in lessons:
                learn_evidence(self, lesson)
                learn_consumption(self.budget.since, self.source, lesson)
        for lesson in self._batch:
            learn_evidence(self, lesson)
            learn_consumption(self.budget.since, self.source, lesson)

    def _reset(self) -> None:
        self.arms: dict[bytes, Arms] = dict(self.snapshot.population.arms)
        self.budget.install(self.snapshot.population.budgets, self.snapshot.version)
        self._linear: dict[str, LinearArms] = {}
