"""The population-level learners of one partition, kept in memory and checkpointed.

Per-customer state (profile, contact history, Beta arms, pending decisions) is written to its
table on every event, so it is exact after any restart. What is learned from *everyone* is
different: River models (``ModelSuite``), the contextual policies' ridge regressions
(``LinearArms``, one per use case), experiment statistics, shadow estimators and promotion
watches change on almost every event and weigh from kilobytes to megabytes, so writing them per
event would dominate the cost of an event. They live in memory, one ``PopulationState`` per
partition, and the worker checkpoints them to a changelog-backed table every
``checkpoint_every`` events of that partition, but at most once every
``checkpoint_min_interval_s`` (a checkpoint pickles and compresses everything, tens of ms of
the event loop: counted in events alone, its cost would grow with the event rate). After a
crash, the population learning since the last checkpoint is lost (at most that many events or
that many seconds of it; per-customer state is not); when partitions are revoked, and when the
worker stops cleanly, they are checkpointed first, so the next owner (or the restarted worker)
restores what was learned up to then.

Partition-local by design: keys are hashed, so each partition sees a random sample of customers
and its estimates are unbiased; an experiment's or a challenger's figures are published per
partition (``partition`` field) and add up across partitions (``ExperimentStats.merge``).

The checkpoint is the ``models.checkpoint`` envelope (a pickle: engine-written population state
only, never loaded from elsewhere), zstd-compressed (level 1) and cut into chunks that fit in
one Kafka message each. Measured on a bench partition's 0.82 MB pickle: zlib level 1 took 27-45 ms
(as long as the pickling itself, all of it an event-loop stall), zstd 3-5 ms, to the same 0.51
MB. Checkpoints written with zlib by earlier versions are still read (the zstd frame's magic
number tells them apart).

>>> state = PopulationState()
>>> chunks = state.to_chunks(max_bytes=100_000)
>>> PopulationState.from_chunks(chunks).suite.version
'models:u0:r0'
"""

from __future__ import annotations

import zlib
from typing import Any

import cramjam

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
    """Models, contextual arms, experiment statistics and shadow estimators of one partition."""

    def __init__(self, suite: ModelSuite | None = None, seed: int = 0) -> None:
        self.suite = suite if suite is not None else ModelSuite(SuiteConfig(seed=seed))
        self.linear: dict[str, LinearArms] = {}  # use case -> contextual arms
        self.experiments: dict[str, ExperimentStats] = {}  # experiment id -> stats
        self.shadow: dict[str, ShadowEstimator] = {}  # "use case/challenger" -> estimator
        self.watches: dict[str, PromotionWatch] = {}  # same keys -> promotion watch
        self.promoted: dict[str, int] = {}  # same keys -> event time promotion became due
        self._stored: dict[str, dict[str, bytes]] = {}  # decoded lazily, once the config is known

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
        return {"suite": self.suite, "stored": stored, "promoted": dict(self.promoted)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["suite"])
        self._stored = state["stored"]
        self.promoted = state.get("promoted", {})

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
