"""The one feature function, shared by training and serving.

``features(profile, context, now_ms)`` returns a River-style ``dict[str, float]`` with exactly the
keys ``FEATURE_NAMES`` in that order, whatever the profile and context; ``feature_vector`` returns
the same values as a float64 array (all of them, or a fixed subset such as ``BANDIT_FEATURES`` for
the contextual bandit). Both read the profile as of ``now_ms`` (decayed), never change it, and
both come from one code path, so a model trained on ``features`` sees at serving time what it
saw in training.

``context`` is the decision request's flat ``context`` object plus its ``channel``; the only key
read is ``channel`` (other keys are ignored so the feature set stays fixed). Time-of-day features
use the UTC hour, like the profile's habits, so "is this one of the customer's usual hours" is
consistent whatever the customer's timezone.

>>> p = Profile.empty()
>>> x = features(p, {"channel": "app"}, now_ms=0)
>>> list(x) == list(FEATURE_NAMES), x["ctx_chan_app"], x["seg_0"]
(True, 1.0, 0.0)
>>> bool(np.array_equal(feature_vector(p, {"channel": "app"}, 0), list(x.values())))
True
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from stream_app.profile.layout import (
    ARCHETYPES,
    CATEGORIES,
    CHANNEL_INDEX,
    CHANNELS,
    DEFAULT_CONFIG,
    EVENT_INDEX,
    LIFECYCLE_STAGES,
    SLOTS,
    TOD_BUCKETS,
    ProfileConfig,
)
from stream_app.profile.personality import archetype_inputs, memberships
from stream_app.profile.state import Profile
from stream_app.profile.transitions import HOUR_MS, offer_history, tod_bucket
from stream_app.profile.views import decayed, habit_inputs, lifecycle_weights, share

__all__ = [
    "BANDIT_FEATURES",
    "FEATURE_NAMES",
    "MAX_SEGMENTS",
    "feature_vector",
    "features",
    "offer_features",
]

MAX_SEGMENTS = 8  # segment one-hot width; a segmenter may use at most this many segments
_DAY_MS = 86_400_000
_MAX_RECENCY_DAYS = 365.0


def _pairs(
    p: Profile, context: Mapping[str, Any], now_ms: int, cfg: ProfileConfig
) -> list[tuple[str, float]]:
    vec = decayed(p, now_ms, cfg)
    ev = vec[SLOTS["events"]]
    n_ev, n_tx = float(ev.sum()), float(ev[EVENT_INDEX["transaction"]])
    spend = vec[SLOTS["spend"]]
    money = float(spend.sum())
    seen = p.n_events > 0
    recency_h = max(now_ms - p.last_event_ms, 0) / HOUR_MS if seen else _MAX_RECENCY_DAYS * 24
    recency_h = min(recency_h, _MAX_RECENCY_DAYS * 24)
    gap = float(vec[SLOTS["gap_log_ewma"]][0]) if p.n_events > 1 else 0.0
    out = [
        ("recency_days_log", math.log1p(recency_h / 24)),
        ("frequency_log", math.log1p(n_ev)),
        ("tx_frequency_log", math.log1p(n_tx)),
        ("monetary_log", math.log1p(money)),
        ("avg_ticket_log", math.log1p(money / n_tx) if n_tx > 1e-9 else 0.0),
        ("last_amount_log", math.log1p(float(vec[SLOTS["last_amount"]][0]))),
        ("gap_hours_log", gap),
        ("overdue", math.log1p(recency_h) - gap if p.n_events > 1 else 0.0),
        ("tenure_days_log", math.log1p(max(now_ms - p.first_seen_ms, 0) / _DAY_MS) if seen
         else 0.0),
    ]
    out += [(f"spend_{c}", float(v)) for c, v in zip(CATEGORIES, share(spend))]
    chan = share(vec[SLOTS["channel"]])
    out += [(f"chan_{c}", float(v)) for c, v in zip(CHANNELS, chan)]
    tod = share(vec[SLOTS["tod"]])
    out += [(f"tod_{b}", float(v)) for b, v in enumerate(tod)]
    ns, nr, us, ur = (float(v) for v in vec[SLOTS["framing"]])
    rate_n, rate_u = (nr + 1) / (ns + 2), (ur + 1) / (us + 2)
    out += [
        ("resp_rate_neutral", rate_n),
        ("resp_rate_urgent", rate_u),
        ("urgency_lift", rate_u - rate_n),
        ("shown_log", math.log1p(ns + us)),
    ]
    fatigue = vec[SLOTS["fatigue"]]
    channel = context.get("channel") if isinstance(context, Mapping) else None
    ch = CHANNEL_INDEX.get(channel, -1) if isinstance(channel, str) else -1
    out += [
        ("fatigue_total_log", math.log1p(float(fatigue.sum()))),
        ("fatigue_channel_log", math.log1p(float(fatigue[ch])) if ch >= 0 else 0.0),
    ]
    stage_w = lifecycle_weights(vec)
    stage = int(np.argmax(stage_w)) if stage_w.sum() > 0 else 0
    out += [(f"stage_{s}", float(i == stage)) for i, s in enumerate(LIFECYCLE_STAGES)]
    fast = memberships(archetype_inputs(habit_inputs(vec, slow=False)))
    slow = memberships(archetype_inputs(habit_inputs(vec, slow=True)))
    out += [(f"persona_{a}", float(m)) for a, m in zip(ARCHETYPES, fast)]
    out.append(("persona_change", 0.5 * float(np.abs(fast - slow).sum())))
    support = float(ev[EVENT_INDEX["support_contact"]] + ev[EVENT_INDEX["complaint"]])
    out += [
        ("support_share", support / n_ev if n_ev > 0 else 0.0),
        ("complaints_log", math.log1p(float(ev[EVENT_INDEX["complaint"]]))),
        ("opt_out_log", math.log1p(float(ev[EVENT_INDEX["opt_out"]]))),
    ]
    out += [(f"seg_{i}", float(p.segment == i)) for i in range(MAX_SEGMENTS)]
    hour = (now_ms // HOUR_MS) % 24 + (now_ms % HOUR_MS) / HOUR_MS
    weekday = (now_ms // _DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out += [
        ("ctx_hour_sin", math.sin(2 * math.pi * hour / 24)),
        ("ctx_hour_cos", math.cos(2 * math.pi * hour / 24)),
        ("ctx_weekend", float(weekday >= 5)),
        ("ctx_tod_habit", float(tod[tod_bucket(now_ms)])),
        ("ctx_channel_habit", float(chan[ch]) if ch >= 0 else 0.0),
    ]
    out += [(f"ctx_chan_{c}", float(i == ch)) for i, c in enumerate(CHANNELS)]
    return out


FEATURE_NAMES: tuple[str, ...] = tuple(n for n, _ in _pairs(Profile.empty(), {}, 0, DEFAULT_CONFIG))
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
BANDIT_FEATURES: tuple[str, ...] = (
    "recency_days_log", "frequency_log", "monetary_log", "avg_ticket_log", "overdue",
    "resp_rate_neutral", "resp_rate_urgent", "fatigue_channel_log",
    *(f"persona_{a}" for a in ARCHETYPES), *(f"stage_{s}" for s in LIFECYCLE_STAGES),
    "ctx_tod_habit", "ctx_channel_habit",
)  # fmt: skip
assert TOD_BUCKETS == 6 and set(BANDIT_FEATURES) <= set(FEATURE_NAMES)


def features(
    profile: Profile,
    context: Mapping[str, Any] | None,
    now_ms: int,
    cfg: ProfileConfig = DEFAULT_CONFIG,
) -> dict[str, float]:
    """Profile + context features at ``now_ms``, keys exactly ``FEATURE_NAMES`` in order."""
    return dict(_pairs(profile, context or {}, int(now_ms), cfg))


def feature_vector(
    profile: Profile,
    context: Mapping[str, Any] | None,
    now_ms: int,
    names: Sequence[str] = FEATURE_NAMES,
    cfg: ProfileConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """``features`` as a float64 array in the order of ``names`` (default: all of them).

    >>> feature_vector(Profile.empty(), None, 0, names=BANDIT_FEATURES).shape
    (18,)
    """
    values = [v for _, v in _pairs(profile, context or {}, int(now_ms), cfg)]
    if names is FEATURE_NAMES:
        return np.array(values, np.float64)
    return np.array([values[_INDEX[n]] for n in names], np.float64)


def offer_features(
    profile: Profile, offer_key: int, urgent: bool, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG
) -> dict[str, float]:
    """What the customer did with one offer before: decayed times shown and response rate
    (shrunk toward the customer's overall rate with two pseudo-contacts), and its framing.

    >>> offer_features(Profile.empty(), 1, urgent=True, now_ms=0)
    {'offer_shown_log': 0.0, 'offer_resp_rate': 0.5, 'offer_urgent': 1.0}
    """
    shown, responded = offer_history(profile, offer_key, now_ms, cfg)
    ns, nr, us, ur = (float(v) for v in profile.vector[SLOTS["framing"]])
    overall = (nr + ur + 1) / (ns + us + 2)
    return {
        "offer_shown_log": math.log1p(shown),
        "offer_resp_rate": (responded + 2 * overall) / (shown + 2),
        "offer_urgent": float(bool(urgent)),
    }
