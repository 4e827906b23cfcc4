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
    HABIT,
    LIFECYCLE_STAGES,
    SLOTS,
    TOD_BUCKETS,
    ProfileConfig,
)
from stream_app.profile.personality import memberships
from stream_app.profile.state import Profile
from stream_app.profile.transitions import HOUR_MS, offer_history, tod_bucket
from stream_app.profile.views import decayed, lifecycle_weights

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


# Sums are numpy's (pairwise from 8 numbers up) for the slots of 8 and more, and Python's for the
# shorter ones: numpy adds fewer than 8 numbers one after the other too, so both give the same
# floats as ``vec[slot].sum()``.
_EVENTS, _SPEND = SLOTS["events"], SLOTS["spend"]
_SLOW_SPEND = slice(SLOTS["slow"].start, SLOTS["slow"].start + len(CATEGORIES))
_N_CAT = len(CATEGORIES)
_TX = EVENT_INDEX["transaction"]
_SUPPORT, _COMPLAINT, _OPT_OUT = (EVENT_INDEX[k] for k in ("support_contact", "complaint", "opt_out"))
assert max(len(CHANNELS), TOD_BUCKETS, len(ARCHETYPES), len(LIFECYCLE_STAGES)) < 8
assert HABIT[_N_CAT:] == ("tx", "tx_small", "tx_night", "tx_discount", "shown", "responded")


def _shares(values: list[float], total: float | None = None) -> list[float]:
    """``views.share`` as Python floats; ``total`` (numpy's sum) is required from 8 values up."""
    if total is None:
        total = sum(values)
    return [x / total for x in values] if total > 0 else [0.0] * len(values)


def _memberships(shares: list[float], habits: list[float]) -> np.ndarray:
    """``memberships(archetype_inputs(...))`` from the spend shares and the other six habits."""
    tx, small, night, discount, shown, responded = habits
    per_tx = [min(max(c / tx, 0.0), 1.0) for c in (small, night, discount)] if tx > 0 else \
        [0.0, 0.0, 0.0]
    return memberships(np.array(shares + per_tx + [responded / (shown + 2.0)]))


