"""The fixed layout of a behavioural profile: vocabularies, vector slots and their half-lives.

A profile is one float32 vector whose slots never move (plus a small header and a fixed table of
recent offers, see ``state.py``). Every vocabulary is closed, so the layout is fixed: an unknown
spend category counts as ``other``, an unknown channel is not counted.

Each slot decays with the half-life of its *clock*: ``fast`` (the profile's memory, default 30
days), ``slow`` (a longer memory, used to measure how far spend personality has moved), ``fatigue``
(recent contacts, default 7 days) or ``none`` (a value that is set, not accumulated).

>>> SLOTS["spend"].stop - SLOTS["spend"].start == len(CATEGORIES)
True
>>> VECTOR_LEN, normalise_category("Investments"), normalise_category("pets")
(68, 'savings', 'other')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stream_app.core.catalogue import CHANNELS

__all__ = [
    "ARCHETYPES",
    "CATEGORIES",
    "CHANNELS",
    "EVENT_TYPES",
    "HABIT",
    "LIFECYCLE_STAGES",
    "OFFER_SLOTS",
    "SLOTS",
    "STAGE_OF_EVENT",
    "TOD_BUCKETS",
    "VECTOR_LEN",
    "ProfileConfig",
    "normalise_category",
]

EVENT_TYPES = (
    "transaction", "page_view", "app_view", "login",
    "support_contact", "offer_view", "complaint", "opt_out",
)  # fmt: skip
CATEGORIES = (
    "groceries", "dining", "travel", "fuel", "entertainment", "electronics",
    "fashion", "health", "utilities", "savings", "other",
)  # fmt: skip
_ALIASES = {
    "investments": "savings", "investment": "savings", "savings_investments": "savings",
    "savings/investments": "savings", "bills": "utilities", "restaurants": "dining",
    "pharmacy": "health", "supermarket": "groceries", "petrol": "fuel",
}  # fmt: skip
TOD_BUCKETS = 6  # four-hour buckets of the UTC hour: 00-04, 04-08, ..., 20-24
NIGHT_BUCKETS = (0, 5)  # 00-04 and 20-24 UTC count as night for the impulsive archetype
LIFECYCLE_STAGES = ("orientation", "purchase", "support")
STAGE_OF_EVENT = {
    "page_view": 0, "app_view": 0, "login": 0, "offer_view": 0,
    "transaction": 1, "support_contact": 2, "complaint": 2,
}  # fmt: skip; opt_out belongs to no stage
ARCHETYPES = ("saver", "deal_seeker", "experience_seeker", "essentials_only", "impulsive")
OFFER_SLOTS = 8  # per-offer response history keeps the K most recently touched offers

# Inputs of the spend personality, kept on both the fast and the slow clock (same order).
HABIT = tuple(f"spend_{c}" for c in CATEGORIES) + (
    "tx", "tx_small", "tx_night", "tx_discount", "shown", "responded",
)

_BLOCKS: tuple[tuple[str, int, str], ...] = (
    ("events", len(EVENT_TYPES), "fast"),
    ("spend", len(CATEGORIES), "fast"),  # decayed amount per category
    ("tx_small", 1, "fast"),
    ("tx_night", 1, "fast"),
    ("tx_discount", 1, "fast"),
    ("channel", len(CHANNELS), "fast"),  # interactions per channel
    ("tod", TOD_BUCKETS, "fast"),  # interactions per time-of-day bucket
    ("framing", 4, "fast"),  # neutral shown, neutral responded, urgent shown, urgent responded
    ("fatigue", len(CHANNELS), "fatigue"),  # contacts per channel
    ("slow", len(HABIT), "slow"),
    ("last_amount", 1, "none"),
    ("gap_log_ewma", 1, "none"),  # EWMA of log1p(hours between events)
    ("emitted", 3, "none"),  # engagement, churn, log1p(capacity) last published
)


def _slots() -> tuple[dict[str, slice], int, tuple[str, ...]]:
    slots, clocks, at = {}, [], 0
    for name, size, clock in _BLOCKS:
        slots[name] = slice(at, at + size)
        clocks += [clock] * size
        at += size
    return slots, at, tuple(clocks)


SLOTS, VECTOR_LEN, _CLOCKS = _slots()


def normalise_category(category: object) -> str:
    """Map a transaction category to the fixed vocabulary; anything unknown is ``other``."""
    if not isinstance(category, str):
        return "other"
    key = category.strip().lower().replace(" ", "_").replace("-", "_")
    key = _ALIASES.get(key, key)
    return key if key in _CATEGORY_INDEX else "other"


_CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
CATEGORY_INDEX = _CATEGORY_INDEX
EVENT_INDEX = {t: i for i, t in enumerate(EVENT_TYPES)}
CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """How a profile forgets and what counts as a small ticket. Not stored in the profile: the
    same configuration must be passed to every update and read (the engine has one)."""

    half_life_s: float = 30 * 86400.0
    slow_half_life_s: float = 180 * 86400.0
    fatigue_half_life_s: float = 7 * 86400.0
    small_ticket: float = 20.0  # a transaction below this amount is a small ticket

    def __post_init__(self) -> None:
        if min(self.half_life_s, self.slow_half_life_s, self.fatigue_half_life_s) <= 0:
            raise ValueError("half-lives must be > 0 seconds")

    def half_lives_ms(self) -> np.ndarray:
        """Half-life in milliseconds of every vector slot (``inf`` for slots that do not decay)."""
        return _half_lives_ms(self.half_life_s, self.slow_half_life_s, self.fatigue_half_life_s)


@lru_cache(maxsize=16)
def _half_lives_ms(fast: float, slow: float, fatigue: float) -> np.ndarray:
    by_clock = {"fast": fast, "slow": slow, "fatigue": fatigue, "none": np.inf}
    out = np.array([by_clock[c] * 1000.0 for c in _CLOCKS], np.float64)
    out.flags.writeable = False
    return out


DEFAULT_CONFIG = ProfileConfig()
