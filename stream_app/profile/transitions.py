"""Pure transition functions: ``(profile, message) -> profile``, O(1) work per message.

Decay is in event time. The vector carries one clock (``clock_ms``); an update at ``ts`` first
multiplies every slot by ``0.5 ** ((ts - clock) / half_life_of_slot)``, then adds the event. A late
event (``ts`` before the clock) is added with weight ``0.5 ** ((clock - ts) / half_life)`` instead,
so every decayed sum is the same whatever order the events arrive in.

>>> p = apply_interaction(Profile.empty(), {"ts": 0, "type": "transaction", "amount": 100.0,
...                                          "category": "Dining", "channel": "app"})
>>> q = apply_interaction(p, {"ts": 30 * 86_400_000, "type": "login", "channel": "web"})
>>> round(float(q.vector[SLOTS["spend"]][CATEGORY_INDEX["dining"]]), 3)  # one half-life later
50.0
>>> q.n_events, q.first_seen_ms, q.last_event_ms == 30 * 86_400_000
(2, 0, True)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from stream_app.profile.layout import (
    CATEGORY_INDEX,
    CHANNEL_INDEX,
    DEFAULT_CONFIG,
    EVENT_INDEX,
    HABIT,
    NIGHT_BUCKETS,
    SLOTS,
    VECTOR_LEN,
    ProfileConfig,
    normalise_category,
)
from stream_app.profile.state import EMPTY_AT, Profile

__all__ = ["MAX_AMOUNT", "apply_interaction", "apply_outcome", "offer_history", "record_contact",
           "tod_bucket", "transaction_amount"]

HOUR_MS = 3_600_000
MAX_AMOUNT = 1e9  # the largest transaction amount (the interactions schema's bound)
GAP_EWMA_ALPHA = 0.2  # weight of the newest inter-event gap in the EWMA
_DISCOUNT_KEYS = ("discount", "promo", "coupon", "voucher")
_SLOW = SLOTS["slow"].start
_HABIT_AT = {name: _SLOW + i for i, name in enumerate(HABIT)}
# where an unused offer record sorts when the least recently touched one is sought: first
_UNUSED_FIRST = np.iinfo(np.int64).min


def tod_bucket(ts_ms: int) -> int:
    """Four-hour bucket (0..5) of the UTC hour of ``ts_ms``.

    >>> tod_bucket(0), tod_bucket(23 * 3_600_000)
    (0, 5)
    """
    return int((ts_ms // HOUR_MS) % 24) // 4


def _accumulate(p: Profile, ts: int, inc: np.ndarray, cfg: ProfileConfig) -> tuple[np.ndarray, int]:
    """The profile vector with ``inc`` added at event time ``ts``, and the new clock."""
    hl = cfg.half_lives_ms()
    vec = p.vector.astype(np.float64)
    if ts >= p.clock_ms:
        if ts > p.clock_ms:
            vec *= np.exp2(-(ts - p.clock_ms) / hl)
        vec += inc
        return vec.astype(np.float32), ts
    vec += inc * np.exp2(-(p.clock_ms - ts) / hl)
    return vec.astype(np.float32), p.clock_ms


def _is_discounted(attributes: Any) -> bool:
    if not isinstance(attributes, Mapping):
        return False
    return any(bool(attributes.get(k)) for k in _DISCOUNT_KEYS)


def transaction_amount(raw: Any) -> float:
    """A transaction's amount as the profile takes it: missing is 0; anything but a finite
    number in ``[0, MAX_AMOUNT]`` raises ``ValueError`` (the caller dead-letters the event), so
    no decayed sum, feature or model ever learns an infinity.

    >>> transaction_amount(23.5), transaction_amount(None)
    (23.5, 0.0)
    >>> transaction_amount(1e308)
    Traceback (most recent call last):
    ...
    ValueError: amount must be a finite number in [0, 1e+09], got 1e+308
    """
    if raw is None:
        return 0.0
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not (
            0.0 <= raw <= MAX_AMOUNT):  # False for NaN too
        raise ValueError(f"amount must be a finite number in [0, {MAX_AMOUNT:g}], got {raw!r}")
    return float(raw)


def _timestamp(message: Mapping[str, Any]) -> int:
    ts = message.get("ts") if isinstance(message, Mapping) else None
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts < 0 or ts != ts:
        raise ValueError(f"message needs a non-negative 'ts' in epoch ms, got {ts!r}")
    return int(ts)


def apply_interaction(
    profile: Profile, event: Mapping[str, Any], cfg: ProfileConfig = DEFAULT_CONFIG
) -> Profile:
    """The profile after one ``interactions`` event (contract shape); raises ``ValueError`` for an
    event without a valid ``ts`` or ``type``, or with an amount that is not a finite number in
    ``[0, MAX_AMOUNT]`` (the caller dead-letters it).

    Counts the event type, channel and time-of-day bucket; a transaction adds its amount to the
    spend of its category (unknown -> ``other``) on the fast and the slow clock, and counts small,
    night-time and discounted tickets. Idempotency by ``event_id`` is the caller's job.
    """
    ts = _timestamp(event)
    kind = event.get("type")
    if kind not in EVENT_INDEX:
        raise ValueError(f"unknown interaction type {kind!r}")
    bucket = tod_bucket(ts)
    inc = np.zeros(VECTOR_LEN, np.float64)
    inc[SLOTS["events"].start + EVENT_INDEX[kind]] = 1.0
    inc[SLOTS["tod"].start + bucket] = 1.0
    channel = event.get("channel")
    if channel in CHANNEL_INDEX:
        inc[SLOTS["channel"].start + CHANNEL_INDEX[channel]] = 1.0
    amount = 0.0
    if kind == "transaction":
        amount = transaction_amount(event.get("amount"))
        category = normalise_category(event.get("category"))
        flags = {
            "tx": True,
            "tx_small": amount < cfg.small_ticket,
            "tx_night": bucket in NIGHT_BUCKETS,
            "tx_discount": _is_discounted(event.get("attributes")),
        }
        inc[SLOTS["spend"].start + CATEGORY_INDEX[category]] = amount
        inc[_HABIT_AT[f"spend_{category}"]] = amount
        for name, on in flags.items():
            if on:
                inc[_HABIT_AT[name]] = 1.0
                if name != "tx":
                    inc[SLOTS[name].start] = 1.0
    vec, clock = _accumulate(profile, ts, inc, cfg)

    if profile.n_events > 0 and ts > profile.last_event_ms:
        gap = math.log1p((ts - profile.last_event_ms) / HOUR_MS)
        at = SLOTS["gap_log_ewma"].start
        vec[at] = gap if profile.n_events == 1 else (1 - GAP_EWMA_ALPHA) * vec[at] + (
            GAP_EWMA_ALPHA * gap
        )
    is_tx = kind == "transaction"
    if is_tx and ts >= profile.last_tx_ms:
        vec[SLOTS["last_amount"].start] = amount
    return profile.replace(
        vector=vec,
        offers=profile.offers.copy(),
        n_events=min(profile.n_events + 1, 2**32 - 1),
        first_seen_ms=ts if profile.n_events == 0 else min(profile.first_seen_ms, ts),
        last_event_ms=max(profile.last_event_ms, ts),
        clock_ms=clock,
        last_tx_ms=max(profile.last_tx_ms, ts) if is_tx else profile.last_tx_ms,
    )


def apply_outcome(
    profile: Profile,
    offer_key: int,
    urgent: bool,
    reward: float,
    ts: int,
    cfg: ProfileConfig = DEFAULT_CONFIG,
) -> Profile:
    """The profile after the customer answered (``reward`` 1) or not (0) an offer shown to them.

    Adds one *shown* and ``reward`` *responded* to the framing (urgent / neutral) counts and to
    the offer's record in the table of recent offers; when the table is full the least recently
    touched offer makes room.

    >>> p = apply_outcome(Profile.empty(), offer_key=7, urgent=True, reward=1.0, ts=0)
    >>> offer_history(p, 7, now_ms=0), offer_history(p, 8, now_ms=0)
    ((1.0, 1.0), (0.0, 0.0))
    """
    if not 0.0 <= reward <= 1.0:
        raise ValueError(f"reward must be in [0, 1], got {reward}")
    ts = int(ts)
    inc = np.zeros(VECTOR_LEN, np.float64)
    framing = SLOTS["framing"].start + (2 if urgent else 0)
    inc[framing] += 1.0
    inc[framing + 1] += reward
    inc[_HABIT_AT["shown"]] += 1.0
    inc[_HABIT_AT["responded"]] += reward
    vec, clock = _accumulate(profile, ts, inc, cfg)

    offers = profile.offers.copy()
    key = int(offer_key) & 0xFFFFFFFF
    used = offers["at"] != EMPTY_AT
    hits = np.flatnonzero(used & (offers["key"] == key))
    if len(hits):
        i = int(hits[0])
    else:
        i = int(np.argmin(np.where(used, offers["at"], _UNUSED_FIRST)))
        offers[i] = (key, 0.0, 0.0, ts)
    hl = cfg.half_life_s * 1000.0
    at = int(offers["at"][i])
    if ts >= at:
        keep, weight, new_at = 0.5 ** ((ts - at) / hl), 1.0, ts
    else:
        keep, weight, new_at = 1.0, 0.5 ** ((at - ts) / hl), at
    offers["shown"][i] = offers["shown"][i] * keep + weight
    offers["responded"][i] = offers["responded"][i] * keep + weight * reward
    offers["at"][i] = new_at
    return profile.replace(vector=vec, offers=offers, clock_ms=clock)


def record_contact(
    profile: Profile, channel: str, ts: int, cfg: ProfileConfig = DEFAULT_CONFIG
) -> Profile:
    """The profile after the engine contacted the customer on ``channel`` (fatigue counters).

    >>> p = record_contact(Profile.empty(), "sms", 0)
    >>> float(p.vector[SLOTS["fatigue"]][CHANNEL_INDEX["sms"]])
    1.0
    """
    if channel not in CHANNEL_INDEX:
        raise ValueError(f"unknown channel {channel!r}")
    inc = np.zeros(VECTOR_LEN, np.float64)
    inc[SLOTS["fatigue"].start + CHANNEL_INDEX[channel]] = 1.0
    vec, clock = _accumulate(profile, int(ts), inc, cfg)
    return profile.replace(vector=vec, offers=profile.offers.copy(), clock_ms=clock)


def offer_history(
    profile: Profile, offer_key: int, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG
) -> tuple[float, float]:
    """Decayed (shown, responded) of one offer at ``now_ms``; zeros if it is not in the table."""
    offers = profile.offers
    key = int(offer_key) & 0xFFFFFFFF
    hits = np.flatnonzero((offers["at"] != EMPTY_AT) & (offers["key"] == key))
    if not len(hits):
        return 0.0, 0.0
    rec = offers[int(hits[0])]
    factor = 0.5 ** (max(now_ms - int(rec["at"]), 0) / (cfg.half_life_s * 1000.0))
    return float(rec["shown"]) * factor, float(rec["responded"]) * factor