def _values(p: Profile, context: Mapping[str, Any], now_ms: int, cfg: ProfileConfig
            ) -> list[float]:
    """The feature values in the order of ``FEATURE_NAMES``.

    Few, whole-vector numpy calls and Python floats otherwise (a call costs more than the
    arithmetic on these few dozen numbers); every value is computed as ``views`` /
    ``personality`` compute it (same sums, same order), so the features are the same floats.
    """
    vec = decayed(p, now_ms, cfg)
    v = vec.tolist()
    ev = v[_EVENTS]
    n_ev, n_tx, money = float(vec[_EVENTS].sum()), ev[_TX], float(vec[_SPEND].sum())
    seen = p.n_events > 0
    recency_h = max(now_ms - p.last_event_ms, 0) / HOUR_MS if seen else _MAX_RECENCY_DAYS * 24
    recency_h = min(recency_h, _MAX_RECENCY_DAYS * 24)
    gap = v[SLOTS["gap_log_ewma"].start] if p.n_events > 1 else 0.0
    out = [
        math.log1p(recency_h / 24),
        math.log1p(n_ev),
        math.log1p(n_tx),
        math.log1p(money),
        math.log1p(money / n_tx) if n_tx > 1e-9 else 0.0,
        math.log1p(v[SLOTS["last_amount"].start]),
        gap,
        math.log1p(recency_h) - gap if p.n_events > 1 else 0.0,
        math.log1p(max(now_ms - p.first_seen_ms, 0) / _DAY_MS) if seen else 0.0,
    ]
    spend = _shares(v[_SPEND], money)
    out += spend
    chan = _shares(v[SLOTS["channel"]])
    out += chan
    tod = _shares(v[SLOTS["tod"]])
    out += tod
    ns, nr, us, ur = v[SLOTS["framing"]]
    rate_n, rate_u = (nr + 1) / (ns + 2), (ur + 1) / (us + 2)
    out += [rate_n, rate_u, rate_u - rate_n, math.log1p(ns + us)]
    channel = context.get("channel") if isinstance(context, Mapping) else None
    ch = CHANNEL_INDEX.get(channel, -1) if isinstance(channel, str) else -1
    out += [
        math.log1p(sum(v[SLOTS["fatigue"]])),
        math.log1p(v[SLOTS["fatigue"].start + ch]) if ch >= 0 else 0.0,
    ]
    stage_w = lifecycle_weights(vec).tolist()
    stage = max(range(len(stage_w)), key=stage_w.__getitem__) if sum(stage_w) > 0 else 0
    out += [float(i == stage) for i in range(len(LIFECYCLE_STAGES))]
    sc = SLOTS["tx_small"].start
    fast = _memberships(spend, [n_tx, v[sc], v[sc + 1], v[sc + 2], ns + us, nr + ur])
    slow_at = SLOTS["slow"].start
    slow = _memberships(_shares(v[_SLOW_SPEND], float(vec[_SLOW_SPEND].sum())),
                        v[slow_at + _N_CAT:SLOTS["slow"].stop])
    persona = fast.tolist()
    out += persona
    out.append(0.5 * sum(abs(a - b) for a, b in zip(persona, slow.tolist())))
    support = ev[_SUPPORT] + ev[_COMPLAINT]
    out += [
        support / n_ev if n_ev > 0 else 0.0,
        math.log1p(ev[_COMPLAINT]),
        math.log1p(ev[_OPT_OUT]),
    ]
    out += [float(p.segment == i) for i in range(MAX_SEGMENTS)]
    hour = (now_ms // HOUR_MS) % 24 + (now_ms % HOUR_MS) / HOUR_MS
    weekday = (now_ms // _DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out += [
        math.sin(2 * math.pi * hour / 24),
        math.cos(2 * math.pi * hour / 24),
        float(weekday >= 5),
        tod[tod_bucket(now_ms)],
        chan[ch] if ch >= 0 else 0.0,
    ]
    out += [float(i == ch) for i in range(len(CHANNELS))]
    return out


FEATURE_NAMES: tuple[str, ...] = (
    "recency_days_log", "frequency_log", "tx_frequency_log", "monetary_log", "avg_ticket_log",
    "last_amount_log", "gap_hours_log", "overdue", "tenure_days_log",
    *(f"spend_{c}" for c in CATEGORIES), *(f"chan_{c}" for c in CHANNELS),
    *(f"tod_{b}" for b in range(TOD_BUCKETS)),
    "resp_rate_neutral", "resp_rate_urgent", "urgency_lift", "shown_log",
    "fatigue_total_log", "fatigue_channel_log",
    *(f"stage_{s}" for s in LIFECYCLE_STAGES), *(f"persona_{a}" for a in ARCHETYPES),
    "persona_change", "support_share", "complaints_log", "opt_out_log",
    *(f"seg_{i}" for i in range(MAX_SEGMENTS)),
    "ctx_hour_sin", "ctx_hour_cos", "ctx_weekend", "ctx_tod_habit", "ctx_channel_habit",
    *(f"ctx_chan_{c}" for c in CHANNELS),
)  # fmt: skip
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
BANDIT_FEATURES: tuple[str, ...] = (
    "recency_days_log", "frequency_log", "monetary_log", "avg_ticket_log", "overdue",
    "resp_rate_neutral", "resp_rate_urgent", "fatigue_channel_log",
    *(f"persona_{a}" for a in ARCHETYPES), *(f"stage_{s}" for s in LIFECYCLE_STAGES),
    "ctx_tod_habit", "ctx_channel_habit",
)  # fmt: skip
assert TOD_BUCKETS == 6 and set(BANDIT_FEATURES) <= set(FEATURE_NAMES)
assert len(_values(Profile.empty(), {}, 0, DEFAULT_CONFIG)) == len(FEATURE_NAMES)


def features(
    profile: Profile,
    context: Mapping[str, Any] | None,
    now_ms: int,
    cfg: ProfileConfig = DEFAULT_CONFIG,
) -> dict[str, float]:
    """Profile + context features at ``now_ms``, keys exactly ``FEATURE_NAMES`` in order."""
    return dict(zip(FEATURE_NAMES, _values(profile, context or {}, int(now_ms), cfg)))


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
    values = _values(profile, context or {}, int(now_ms), cfg)
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
