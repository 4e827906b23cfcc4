"""Contact fatigue: rolling caps, cool-down, same offer twice, quiet hours.

All windows are rolling and in event time: a contact at ``ts`` counts against a window of ``w``
seconds at ``now`` when ``now - w*1000 < ts`` (one made exactly ``w`` ago no longer counts).
Contacts stamped after ``now`` (replayed out of order) count too, which errs on the side of not
contacting.

- a *channel cap* ``{"sms": {"max": 2, "window_s": 604800}}`` blocks a request on that channel
  once the customer had ``max`` contacts on it in the window;
- the *global cap* counts contacts on every channel together (the customer's contact budget);
- *cool-down* blocks any contact within ``cooldown_s`` of the last one, on any channel;
- *same offer* blocks an offer shown (on any channel) within ``same_offer_s``;
- *quiet hours* block the configured channels between start and end in the customer's local
  time. The time zone comes from the request (or the profile); missing or unknown blocks
  (fails closed).

>>> from stream_app.rules.config import parse_rules
>>> rules = parse_rules({"fatigue": {"global_cap": {"max": 1, "window_s": 60}}})
>>> h = ContactHistory.empty().record(0, 7, "sms")
>>> channel_blocks(rules, "email", h, now_ms=59_999), channel_blocks(rules, "email", h, 60_000)
(['fatigue: global cap 1 per 60s reached'], [])
>>> quiet_hours_block(parse_rules({"quiet_hours": {"start": "22:00", "end": "07:00"}}),
...                   "sms", "Europe/London", now_ms=1_705_359_600_000)  # 2024-01-15 23:00 UTC
'quiet hours: 23:00 local in Europe/London (22:00-07:00)'
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from stream_app.core.catalogue import CHANNELS
from stream_app.rules.config import RuleSet
from stream_app.rules.history import ContactHistory

__all__ = ["channel_blocks", "same_offer_blocked", "quiet_hours_block", "local_minute"]


def _secs(s: float) -> str:
    return f"{s:g}s"


def channel_blocks(rules: RuleSet, channel: str, history: ContactHistory, now_ms: int) -> list[str]:
    """Reasons why no offer may be sent on ``channel`` now (caps and cool-down); empty if none."""
    reasons = []
    cap = rules.channel_caps.get(channel)
    if cap is not None:
        recent = history.since(now_ms - cap.window_ms)
        if np.count_nonzero(recent["channel"] == CHANNELS.index(channel)) >= cap.max:
            reasons.append(f"fatigue: {channel} cap {cap.max} per {_secs(cap.window_s)} reached")
    g = rules.global_cap
    if g is not None and len(history.since(now_ms - g.window_ms)) >= g.max:
        reasons.append(f"fatigue: global cap {g.max} per {_secs(g.window_s)} reached")
    if rules.cooldown_s > 0 and len(history.since(now_ms - int(round(rules.cooldown_s * 1000)))):
        reasons.append(f"fatigue: cool-down {_secs(rules.cooldown_s)} after the last contact")
    return reasons


def same_offer_blocked(
    rules: RuleSet, keys: np.ndarray, history: ContactHistory, now_ms: int
) -> np.ndarray:
    """Bool mask over ``keys``: the offer was shown within ``same_offer_s`` (on any channel)."""
    if rules.same_offer_s <= 0 or not len(history):
        return np.zeros(len(keys), bool)
    recent = history.since(now_ms - int(round(rules.same_offer_s * 1000)))["offer_key"]
    if not len(recent):
        return np.zeros(len(keys), bool)
    if len(keys) * len(recent) > 4096:
        return np.isin(keys, recent)
    return (np.asarray(keys)[:, None] == recent).any(axis=1)  # small: cheaper than isin's sort


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


def local_minute(now_ms: int, timezone: str | None) -> int | None:
    """Minutes after local midnight at ``now_ms`` in ``timezone``; ``None`` when unknown."""
    zone = _zone(timezone) if isinstance(timezone, str) and timezone else None
    if zone is None:
        return None
    local = datetime.fromtimestamp(now_ms / 1000.0, zone)
    return local.hour * 60 + local.minute


def quiet_hours_block(
    rules: RuleSet, channel: str, timezone: str | None, now_ms: int
) -> str | None:
    """The reason a contact on ``channel`` is blocked by quiet hours now, or ``None``."""
    quiet = rules.quiet_hours
    if quiet is None or channel not in quiet.channels:
        return None
    minute = local_minute(now_ms, timezone)
    if minute is None:
        return f"quiet hours: unknown time zone {timezone!r} (fail closed)"
    if quiet.covers(minute):
        return (
            f"quiet hours: {minute // 60:02d}:{minute % 60:02d} local in {timezone} "
            f"({quiet.describe()})"
        )
    return None
