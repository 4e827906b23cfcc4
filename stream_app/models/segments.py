"""What a customer is segmented on, and when a profile teaches the segmenter.

``segment_vector`` is what is clustered (by ``kmeans.OnlineKMeans``): the spend, channel and
time-of-day mixes plus scaled ticket size and activity. These are the features of the same names,
read straight from the profile vector because this runs on every interaction; blocks are weighted
(``_SCALE``) so that spend mix counts most and ticket size / activity least.

``teaches_segmenter(n_events)`` says which interactions of a customer are learned from: the 10th,
20th, 40th, 80th, ... Every customer then weighs about the same whatever their activity (learning
from every event lets the most active customers pull every centre), later and more mature
profiles still count, and the schedule needs no state beyond the profile's event count.

>>> [n for n in range(1, 100) if teaches_segmenter(n)]
[10, 20, 40, 80]
"""

from __future__ import annotations

import math

import numpy as np

from stream_app.profile import DEFAULT_CONFIG, Profile, ProfileConfig, decayed
from stream_app.profile.layout import CATEGORIES, CHANNELS, EVENT_INDEX, SLOTS, TOD_BUCKETS

__all__ = ["SEGMENT_FEATURES", "segment_vector", "teaches_segmenter"]

SEGMENT_FEATURES: tuple[str, ...] = (
    *(f"spend_{c}" for c in CATEGORIES),
    *(f"chan_{c}" for c in CHANNELS),
    *(f"tod_{b}" for b in range(TOD_BUCKETS)),
    "avg_ticket_log",
    "frequency_log",
)
_SCALE = np.array(
    [1.0] * len(CATEGORIES) + [0.7] * len(CHANNELS) + [0.5] * TOD_BUCKETS + [0.25, 0.2]
)


def teaches_segmenter(n_events: int, first: int = 10) -> bool:
    """True for the ``first``-th event of a customer and every doubling after it."""
    if n_events < first or n_events % first:
        return False
    m = n_events // first
    return m & (m - 1) == 0


def segment_vector(
    profile: Profile, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG
) -> np.ndarray:
    """The vector a profile is clustered on (``SEGMENT_FEATURES``, block-weighted)."""
    vec = decayed(profile, now_ms, cfg)
    out = np.empty(len(SEGMENT_FEATURES))
    at = 0
    for block in ("spend", "channel", "tod"):
        values = vec[SLOTS[block]]
        total = values.sum()
        out[at : at + len(values)] = values / total if total > 0 else 0.0
        at += len(values)
    n_tx = vec[SLOTS["events"].start + EVENT_INDEX["transaction"]]
    money = vec[SLOTS["spend"]].sum()
    out[at] = math.log1p(money / n_tx) if n_tx > 1e-9 else 0.0
    out[at + 1] = math.log1p(vec[SLOTS["events"]].sum())
    return out * _SCALE
