"""The fleet's population-level learners, in one object: what the learner merges and snapshots.

What is learned from *everyone* -- River models (``ModelSuite``), the pooled Beta evidence of
every segment and of the population (``arms``), the contextual policies' ridge regressions
(``LinearArms``, one per use case), experiment statistics, shadow estimators, promotion
watches and the budgets' accounting (``fleet.budgets.FleetBudgets``) -- is learned by the
fleet's learner (``fleet/learner.py``) from the lessons of every partition, and broadcast to
every worker as part of a snapshot (``fleet/snapshot.py``). A worker reads the snapshot's
models and evidence; it never trains them.

The state pickles (the ``models.checkpoint`` envelope: engine-written population state only,
never loaded from elsewhere) and compresses with zstd (level 1): on a partition's 0.82 MB
pickle, zlib level 1 took 27-45 ms, zstd 3-5 ms, to the same 0.51 MB.

>>> state = PopulationState()
>>> chunks = state.to_chunks(max_bytes=100_000)
>>> PopulationState.from_chunks(chunks).suite.version
'models:u0:r0'
"""

from __future__ import annotations

import zlib
from typing import Any

import cramjam

from stream_app.core.arms import Arms
from stream_app.experiments import (
    Experiment,
    ExperimentStats,
    PromotionWatch,
    ShadowEstimator,
    StatsCodecError,
)
from stream_app.models import checkpoint
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.policies.linear_arms import LinearArms

__all__ = ["PopulationState", "CHUNK_BYTES"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # the first bytes of every zstd frame
_KIND = "partition-state"
CHUNK_BYTES = 512 * 1024  # one chunk per Kafka message, well under the 1 MB default limit


class PopulationState:
    """Models, pooled and contextual arms, experiment statistics and shadow estimators."""

    def __init__(self, suite: ModelSuite | None = None, seed: int = 0) -> None:
        self.suite = suite if suite is not None else ModelSuite(SuiteConfig(seed=seed))
        self.arms: dict[bytes, Arms] = {}  # pooled Beta evidence (fleet.evidence keys)
        self.linear: dict[str, LinearArms] = {}  # use case -> contextual arms
        self.experiments: dict[str, ExperimentStats] = {}  # experiment id -> stats
        self.shadow: dict[str, ShadowEstimator] = {}  # "use case/challenger" -> estimator
        self.watches: dict[str, PromotionWatch] = {}  # same keys -> promotion watch
        self.promoted: dict[str, int] = {}  # same keys -> event time promotion became due
        self._stored: dict[str, dict[str, bytes]] = {}  # decoded lazily, once the config is known
        from stream_app.fleet.budgets import FleetBudgets  # fleet imports core: not at the top

        self.budgets = FleetBudgets()  # accepted and open offers per partition, shares granted

    # -- the learners, created on first use, restored from a checkpoint when there is one -----
    def linear_for(self, use_case: str, dim: int, ridge: float = 1.0,
                   half_life_s: float | None = None) -> LinearArms:
        """The use case's contextual arms of width ``dim`` (a new width starts afresh); they
        forget with the use case's ``half_life_s`` (a changed half-life applies from now on)."""
        arms = self.linear.get(use_case)
        if arms is None or arms.dim != dim:
            raw = self._stored.get("linear", {}).pop(use_case, None)
            arms = LinearArms.decode(raw) if raw else None
            if arms is None or arms.dim != dim:
                arms = LinearArms(dim, ridge, half_life_s=half_life_s)
            self.linear[use_case] = arms
        arms.half_life_s = half_life_s or None
        return arms

    def stats_for(self, experiment: Experiment) -> ExperimentStats:
        stats = self.experiments.get(experiment.id)
        if stats is None or stats.experiment is not experiment:
            raw = stats.encode() if stats is not None else \
                self._stored.get("experiments", {}).pop(experiment.id, None)
            try:  # the same definition in a new config version keeps its counts
                stats = ExperimentStats.decode(experiment, raw)
            except StatsCodecError:  # the experiment was redefined: its statistics start over
                stats = ExperimentStats(experiment)
            self.experiments[experiment.id] = stats
        return stats

    def shadow_for(self, key: str, challenger: str, champion: str) -> ShadowEstimator:
        est = self.shadow.get(key)
        if est is None or est.challenger != challenger or est.champion != champion:
            raw = self._stored.get("shadow", {}).pop(key, None)
            try:
                est = ShadowEstimator.decode(raw, challenger, champion=champion)
            except ValueError:
                est = ShadowEstimator(challenger, champion=champion)
            self.shadow[key] = est
        return est

    def watch_for(self, key: str, duration_s: float) -> PromotionWatch:
        watch = self.watches.get(key)
        if watch is None or watch.duration_ms != int(round(duration_s * 1000)):
            raw = self._stored.get("watches", {}).pop(key, None)
            try:
                watch = PromotionWatch.decode(raw, duration_s)
            except ValueError:
                watch = PromotionWatch(duration_s)
            self.watches[key] = watch
        return watch

    # -- checkpoints ------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        stored = {k: dict(v) for k, v in self._stored.items()}
        for name, live in (("linear", self.linear), ("experiments", self.experiments),
                           ("shadow", self.shadow), ("watches", self.watches)):
            stored.setdefault(name, {}).update({k: v.encode() for k, v in live.items()})
        return {"suite": self.suite, "stored": stored, "promoted": dict(self.promoted),
                "arms": {k: v.encode() for k, v in self.arms.items()}, "budgets": self.budgets}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["suite"])
        self._stored = state["stored"]
        self.promoted = state.get("promoted", {})
        self.arms = {k: Arms.decode(v) for k, v in state.get("arms", {}).items()}
        self.budgets = state.get("budgets") or self.budgets

    def to_chunks(self, max_bytes: int = CHUNK_BYTES) -> list[bytes]:
        """The checkpoint, compressed, in pieces of at most ``max_bytes``."""
        blob = bytes(cramjam.zstd.compress(checkpoint.dumps(self, kind=_KIND), level=1))
        return [blob[i:i + max_bytes] for i in range(0, len(blob), max_bytes)] or [b""]

    @classmethod
    def from_chunks(cls, chunks: list[bytes]) -> PopulationState:
        data = b"".join(chunks)
        try:
            if data.startswith(_ZSTD_MAGIC):
                blob = bytes(cramjam.zstd.decompress(data))
            else:  # written by a version that compressed checkpoints with zlib
                blob = zlib.decompress(data)
        except (zlib.error, cramjam.DecompressionError) as exc:
            raise checkpoint.CheckpointError(f"partition checkpoint is corrupt: {exc}") from None
        state = checkpoint.loads(blob, kind=_KIND)
        if not isinstance(state, cls):
            raise checkpoint.CheckpointError("checkpoint does not hold a PopulationState")
        return state
