"""A seeded customer population with hidden ground truth.

Every customer belongs to one planted segment (``segments.py``) and gets individual traits drawn
around its centre: spend mix by category, reachable channels, active hour, timezone, loss and risk
aversion, activity rates and a churn time. The probability that a customer responds to an offer
is a logistic function of

- the segment's affinity for the offer (re-drawn at every drift time, with each segment's planted
  favourite moved to another offer, so the best offer for every segment changes),
- an individual taste per offer (fixed),
- the customer's spend share in the offer's category (profile),
- loss aversion x urgency / scarcity framing, risk aversion x credit / investment / insurance,
- context: the page being viewed (intent), the channel, the local hour against the customer's
  habit, a night-time penalty,

minus contact fatigue, which ``Simulation`` adds because it depends on what the engine did.
Offers not available on the request's channel have probability 0.

>>> pop = Population(seed=1, n_customers=200)
>>> pop.n_customers, pop.offer_ids[0], pop.segment_names[pop.segment_of("c000000")] in SEGMENT_NAMES
(200, 'grocery_cashback', True)
>>> logits = pop.logits(np.array([0]), np.array([pop.start_ms]), np.array([0]), np.array([-1]))
>>> logits.shape
(1, 8)
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from stream_app.core.catalogue import CHANNELS, EngineConfig, Offer
from stream_app.simulator.offers import as_offers, default_engine_config
from stream_app.simulator.segments import (
    DEFAULT_SEGMENTS,
    MERCHANTS,
    RISK_SIGN,
    SPEND_CATEGORIES,
    TIMEZONES,
    SegmentSpec,
)

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
SEGMENT_NAMES = tuple(s.name for s in DEFAULT_SEGMENTS)
PAGES = SPEND_CATEGORIES + ("credit", "insurance", "home")  # what a request's context.page says
_PAGE_INDEX = {p: i for i, p in enumerate(PAGES)}

# Ground-truth coefficients (logit scale). Chosen so that response rates sit between ~2% and
# ~50% and the oracle beats a random policy by a clear margin.
INTERCEPT = -3.5
FAVOURITE_BONUS = 2.0
AFFINITY_SD = 0.5
TASTE_SD = 0.35
SPEND_WEIGHT = 2.0
LOSS_WEIGHT = 2.4
RISK_WEIGHT = 2.4
PAGE_BONUS = 0.8
CHANNEL_WEIGHT = 1.5
HOUR_WEIGHT = 0.4
NIGHT_PENALTY = 0.8
CHANNEL_BASE = {"app": 0.3, "web": 0.0, "email": -0.4, "sms": -0.3, "whatsapp": 0.1,
                "voice": -0.3, "call_centre": 0.1}  # fmt: skip


def _beta_around(rng: np.random.Generator, mean: np.ndarray, concentration: float) -> np.ndarray:
    mean = np.clip(mean, 0.02, 0.98)
    return rng.beta(mean * concentration, (1.0 - mean) * concentration)


def _table(specs: Sequence[SegmentSpec], attr: str, keys: Sequence[str]) -> np.ndarray:
    return np.array([[getattr(s, attr).get(k, 0.0) for k in keys] for s in specs])


class Population:
    """Customers and their hidden response model. Deterministic for a ``seed``.

    ``offers`` is an ``EngineConfig``, an engine-config document or a list of ``Offer`` (default:
    ``default_engine_config()``). ``drift_at_ms`` lists the event times at which preferences
    change. Customer ids are ``f"{id_prefix}{index:06d}"``.
    """

    def __init__(
        self,
        seed: int,
        n_customers: int,
        offers: EngineConfig | Mapping[str, Any] | Iterable[Offer] | None = None,
        drift_at_ms: Iterable[int] = (),
        segments: Sequence[SegmentSpec] = DEFAULT_SEGMENTS,
        start_ms: int = DEFAULT_START_MS,
        id_prefix: str = "c",
    ) -> None:
        if n_customers < 1:
            raise ValueError("n_customers must be >= 1")
        self.seed = seed
        self.n_customers = n_customers
        self.offers = as_offers(default_engine_config() if offers is None else offers)
        self.offer_ids = tuple(o.id for o in self.offers)
        self.drift_at_ms = np.array(sorted(int(t) for t in drift_at_ms), np.int64)
        self.segments = tuple(segments)
        self.segment_names = tuple(s.name for s in self.segments)
        self.start_ms = int(start_ms)
        self.id_prefix = id_prefix
        self.timezones = tuple(TIMEZONES)
        rng = np.random.default_rng([seed, 0x5EED])
        self._draw_customers(rng, n_customers)
        self._draw_offer_truth(rng)

    # -- construction ------------------------------------------------------------------------
    def _draw_customers(self, rng: np.random.Generator, n: int) -> None:
        specs = self.segments
        shares = np.array([s.share for s in specs])
        self.segment = rng.choice(len(specs), size=n, p=shares / shares.sum())
        seg = self.segment
        spend_centre = _table(specs, "spend_mix", SPEND_CATEGORIES)[seg]
        self.spend_mix = np.array([rng.dirichlet(20.0 * c + 0.05) for c in spend_centre])
        channel_centre = _table(specs, "channel_mix", CHANNELS)[seg]
        self.channel_mix = np.array([rng.dirichlet(15.0 * c + 0.02) for c in channel_centre])
        field = lambda name: np.array([getattr(s, name) for s in specs])[seg]  # noqa: E731
        self.loss_aversion = _beta_around(rng, field("loss_aversion"), 10.0)
        self.risk_aversion = _beta_around(rng, field("risk_aversion"), 10.0)
        self.active_hour = (field("active_hour") + rng.normal(0.0, 2.0, n)) % 24.0
        self.tz_index = rng.integers(0, len(self.timezones), n)
        self.tz_offset_h = np.array([TIMEZONES[z] for z in self.timezones])[self.tz_index]
        self.events_per_day = field("events_per_day") * rng.lognormal(0.0, 0.3, n)
        self.requests_per_day = field("requests_per_day") * rng.lognormal(0.0, 0.3, n)
        self.spend_level = field("spend_level") * rng.lognormal(0.0, 0.4, n)
        churn_days = rng.exponential(1.0 / field("churn_per_day"))
        self.churn_at_ms = self.start_ms + (churn_days * DAY_MS).astype(np.int64)
        n_merchants = max(len(m) for m in MERCHANTS.values())
        self.favourite_merchant = rng.integers(0, n_merchants, (n, len(SPEND_CATEGORIES)))

    def _draw_offer_truth(self, rng: np.random.Generator) -> None:
        k, s = len(self.offers), len(self.segments)
        self.taste = rng.normal(0.0, TASTE_SD, (self.n_customers, k))
        categories = list(SPEND_CATEGORIES)
        # Column of the offer's category in spend_mix; offers outside spend categories read a 0.
        self._offer_spend_col = np.array(
            [categories.index(o.category) if o.category in categories else len(categories)
             for o in self.offers]
        )  # fmt: skip
        self._offer_urgent = np.array([o.urgent for o in self.offers], np.float64)
        self._offer_risk = np.array([RISK_SIGN.get(o.category, 0.0) for o in self.offers])
        self._offer_channel = np.array([[c in o.channels for c in CHANNELS] for o in self.offers])
        self._offer_page = np.array([_PAGE_INDEX.get(o.category, -2) for o in self.offers])
        favourites = rng.permutation(np.resize(rng.permutation(k), s))
        epochs = []
        for _ in range(len(self.drift_at_ms) + 1):
            affinity = rng.normal(0.0, AFFINITY_SD, (s, k))
            affinity[np.arange(s), favourites] += FAVOURITE_BONUS
            epochs.append(affinity)
            favourites = self._moved(favourites, k, rng)
        self.affinity = np.stack(epochs)  # (epochs, segments, offers)

    @staticmethod
    def _moved(favourites: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Each segment's favourite moves to a different offer (a shift by 1..k-1)."""
        if k < 2:
            return favourites
        return (favourites + rng.integers(1, k, len(favourites))) % k

    # -- lookups -----------------------------------------------------------------------------
    def customer_id(self, index: int) -> str:
        return f"{self.id_prefix}{index:06d}"

    def customer_index(self, customer_id: str) -> int:
        """Index of a customer id of this population; ``KeyError`` if it is not one."""
        body = customer_id[len(self.id_prefix) :]
        if not customer_id.startswith(self.id_prefix) or not body.isdigit():
            raise KeyError(customer_id)
        index = int(body)
        if index >= self.n_customers:
            raise KeyError(customer_id)
        return index

    def segment_of(self, customer_id: str) -> int:
        """The planted segment (index into ``segment_names``): hidden ground truth."""
        return int(self.segment[self.customer_index(customer_id)])

    def timezone_of(self, index: np.ndarray | int) -> np.ndarray | str:
        names = np.array(self.timezones)[self.tz_index[index]]
        return str(names) if np.ndim(names) == 0 else names

    def local_hour(self, index: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Local hour of day (float) of each customer at each time."""
        return ((np.asarray(ts) / 3_600_000.0) + self.tz_offset_h[index]) % 24.0

    def epoch(self, ts: np.ndarray) -> np.ndarray:
        """How many drift times have passed at each ``ts``."""
        return np.searchsorted(self.drift_at_ms, ts, side="right")

    def eligible(self, channel: np.ndarray) -> np.ndarray:
        """(n, offers) bool: the offer may be shown on the channel (``CHANNELS`` index)."""
        return self._offer_channel.T[np.asarray(channel)]

    @staticmethod
    def page_index(page: object) -> int:
        """Index of a context ``page`` in ``PAGES``, -1 for anything else (or none)."""
        return _PAGE_INDEX.get(page, -1) if isinstance(page, str) else -1

    # -- the response model ------------------------------------------------------------------
    def logits(
        self, index: np.ndarray, ts: np.ndarray, channel: np.ndarray, page: np.ndarray
    ) -> np.ndarray:
        """(n, offers) response logits before fatigue, vectorised over requests.

        ``index`` customer indices, ``ts`` epoch ms, ``channel`` indices into ``CHANNELS``,
        ``page`` indices from ``page_index`` (-1: no page / not a category).
        """
        index, ts = np.asarray(index), np.asarray(ts)
        channel, page = np.asarray(channel), np.asarray(page)
        seg = self.segment[index]
        out = INTERCEPT + self.affinity[self.epoch(ts), seg] + self.taste[index]
        mix = np.concatenate([self.spend_mix[index], np.zeros((len(index), 1))], axis=1)
        out += SPEND_WEIGHT * mix[:, self._offer_spend_col]
        out += LOSS_WEIGHT * (self.loss_aversion[index] - 0.5)[:, None] * self._offer_urgent
        out += RISK_WEIGHT * (self.risk_aversion[index] - 0.5)[:, None] * self._offer_risk
        out += PAGE_BONUS * (page[:, None] == self._offer_page[None, :])
        base = np.array([CHANNEL_BASE[c] for c in CHANNELS])[channel]
        pref = self.channel_mix[index, channel] - 1.0 / len(CHANNELS)
        hour = self.local_hour(index, ts)
        habit = np.cos(2.0 * np.pi * (hour - self.active_hour[index]) / 24.0)
        context = base + CHANNEL_WEIGHT * pref + HOUR_WEIGHT * habit - NIGHT_PENALTY * (hour < 6.0)
        return out + context[:, None]
