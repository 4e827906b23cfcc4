"""Read-only views of a profile at a point in event time: decayed values, mixes, lifecycle stage.

Reading never changes the profile: ``decayed`` applies the decay from the profile's clock to
``now_ms`` on a copy (no decay when ``now_ms`` is before the clock, e.g. a late request).

>>> from stream_app.profile.transitions import apply_interaction
>>> p = Profile.empty()
>>> lifecycle_stage(p, now_ms=0)
'orientation'
>>> for ts, kind in [(0, "page_view"), (1, "transaction"), (2, "transaction")]:
...     p = apply_interaction(p, {"ts": ts, "type": kind, "amount": 5.0, "category": "travel"})
>>> lifecycle_stage(p, now_ms=2), float(spend_mix(p, 2)[CATEGORIES.index("travel")])
('purchase', 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from stream_app.profile.layout import (
    CATEGORIES,
    DEFAULT_CONFIG,
    EVENT_INDEX,
    HABIT,
    LIFECYCLE_STAGES,
    SLOTS,
    STAGE_OF_EVENT,
    ProfileConfig,
)
from stream_app.profile.state import Profile

__all__ = [
    "STAGE_WEIGHTS",
    "decayed",
    "habit_inputs",
    "lifecycle_stage",
    "lifecycle_weights",
    "recency_days",
    "share",
    "spend_mix",
]

# Evidence weight of one event for its stage: a purchase says more than a page view, a support
# contact more than a purchase (it is rarer and marks the after-sale relationship).
STAGE_WEIGHTS = np.array([1.0, 2.0, 3.0])
_STAGE_MATRIX = np.zeros((len(EVENT_INDEX), len(LIFECYCLE_STAGES)))
for _kind, _stage in STAGE_OF_EVENT.items():
    _STAGE_MATRIX[EVENT_INDEX[_kind], _stage] = 1.0


def decayed(profile: Profile, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The profile vector (float64 copy) decayed to ``now_ms``."""
    vec = profile.vector.astype(np.float64)
    if now_ms > profile.clock_ms:
        vec *= np.exp2(-(now_ms - profile.clock_ms) / cfg.half_lives_ms())
    return vec


def share(values: np.ndarray) -> np.ndarray:
    """``values / values.sum()``, zeros when there is nothing to share."""
    total = float(values.sum())
    return values / total if total > 0 else np.zeros_like(values)


def spend_mix(profile: Profile, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Share of (decayed) spend per category, aligned to ``CATEGORIES``."""
    return share(decayed(profile, now_ms, cfg)[SLOTS["spend"]])


def lifecycle_weights(vec: np.ndarray) -> np.ndarray:
    """Weighted evidence for (orientation, purchase, support) from a decayed vector."""
    return (vec[SLOTS["events"]] @ _STAGE_MATRIX) * STAGE_WEIGHTS


def lifecycle_stage(profile: Profile, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG) -> str:
    """The customer's journey stage from the recent event mix: the stage with the most weighted
    evidence (``STAGE_WEIGHTS``); ``orientation`` for a customer with no events."""
    w = lifecycle_weights(decayed(profile, now_ms, cfg))
    return LIFECYCLE_STAGES[int(np.argmax(w))] if w.sum() > 0 else LIFECYCLE_STAGES[0]


def habit_inputs(vec: np.ndarray, slow: bool) -> np.ndarray:
    """The spend-personality inputs (order of ``layout.HABIT``) on the fast or the slow clock."""
    if slow:
        return vec[SLOTS["slow"]]
    fr = vec[SLOTS["framing"]]
    return np.concatenate(
        [
            vec[SLOTS["spend"]],
            [vec[SLOTS["events"].start + EVENT_INDEX["transaction"]]],
            vec[SLOTS["tx_small"]],
            vec[SLOTS["tx_night"]],
            vec[SLOTS["tx_discount"]],
            [fr[0] + fr[2], fr[1] + fr[3]],
        ]
    )


def recency_days(profile: Profile, now_ms: int) -> float:
    """Days since the last interaction (``inf`` for a customer never seen)."""
    if profile.n_events == 0:
        return math.inf
    return max(now_ms - profile.last_event_ms, 0) / 86_400_000.0


assert len(HABIT) == len(CATEGORIES) + 6
