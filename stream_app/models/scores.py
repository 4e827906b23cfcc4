"""The customer-scores record (compacted topic) and when to publish it.

``customer_scores`` summarises a profile with the current models as a JSON-ready record.
``should_emit`` rate-limits publication per customer: never more than once per ``min_interval_s``;
once that has passed, publish when the segment or dominant archetype changed, when engagement or
churn moved by more than ``delta`` (absolute), when capacity moved by more than ``delta`` on the
log scale (about ``delta`` relative), or when ``refresh_s`` passed anyway (keeps the compacted
topic fresh). What was last published is remembered in the profile (``mark_emitted``), so no
other table is needed.

>>> from stream_app.profile import Profile, apply_interaction
>>> from stream_app.models.suite import ModelSuite, SuiteConfig
>>> suite = ModelSuite(SuiteConfig(classifiers=("prior",), regressors=("mean",)))
>>> p = apply_interaction(Profile.empty(), {"ts": 0, "type": "login"})
>>> s = customer_scores(p, suite, now_ms=0, customer_id="c-1")
>>> s["customer_id"], s["segment"], s["spend_personality"]["dominant"], should_emit(p, s, 0)
('c-1', None, None, True)
>>> p = mark_emitted(p, s, 0)
>>> should_emit(p, s, 60_000), should_emit(p, s, 2 * 86_400_000)
(False, True)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from stream_app.profile import ARCHETYPES, LIFECYCLE_STAGES, Profile, features
from stream_app.profile.layout import SLOTS

if TYPE_CHECKING:
    from stream_app.models.suite import ModelSuite

__all__ = ["customer_scores", "mark_emitted", "should_emit"]


def customer_scores(
    profile: Profile, models: ModelSuite, now_ms: int, customer_id: str | None = None
) -> dict[str, Any]:
    """JSON-ready scores record (schema ``customer-scores.v1``; ``customer_id`` if given)."""
    # one feature vector for the models, the spend personality and the lifecycle stage (the
    # features hold them, computed as ``spend_personality`` and ``lifecycle_stage`` do)
    x = features(profile, None, now_ms, models.profile_config)
    persona = [x[f"persona_{a}"] for a in ARCHETYPES]
    spent = x["monetary_log"] > 0
    engagement, churn, capacity = models.scores(profile, now_ms, x)
    record: dict[str, Any] = {} if customer_id is None else {"customer_id": customer_id}
    record.update(
        ts=int(now_ms),
        segment=profile.segment if profile.segment >= 0 else None,
        spend_personality={
            "dominant": ARCHETYPES[persona.index(max(persona))] if spent else None,
            "change": round(x["persona_change"], 6),
            "memberships": {a: round(m, 6) for a, m in zip(ARCHETYPES, persona)},
        },
        lifecycle_stage=next(s for s in LIFECYCLE_STAGES if x[f"stage_{s}"]),
        engagement=round(engagement, 6),
        churn=round(churn, 6),
        capacity=round(capacity, 4),
        model_version=models.version,
    )
    return record


def _dominant_index(scores: Mapping[str, Any]) -> int:
    dominant = scores["spend_personality"]["dominant"]
    return len(ARCHETYPES) if dominant is None else ARCHETYPES.index(dominant)


def _segment(scores: Mapping[str, Any]) -> int:
    return -1 if scores.get("segment") is None else int(scores["segment"])


def should_emit(
    profile: Profile,
    scores: Mapping[str, Any],
    now_ms: int,
    min_interval_s: float = 3600.0,
    delta: float = 0.05,
    refresh_s: float = 86400.0,
) -> bool:
    """Whether to publish ``scores`` now, given what ``profile`` says was published last."""
    if profile.emitted_dominant < 0:
        return True
    elapsed_s = (now_ms - profile.last_emit_ms) / 1000.0
    if elapsed_s < min_interval_s:
        return False
    if _segment(scores) != profile.emitted_segment:
        return True
    if _dominant_index(scores) != profile.emitted_dominant:
        return True
    eng, churn, cap = (float(v) for v in profile.vector[SLOTS["emitted"]])
    moved = (
        abs(scores["engagement"] - eng) > delta
        or abs(scores["churn"] - churn) > delta
        or abs(math.log1p(scores["capacity"]) - cap) > delta
    )
    return moved or elapsed_s >= refresh_s


def mark_emitted(profile: Profile, scores: Mapping[str, Any], now_ms: int) -> Profile:
    """The profile remembering that ``scores`` were published at ``now_ms``."""
    vec = profile.vector.copy()
    vec[SLOTS["emitted"]] = (
        scores["engagement"], scores["churn"], math.log1p(scores["capacity"]),
    )  # fmt: skip
    return profile.replace(
        vector=vec,
        offers=profile.offers.copy(),
        last_emit_ms=int(now_ms),
        emitted_segment=_segment(scores),
        emitted_dominant=_dominant_index(scores),
    )
