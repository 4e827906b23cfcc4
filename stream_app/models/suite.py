"""The predictive layer in one object: the models the worker trains from the stream and serves.

- **propensity** (per offer): P(respond | profile, context, offer), one ``ModelSelector`` per offer
  on ``features`` + ``offer_features``, shrunk toward the engagement model while the offer's own
  model is young: ``w = n / (n + propensity_prior)``. A decision reads the offer's own model
  (``offer_propensities``) as a customer's cold-start prior when the use case's prior sets
  ``propensity_strength`` (``core/priors.py``).
- **engagement**: P(respond to any offer | profile, context), from every outcome.
- **churn**: P(no interaction within ``churn_horizon_s``), from checkpoints (``labels``),
  labelled when the customer comes back (``learn_interaction``) or stays silent
  (``learn_silence``, when the partition's silence timer fires: ``silence_due_ms``).
- **capacity**: expected amount of the next transaction (learned on ``log1p(amount)``).
- **segment**: ``OnlineKMeans`` over ``segment_vector``, learned from a customer's
  ``segment_min_events``-th interaction and every doubling after (``teaches_segmenter``); every
  interaction assigns the nearest segment; a ``SegmentReport`` keeps sizes and outcomes;
- **reward drift**: per use case, an alarm when the response rate of its decisions falls
  (``RewardDrift``): the use case's pooled evidence then forgets faster for a while
  (``reward_drift.pooled_half_life``), so its arms are explored again.

Two sides. A worker serves from the models it was given (a fleet snapshot: ``fleet/``) and
computes the customer's side of an event (``profile_after``, ``apply_outcome``); the fleet's
learner trains the models from the learning records of every partition (``learn_interaction``,
``learn_outcome``, each returning the JSON-ready drift records to publish). ``observe_*`` do
both, for a process that owns both sides.

>>> from stream_app.profile import Profile
>>> suite = ModelSuite(SuiteConfig(classifiers=("logreg",), regressors=("mean",)))
>>> p, drifts = suite.observe_interaction(Profile.empty(), {"ts": 0, "type": "transaction",
...                                                         "amount": 30.0, "category": "dining"})
>>> p, drifts = suite.observe_outcome(p, "cashback", urgent=False, reward=1.0, ts=1000)
>>> 0.0 <= suite.propensity(p, {"channel": "app"}, "cashback", False, 2000) <= 1.0
True
>>> suite.version
'models:u3:r0'
>>> ModelSuite.from_bytes(suite.to_bytes()).version == suite.version
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from stream_app.core.catalogue import offer_key
from stream_app.models import candidates, checkpoint
from stream_app.models.labels import (
    capacity_target,
    churn_checkpoints,
    from_capacity_target,
    silence_final_ms,
)
from stream_app.models.reward_drift import RewardDrift
from stream_app.models.segment_report import SegmentReport
from stream_app.models.kmeans import OnlineKMeans
from stream_app.models.segments import SEGMENT_FEATURES, segment_vector, teaches_segmenter
from stream_app.models.selection import ModelSelector
from stream_app.profile import (
    DEFAULT_CONFIG,
    MAX_SEGMENTS,
    Profile,
    ProfileClocks,
    ProfileConfig,
    apply_interaction,
    apply_outcome,
    features,
    offer_features,
)

__all__ = ["ModelSuite", "SuiteConfig"]

_KIND = "model-suite"


@dataclass(frozen=True, slots=True)
class SuiteConfig:
    classifiers: tuple[str, ...] = candidates.DEFAULT_CLASSIFIERS
    # per-offer propensity models: one per offer, so their size multiplies by the catalogue; a
    # Hoeffding tree keeps per-leaf statistics of every feature (~0.6 MB pickled), a logistic
    # regression a few kB. None: the same candidates as ``classifiers``.
    propensity_classifiers: tuple[str, ...] | None = ("logreg",)
    regressors: tuple[str, ...] = candidates.DEFAULT_REGRESSORS
    window: int = 500  # examples the selection metric remembers
    min_select: int = 50
    drift_delta: float = 0.002
    drift_grace: int = 200
    drift_min_increase: float = 0.02
    churn_horizon_s: float = 28 * 86400.0
    churn_period_s: float = 7 * 86400.0
    n_segments: int = 5
    segment_min_events: int = 10
    propensity_prior: float = 50.0
    # engagement (the costliest learner: a Hoeffding tree on every outcome): after
    # ``outcome_full_examples`` examples, learn every response but one ignored / dismissed offer
    # in ``outcome_negative_stride``, weighted by the stride (see ``ModelSelector``); 1 learns
    # from every outcome. The per-offer propensity models (one linear model each, and fewer
    # examples each, so sampling would slow their drift detection) learn from every outcome.
    outcome_negative_stride: int = 2
    outcome_full_examples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_segments <= MAX_SEGMENTS:
            raise ValueError(f"n_segments must be in 1..{MAX_SEGMENTS}")


class ModelSuite:
    """Propensity, engagement, churn, capacity and segmentation, learned online."""

    def __init__(
        self, config: SuiteConfig = SuiteConfig(), profile_config: ProfileConfig = DEFAULT_CONFIG
    ) -> None:
        self.config, self.profile_config = config, profile_config
        self.engagement_model = self._classifier("engagement", outcome=True)
        self.churn_model = self._classifier("churn")
        self.capacity_model = ModelSelector(
            "capacity", candidates.regressors(config.seed, config.regressors), "regression",
            **self._selector_settings(),
        )  # fmt: skip
        self.propensity_models: dict[str, ModelSelector] = {}
        self.segmenter = OnlineKMeans(config.n_segments, len(SEGMENT_FEATURES), seed=config.seed)
        self.report = SegmentReport(config.n_segments)
        self.reward_drift = RewardDrift()

    def __setstate__(self, state: dict[str, Any]) -> None:  # checkpoints from before
        state.setdefault("reward_drift", RewardDrift())
        self.__dict__.update(state)

    def _selector_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "window": c.window, "min_select": c.min_select, "drift_delta": c.drift_delta,
            "drift_grace": c.drift_grace, "drift_min_increase": c.drift_min_increase,
        }  # fmt: skip

    def _classifier(self, name: str, names: tuple[str, ...] | None = None,
                    outcome: bool = False) -> ModelSelector:
        models = candidates.classifiers(self.config.seed, names or self.config.classifiers)
        sampling = {"negative_stride": self.config.outcome_negative_stride,
                    "full_examples": self.config.outcome_full_examples} if outcome else {}
        return ModelSelector(name, models, "classification", **self._selector_settings(),
                             **sampling)

    def _selectors(self) -> list[ModelSelector]:
        fixed = [self.engagement_model, self.churn_model, self.capacity_model]
        return fixed + list(self.propensity_models.values())

    # -- serving ---------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """``models:u<updates>:r<resets>`` summed over every model; changes with every update
        (every decision carries it: kept until the next learning call rather than summed anew)."""
        version = self.__dict__.get("_version")
        if version is None:
            sel = self._selectors()
            version = self._version = \
                f"models:u{sum(s.n_updates for s in sel)}:r{sum(s.n_resets for s in sel)}"
        return version

    def versions(self) -> dict[str, str]:
        """Version of each model (``ModelSelector.version``), by model name."""
        return {s.name: s.version for s in self._selectors()}

    def propensities(
        self,
        profile: Profile,
        context: Mapping[str, Any] | None,
        offers: Sequence[tuple[str, bool]],
        now_ms: int,
    ) -> np.ndarray:
        """P(respond) for each ``(offer_id, urgent)``, aligned to ``offers``: each offer's own
        model shrunk toward the engagement model by its trust."""
        base = features(profile, context, now_ms, self.profile_config)
        prior = self.engagement_model.predict(base)
        p, trust = self._own_propensities(profile, base, offers, now_ms)
        return trust * p + (1 - trust) * prior

    def offer_propensities(
        self,
        profile: Profile,
        context: Mapping[str, Any] | None,
        offers: Sequence[tuple[str, bool]],
        now_ms: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each offer's own model alone (no shrinkage toward engagement), for a cold-start
        prior: P(respond) per ``(offer_id, urgent)`` and how far to trust it,
        ``trained / (trained + propensity_prior)`` (0 for an offer without a trained model)."""
        if not any(m is not None and m.trained
                   for m in (self.propensity_models.get(o) for o, _ in offers)):
            return np.full(len(offers), 0.5), np.zeros(len(offers))
        base = features(profile, context, now_ms, self.profile_config)
        return self._own_propensities(profile, base, offers, now_ms)

    def _own_propensities(self, profile: Profile, base: dict[str, float],
                          offers: Sequence[tuple[str, bool]], now_ms: int
                          ) -> tuple[np.ndarray, np.ndarray]:
        p, trust = np.full(len(offers), 0.5), np.zeros(len(offers))
        cfg = self.profile_config
        for i, (offer_id, urgent) in enumerate(offers):
            model = self.propensity_models.get(offer_id)
            if model is None or model.trained == 0:
                continue
            x = base | offer_features(profile, offer_key(offer_id), urgent, now_ms, cfg)
            p[i] = model.predict(x)
            trust[i] = model.trained / (model.trained + self.config.propensity_prior)
        return p, trust

    def propensity(
        self,
        profile: Profile,
        context: Mapping[str, Any] | None,
        offer_id: str,
        urgent: bool,
        now_ms: int,
    ) -> float:
        """P(respond) for one offer (see ``propensities``)."""
        return float(self.propensities(profile, context, [(offer_id, urgent)], now_ms)[0])

    def engagement(
        self, profile: Profile, context: Mapping[str, Any] | None, now_ms: int
    ) -> float:
        x = features(profile, context, now_ms, self.profile_config)
        return self.engagement_model.predict(x)

    def churn(self, profile: Profile, now_ms: int) -> float:
        """P(no interaction within the horizon from now); 1.0 for a customer already silent for
        a whole horizon (churned by definition, and outside what the model learns from)."""
        if profile.n_events and now_ms - profile.last_event_ms >= self.config.churn_horizon_s * 1e3:
            return 1.0
        return self.churn_model.predict(features(profile, None, now_ms, self.profile_config))

    def capacity(self, profile: Profile, now_ms: int) -> float:
        x = features(profile, None, now_ms, self.profile_config)
        return from_capacity_target(self.capacity_model.predict(x))

    def scores(self, profile: Profile, now_ms: int, x: Mapping[str, float] | None = None
               ) -> tuple[float, float, float]:
        """``engagement`` (no context), ``churn`` and ``capacity`` from one feature vector
        (``x``: ``features(profile, None, now_ms)`` when the caller has it already)."""
        if x is None:
            x = features(profile, None, now_ms, self.profile_config)
        if profile.n_events and now_ms - profile.last_event_ms >= self.config.churn_horizon_s * 1e3:
            churn = 1.0
        else:
            churn = self.churn_model.predict(x)
        return (self.engagement_model.predict(x), churn,
                from_capacity_target(self.capacity_model.predict(x)))

    def segment_of(self, profile: Profile, now_ms: int) -> int:
        """Nearest segment now (-1 before the segmenter is initialised); does not learn."""
        return self.segmenter.predict(segment_vector(profile, now_ms, self.profile_config))

    def segment_report(self, ts: int) -> list[dict[str, Any]]:
        return self.report.rows(ts)

    # -- the customer's side: what a worker computes with the models it has -----------------
    def profile_after(self, profile: Profile, event: Mapping[str, Any]) -> Profile:
        """The profile with ``event`` applied (validated first), its churn checkpoints marked as
        labelled and its segment assigned by the current segmenter (``predict``: a worker never
        trains the population's models, the learner does: ``learn_interaction``)."""
        cfg = self.profile_config
        nxt = apply_interaction(profile, event, cfg)  # validates the event first
        ts = int(event["ts"])
        points, labelled = self._churn_points(profile, ts, ts)
        segment = self.segmenter.predict(segment_vector(nxt, ts, cfg))
        if points:
            return nxt.replace(segment=segment, churn_labelled_ms=labelled)
        return nxt.replace(segment=segment)

    # -- the population's side: learning ---------------------------------------------------------
    def learn_interaction(self, before: Profile, event: Mapping[str, Any],
                          segment: int | None = None) -> list[dict[str, Any]]:
        """Learn from an interaction, given the profile *before* it: churn (a returning
        customer labels the checkpoints of the silence before), capacity (a transaction's
        amount), the segmenter (from a customer's ``segment_min_events``-th interaction and every
        doubling after) and the segment report (``segment``: the segment the customer was
        assigned, by default the segmenter's after learning). Returns the drift records."""
        cfg = self.profile_config
        nxt = apply_interaction(before, event, cfg)
        self._version = None
        ts = int(event["ts"])
        events = self._learn_churn(before, self._churn_points(before, ts, ts)[0])
        if event.get("type") == "transaction" and isinstance(event.get("amount"), (int, float)):
            x = features(before, None, ts, cfg)
            events += self.capacity_model.learn(x, capacity_target(event["amount"]), ts)
        vec = segment_vector(nxt, ts, cfg)
        if teaches_segmenter(nxt.n_events, self.config.segment_min_events):
            learned = self.segmenter.learn(vec)
            if segment is None:
                segment = learned
        elif segment is None:
            segment = self.segmenter.predict(vec)
        self.report.move(before.segment, segment)
        return events

    def observe_interaction(
        self, profile: Profile, event: Mapping[str, Any]
    ) -> tuple[Profile, list[dict[str, Any]]]:
        """Learn from an interaction and apply it (``learn_interaction`` then ``profile_after``),
        for a process that owns both sides (tests, notebooks)."""
        events = self.learn_interaction(profile, event)  # validates the event first
        return self.profile_after(profile, event), events

    def silence_due_ms(self, profile: Profile | ProfileClocks) -> int | None:
        """When a customer silent since their last interaction becomes churn labels
        (``labels.silence_final_ms``): a partition's silence timer; ``None``: nothing to label."""
        c = self.config
        return silence_final_ms(profile, int(c.churn_horizon_s * 1000),
                                int(c.churn_period_s * 1000))

    def profile_after_silence(self, profile: Profile, now_ms: int) -> Profile:
        """The customer's side of a silence: the checkpoints labelled by ``learn_silence`` at
        ``now_ms`` are marked as labelled (never labelled twice, even when they come back)."""
        _, labelled = self._churn_points(profile, None, now_ms)
        return profile if labelled == profile.churn_labelled_ms else \
            profile.replace(churn_labelled_ms=labelled)

    def learn_silence(self, profile: Profile, now_ms: int) -> list[dict[str, Any]]:
        """Learn the churn checkpoints of ``profile`` that passed a full horizon without an
        interaction by ``now_ms`` (churned); returns the drift records."""
        self._version = None
        return self._learn_churn(profile, self._churn_points(profile, None, now_ms)[0])

    def observe_silence(
        self, profile: Profile, now_ms: int
    ) -> tuple[Profile, list[dict[str, Any]]]:
        """``learn_silence`` then ``profile_after_silence``, for a process that owns both sides
        (a periodic sweep in tests and notebooks; a partition uses one timer per customer)."""
        events = self.learn_silence(profile, now_ms)
        return self.profile_after_silence(profile, now_ms), events

    def _churn_points(self, before: Profile, next_ms: int | None, now_ms: int
                      ) -> tuple[list[tuple[int, bool]], int]:
        """``labels.churn_checkpoints`` with this suite's horizon and period."""
        c = self.config
        return churn_checkpoints(before, next_ms, now_ms, int(c.churn_horizon_s * 1000),
                                 int(c.churn_period_s * 1000))

    def _learn_churn(self, before: Profile, points: list[tuple[int, bool]]
                     ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for b, churned in points:
            x = features(before, None, b, self.profile_config)
            events += self.churn_model.learn(x, churned, b)
        return events

    def learn_reward(self, use_case: str, reward: float, ts: int) -> list[dict[str, Any]]:
        """A use case's settled decision (``reward``) for its drift alarm (``RewardDrift``);
        returns the alarm's drift record."""
        return self.reward_drift.learn(use_case, reward, ts)

    def learn_outcome(
        self,
        profile: Profile,
        offer_id: str,
        urgent: bool,
        reward: float,
        ts: int,
        context: Mapping[str, Any] | None = None,
        decided_ms: int | None = None,
        value: float = 0.0,
    ) -> list[dict[str, Any]]:
        """Learn propensity and engagement from one outcome (features of ``profile``, the
        customer before the outcome, as of ``decided_ms``, the decision time, default ``ts``).
        Past its first examples the engagement model learns a weighted sample of the
        non-responses (``outcome_negative_stride``). Returns the drift records."""
        cfg, at = self.profile_config, ts if decided_ms is None else decided_ms
        y = reward > 0
        self._version = None
        model = self.propensity_models.get(offer_id)
        if model is None:
            model = self.propensity_models[offer_id] = self._classifier(
                f"propensity/{offer_id}", self.config.propensity_classifiers)
        w_engagement, w_propensity = self.engagement_model.weight_for(y), model.weight_for(y)
        events: list[dict[str, Any]] = []
        if w_engagement or w_propensity:
            base = features(profile, context, at, cfg)
            if w_engagement:
                events += self.engagement_model.learn(base, y, ts, w_engagement)
            if w_propensity:
                x = base | offer_features(profile, offer_key(offer_id), urgent, at, cfg)
                events += model.learn(x, y, ts, w_propensity)
        self.report.outcome(profile.segment, float(y), value)
        return events

    def observe_outcome(
        self,
        profile: Profile,
        offer_id: str,
        urgent: bool,
        reward: float,
        ts: int,
        context: Mapping[str, Any] | None = None,
        decided_ms: int | None = None,
        value: float = 0.0,
    ) -> tuple[Profile, list[dict[str, Any]]]:
        """Learn from one outcome (``learn_outcome``) and apply it to the profile."""
        events = self.learn_outcome(profile, offer_id, urgent, reward, ts, context, decided_ms,
                                    value)
        return apply_outcome(profile, offer_key(offer_id), urgent, float(reward > 0), ts,
                             self.profile_config), events

    def prune(self, live_offer_ids: Sequence[str]) -> None:
        """Forget propensity models of offers no longer in the catalogue (bounds memory)."""
        live = set(live_offer_ids)
        self._version = None
        self.propensity_models = {k: v for k, v in self.propensity_models.items() if k in live}

    # -- checkpoints -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Checkpoint (``checkpoint`` envelope; a pickle: population-level state only)."""
        return checkpoint.dumps(self, kind=_KIND)

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelSuite:
        suite = checkpoint.loads(data, kind=_KIND)
        if not isinstance(suite, cls):
            raise checkpoint.CheckpointError("checkpoint does not hold a ModelSuite")
        return suite
