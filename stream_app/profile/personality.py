"""Spend personality: soft membership of five behavioural archetypes, and how fast it moves.

Each archetype has a score, a linear function of interpretable inputs in [0, 1] computed from the
profile (``archetype_inputs``): spend shares by category, the shares of small, night-time and
discounted tickets, and the response rate to offers. Memberships are ``softmax(scores / T)``, so
they always sum to one and move smoothly as behaviour moves.

The same inputs exist on the profile's fast and slow clocks. Memberships from the fast clock are
the customer *now*; those from the slow clock are the customer *over a longer past*; their total
variation distance (``change``, in [0, 1]) says how much the personality is shifting.

>>> from stream_app.profile.transitions import apply_interaction
>>> p = Profile.empty()
>>> for day in range(20):
...     p = apply_interaction(p, {"ts": day * 86_400_000, "type": "transaction",
...                               "amount": 500.0, "category": "savings"})
>>> sp = spend_personality(p, now_ms=20 * 86_400_000)
>>> sp.dominant, round(sum(sp.memberships.values()), 6), sp.change < 0.05
('saver', 1.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_app.profile.layout import ARCHETYPES, CATEGORIES, DEFAULT_CONFIG, ProfileConfig
from stream_app.profile.state import Profile
from stream_app.profile.views import decayed, habit_inputs

__all__ = [
    "ARCHETYPES",
    "INPUTS",
    "SpendPersonality",
    "archetype_inputs",
    "memberships",
    "spend_personality",
]

INPUTS = tuple(f"share_{c}" for c in CATEGORIES) + (
    "small_ticket_share", "night_share", "discount_share", "response_rate",
)  # fmt: skip
_C = {c: i for i, c in enumerate(CATEGORIES)}
_I = {name: i for i, name in enumerate(INPUTS)}


def _weights() -> np.ndarray:
    """Archetype x input weights: what each archetype is known by (and what contradicts it)."""
    w = np.zeros((len(ARCHETYPES), len(INPUTS)))
    rows = {
        "saver": {"share_savings": 4.0, "small_ticket_share": -0.5, "share_fashion": -1.0,
                  "share_entertainment": -1.0},
        "deal_seeker": {"discount_share": 3.5, "response_rate": 3.0, "share_fashion": 0.5,
                        "share_electronics": 0.5},
        "experience_seeker": {"share_dining": 3.0, "share_travel": 3.0,
                              "share_entertainment": 3.0},
        "essentials_only": {"share_groceries": 3.0, "share_utilities": 3.0, "share_fuel": 3.0,
                            "share_health": 3.0},
        "impulsive": {"small_ticket_share": 1.5, "night_share": 2.0, "share_fashion": 1.5,
                      "share_electronics": 1.5},
    }  # fmt: skip
    for a, row in rows.items():
        for name, value in row.items():
            w[ARCHETYPES.index(a), _I[name]] = value
    return w


WEIGHTS = _weights()
WEIGHTS.flags.writeable = False
TEMPERATURE = 0.5


def archetype_inputs(habits: np.ndarray) -> np.ndarray:
    """The ``INPUTS`` vector from habit counts (``views.habit_inputs``)."""
    spend = habits[: len(CATEGORIES)]
    total = float(spend.sum())
    shares = spend / total if total > 0 else np.zeros(len(CATEGORIES))
    tx, small, night, discount, shown, responded = habits[len(CATEGORIES) :]
    per_tx = np.array([small, night, discount]) / tx if tx > 0 else np.zeros(3)
    rate = responded / (shown + 2.0)  # shrunk toward 0: two unanswered pseudo-contacts
    return np.concatenate([shares, np.clip(per_tx, 0.0, 1.0), [rate]])


def memberships(inputs: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """Softmax of the archetype scores ``WEIGHTS @ inputs`` at ``temperature``.

    >>> m = memberships(np.zeros(len(INPUTS)))
    >>> m.round(2).tolist()  # no evidence: every archetype equally likely
    [0.2, 0.2, 0.2, 0.2, 0.2]
    """
    z = WEIGHTS @ inputs / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


@dataclass(frozen=True, slots=True)
class SpendPersonality:
    memberships: dict[str, float]  # archetype -> membership, sums to 1
    dominant: str | None  # None while there is no spend to judge by
    change: float  # total variation between fast- and slow-clock memberships, in [0, 1]
    vector: np.ndarray  # memberships aligned to ARCHETYPES

    def as_json(self) -> dict[str, object]:
        return {"dominant": self.dominant, "change": self.change, **self.memberships}


def spend_personality(
    profile: Profile, now_ms: int, cfg: ProfileConfig = DEFAULT_CONFIG
) -> SpendPersonality:
    """The customer's spend personality at ``now_ms`` (uniform, no dominant, without spend)."""
    vec = decayed(profile, now_ms, cfg)
    habits = habit_inputs(vec, slow=False)
    spent = habits[: len(CATEGORIES)].sum() > 0
    fast = memberships(archetype_inputs(habits))
    slow = memberships(archetype_inputs(habit_inputs(vec, slow=True)))
    change = 0.5 * float(np.abs(fast - slow).sum())
    return SpendPersonality(
        memberships={a: float(m) for a, m in zip(ARCHETYPES, fast)},
        dominant=ARCHETYPES[int(np.argmax(fast))] if spent else None,
        change=change,
        vector=fast,
    )
