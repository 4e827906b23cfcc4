"""A small seeded world with known ground truth, for testing what the models learn.

Each customer has a hidden *persona* (one of the five spend archetypes) that sets their spend mix,
ticket size, channels, active hours, discount use and activity; a hidden engagement trait ``e``
raises activity and response and lowers the churn hazard; a hidden loss-aversion trait makes
urgent offers work on some customers. A customer churns at a hidden time (exponential, persona
and ``e`` dependent) after which they are silent; complaints rise in the two weeks before.
Offers are shown uniformly at random (a logging policy), and the response probability is::

    sigmoid(-2.5 + 3.2 * favourite[persona, offer] + 1.4 * urgent * loss_aversion + 0.8 * e)

where every persona has one favourite offer; at ``drift_day`` a planted concept drift either
moves every favourite to another offer (``drift_kind="shift"``) or inverts tastes (``"invert"``:
every offer but the old favourite becomes a favourite, as after a market shock). Messages are
contract-shaped interactions and outcome records, in event time.

>>> w = World(seed=1, n_customers=5, days=3)
>>> kinds = {kind for kind, _ in w.messages()}
>>> sorted(kinds), w.persona_of("s1-0") in PERSONAS
(['interaction', 'outcome'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from stream_app.core.catalogue import CHANNELS
from stream_app.profile.layout import ARCHETYPES, CATEGORIES, EVENT_TYPES

__all__ = ["PERSONAS", "World"]

PERSONAS = ARCHETYPES
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _row(vocab: tuple[str, ...], **weights: float) -> np.ndarray:
    v = np.array([weights.get(k, 0.0) for k in vocab])
    return v / v.sum()


SPEND = np.array([
    _row(CATEGORIES, savings=5, groceries=2, utilities=1.5, health=0.5, other=0.5),
    _row(CATEGORIES, fashion=3, electronics=3, groceries=2, entertainment=1, other=1),
    _row(CATEGORIES, dining=4, travel=3, entertainment=3, fashion=1, groceries=1),
    _row(CATEGORIES, groceries=5, utilities=2.5, fuel=2, health=1.5),
    _row(CATEGORIES, fashion=3, electronics=2, entertainment=3, dining=2, other=1),
])  # fmt: skip
CHANNEL = np.array([
    _row(CHANNELS, email=3, web=3, call_centre=1),
    _row(CHANNELS, web=4, whatsapp=2, sms=2),
    _row(CHANNELS, app=5, web=1),
    _row(CHANNELS, sms=3, email=2, voice=1, call_centre=1),
    _row(CHANNELS, app=6, whatsapp=2),
])  # fmt: skip
ACTIVE_BUCKET = np.array([2, 3, 5, 4, 0])  # four-hour UTC bucket where each persona is active
TICKET = np.array([40.0, 25.0, 45.0, 30.0, 10.0])  # median ticket, category of scale 1
CATEGORY_SCALE = _row(CATEGORIES, travel=4, electronics=3, savings=5, utilities=2, groceries=1,
                      dining=1, fuel=1, entertainment=1, fashion=1, health=1, other=1)  # fmt: skip
CATEGORY_SCALE = CATEGORY_SCALE / CATEGORY_SCALE.min()
EVENTS_PER_DAY = np.array([0.8, 1.6, 1.2, 1.0, 2.0])
CHURN_PER_DAY = np.array([0.006, 0.02, 0.01, 0.006, 0.025])
DISCOUNT = np.array([0.05, 0.6, 0.1, 0.15, 0.1])
EVENT_MIX = _row(EVENT_TYPES, transaction=45, page_view=20, app_view=12, login=12,
                 support_contact=3, offer_view=6, complaint=2)  # fmt: skip
PRE_CHURN_MIX = _row(EVENT_TYPES, transaction=30, page_view=15, app_view=8, login=8,
                     support_contact=14, offer_view=3, complaint=22)  # fmt: skip


@dataclass
class World:
    """A seeded population; ``messages()`` yields ``(kind, message)`` in event-time order."""

    seed: int = 0
    n_customers: int = 300
    days: float = 60.0
    n_offers: int = 6
    decisions_per_day: float = 0.5
    drift_day: float | None = None
    drift_kind: str = "shift"  # "shift": favourites move to another offer; "invert": 1 - favourite
    start_ms: int = START_MS
    _c: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        n = self.n_customers
        persona = rng.integers(len(PERSONAS), size=n)
        e = rng.normal(0.0, 1.0, n)
        start = self.start_ms + (rng.uniform(0, 5, n) * DAY_MS).astype(np.int64)
        hazard = CHURN_PER_DAY[persona] * np.exp(-0.8 * e)
        churn = start + (rng.exponential(1.0 / hazard) * DAY_MS).astype(np.int64)
        self._c = {
            "persona": persona, "e": e, "start": start, "churn": churn,
            "loss_aversion": rng.uniform(0, 1, n),
            "ticket": TICKET[persona] * np.exp(rng.normal(0, 0.7, n)),
            "rate": EVENTS_PER_DAY[persona] * np.exp(0.5 * e),
            "mix": np.array([rng.dirichlet(SPEND[z] * 40 + 0.01) for z in persona]),
        }  # fmt: skip
        self.offer_ids = tuple(f"offer_{j}" for j in range(self.n_offers))
        self.offer_urgent = np.arange(self.n_offers) % 2 == 1
        self.offer_value = 10.0 * (1 + np.arange(self.n_offers))
        self._rng_seed = int(rng.integers(2**31))

    # -- ground truth ----------------------------------------------------------------------
    def customer_id(self, i: int) -> str:
        return f"s{self.seed}-{i}"

    def index_of(self, customer_id: str) -> int:
        return int(customer_id.rsplit("-", 1)[1])

    def persona_of(self, customer_id: str) -> str:
        return PERSONAS[int(self._c["persona"][self.index_of(customer_id)])]

    def churn_ms(self, customer_id: str) -> int:
        return int(self._c["churn"][self.index_of(customer_id)])

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.days * DAY_MS)

    def favourites(self, ts: int) -> np.ndarray:
        """``[persona, offer]`` 0/1 matrix of favourite offers at ``ts`` (moves at the drift)."""
        fav = np.zeros((len(PERSONAS), self.n_offers))
        after = self.drift_day is not None and ts >= self.start_ms + self.drift_day * DAY_MS
        shift = 2 if after and self.drift_kind == "shift" else 0
        for z in range(len(PERSONAS)):
            fav[z, (z + shift) % self.n_offers] = 1.0
        return 1.0 - fav if after and self.drift_kind == "invert" else fav

    def true_propensity(self, i: int, offer: int, ts: int) -> float:
        c = self._c
        z = self.favourites(ts)[c["persona"][i], offer]
        logit = -2.5 + 3.2 * z + 1.4 * self.offer_urgent[offer] * c["loss_aversion"][i]
        return float(1.0 / (1.0 + np.exp(-(logit + 0.8 * c["e"][i]))))

    # -- the stream ------------------------------------------------------------------------
    def messages(self) -> Iterator[tuple[str, dict[str, Any]]]:
        rng = np.random.default_rng(self._rng_seed)
        rows: list[tuple[int, int, int, int]] = []  # (ts, order, customer, kind)
        for i in range(self.n_customers):
            lo, hi = int(self._c["start"][i]), min(int(self._c["churn"][i]), self.end_ms)
            if hi <= lo:
                continue
            span = (hi - lo) / DAY_MS
            for kind, rate in ((0, self._c["rate"][i]), (1, self.decisions_per_day)):
                count = rng.poisson(rate * span)
                days = rng.uniform(lo, hi, count) // DAY_MS * DAY_MS
                hour = np.where(
                    rng.uniform(size=count) < 0.75,
                    ACTIVE_BUCKET[self._c["persona"][i]] * 4 + rng.uniform(0, 4, count),
                    rng.uniform(0, 24, count),
                )
                ts = np.clip(days + (hour * 3_600_000).astype(np.int64), lo, hi - 1)
                rows += [(int(t), kind, i, kind) for t in ts]
        rows.sort()
        for n, (ts, _, i, kind) in enumerate(rows):
            if kind == 0:
                yield "interaction", self._interaction(rng, n, i, ts)
            else:
                yield "outcome", self._outcome(rng, i, ts)

    def _interaction(self, rng: np.random.Generator, n: int, i: int, ts: int) -> dict[str, Any]:
        c, z = self._c, int(self._c["persona"][i])
        pre_churn = c["churn"][i] - ts < 14 * DAY_MS
        mix = PRE_CHURN_MIX if pre_churn else EVENT_MIX
        kind = EVENT_TYPES[rng.choice(len(EVENT_TYPES), p=mix)]
        msg: dict[str, Any] = {
            "event_id": f"e{self.seed}-{n}", "customer_id": self.customer_id(i), "ts": ts,
            "type": kind, "channel": CHANNELS[rng.choice(len(CHANNELS), p=CHANNEL[z])],
        }  # fmt: skip
        if kind == "transaction":
            cat = int(rng.choice(len(CATEGORIES), p=c["mix"][i]))
            median = c["ticket"][i] * CATEGORY_SCALE[cat]
            msg["amount"] = round(float(median * np.exp(rng.normal(0, 0.35))), 2)
            msg["category"] = CATEGORIES[cat]
            if rng.uniform() < DISCOUNT[z]:
                msg["attributes"] = {"discount": True}
        return msg

    def _outcome(self, rng: np.random.Generator, i: int, ts: int) -> dict[str, Any]:
        offer = int(rng.integers(self.n_offers))
        p = self.true_propensity(i, offer, ts)
        reward = float(rng.uniform() < p)
        z = int(self._c["persona"][i])
        return {
            "customer_id": self.customer_id(i), "ts": ts, "offer_id": self.offer_ids[offer],
            "urgent": bool(self.offer_urgent[offer]), "reward": reward,
            "value": reward * float(self.offer_value[offer]), "p_true": p,
            "channel": CHANNELS[rng.choice(len(CHANNELS), p=CHANNEL[z])],
        }  # fmt: skip
