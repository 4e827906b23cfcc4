"""What customers do on their own: behaviour events and the moments they could be shown an offer.

Everything is drawn up front, vectorised, as columns (one row per event) sorted by event time:
Poisson counts per customer, times of day around the customer's active hour in their timezone,
nothing after a customer has churned. ``Simulation`` turns rows into contract messages.

>>> from stream_app.simulator.population import Population
>>> pop = Population(seed=3, n_customers=50)
>>> ev = draw_interactions(pop, np.random.default_rng(0), pop.start_ms, pop.start_ms + DAY_MS)
>>> bool(np.all(np.diff(ev.ts) >= 0)), set(ev.columns) >= {"customer", "ts", "type", "amount"}
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_app.core.catalogue import CHANNELS
from stream_app.simulator.population import DAY_MS, PAGES, Population
from stream_app.simulator.segments import CATEGORY_AMOUNT, MERCHANTS, SPEND_CATEGORIES

INTERACTION_TYPES = ("transaction", "app_view", "page_view", "login", "support_contact",
                     "complaint", "opt_out")  # fmt: skip
_TYPE_P = np.array([0.55, 0.15, 0.12, 0.13, 0.04, 0.01, 0.0])
DEVICES = ("ios", "android", "desktop", "mobile_web")
OPT_OUT_SHARE = 0.3  # of churners say so; the others just go quiet
_CH = {c: i for i, c in enumerate(CHANNELS)}


@dataclass
class Columns:
    """Named equal-length numpy columns; ``take`` reorders or filters all of them."""

    columns: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return len(self.columns["ts"])

    def take(self, idx: np.ndarray) -> Columns:
        return Columns({k: v[idx] for k, v in self.columns.items()})


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to 1)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), probs.shape[1] - 1)


def draw_times(
    pop: Population, rng: np.random.Generator, per_day: np.ndarray, start_ms: int, end_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(customer index, ts) of events at ``per_day`` rates, clustered around each active hour."""
    first_day = start_ms - start_ms % DAY_MS
    n_days = -(-(end_ms - first_day) // DAY_MS)
    counts = rng.poisson(per_day * n_days)
    cust = np.repeat(np.arange(pop.n_customers), counts)
    local = rng.normal(pop.active_hour[cust], 3.0)
    anytime = rng.random(len(cust)) < 0.2
    local[anytime] = rng.uniform(0.0, 24.0, anytime.sum())
    utc_hour = (local - pop.tz_offset_h[cust]) % 24.0
    ts = first_day + rng.integers(0, n_days, len(cust)) * DAY_MS + (utc_hour * 3_600_000)
    ts = ts.astype(np.int64)
    keep = (ts >= start_ms) & (ts < end_ms) & (ts < pop.churn_at_ms[cust])
    cust, ts = cust[keep], ts[keep]
    order = np.lexsort((cust, ts))
    return cust[order], ts[order]


def draw_interactions(
    pop: Population, rng: np.random.Generator, start_ms: int, end_ms: int
) -> Columns:
    """Behaviour events: transactions (amount, category, merchant), views, logins, opt-outs."""
    cust, ts = draw_times(pop, rng, pop.events_per_day, start_ms, end_ms)
    n = len(cust)
    kind = _pick(rng, np.broadcast_to(_TYPE_P / _TYPE_P.sum(), (n, len(_TYPE_P))))
    category = _pick(rng, pop.spend_mix[cust])
    amount = pop.spend_level[cust] * rng.lognormal(0.0, 0.6, n)
    amount *= np.array([CATEGORY_AMOUNT[c] for c in SPEND_CATEGORIES])[category]
    merchant_slot = np.where(
        rng.random(n) < 0.6, pop.favourite_merchant[cust, category], rng.integers(0, 99, n)
    )
    channel = np.full(n, -1)
    tx = kind == 0
    online = tx & (rng.random(n) < 0.3)
    channel[online] = np.where(rng.random(online.sum()) < 0.7, _CH["app"], _CH["web"])
    channel[kind == 1] = _CH["app"]
    channel[kind == 2] = _CH["web"]
    login = kind == 3
    channel[login] = np.where(rng.random(login.sum()) < 0.6, _CH["app"], _CH["web"])
    contact = (kind == 4) | (kind == 5)
    support = np.array([_CH["call_centre"], _CH["voice"], _CH["whatsapp"], _CH["email"]])
    channel[contact] = support[rng.integers(0, len(support), contact.sum())]
    cols = {"customer": cust, "ts": ts, "type": kind, "channel": channel,
            "category": np.where(tx, category, -1), "amount": np.round(amount, 2),
            "merchant": merchant_slot}  # fmt: skip
    churned = np.flatnonzero((pop.churn_at_ms >= start_ms) & (pop.churn_at_ms < end_ms))
    says = churned[rng.random(len(churned)) < OPT_OUT_SHARE]
    extra = {"customer": says, "ts": pop.churn_at_ms[says],
             "type": np.full(len(says), INTERACTION_TYPES.index("opt_out")),
             "channel": np.full(len(says), _CH["app"]), "category": np.full(len(says), -1),
             "amount": np.zeros(len(says)), "merchant": np.zeros(len(says), np.int64)}  # fmt: skip
    merged = Columns({k: np.concatenate([cols[k], extra[k]]) for k in cols})
    return merged.take(np.lexsort((merged.customer, merged.ts)))


def merchant_name(category: int, slot: int) -> str:
    names = MERCHANTS[SPEND_CATEGORIES[category]]
    return names[slot % len(names)]


def draw_requests(pop: Population, rng: np.random.Generator, start_ms: int, end_ms: int) -> Columns:
    """Decision requests with their context, and the customer's hidden dice for each of them.

    The dice (``u_respond`` etc.) are fixed per request, so two policies that show the same offer
    to the same request get the same answer (common random numbers: fair comparisons).
    """
    cust, ts = draw_times(pop, rng, pop.requests_per_day, start_ms, end_ms)
    n = len(cust)
    channel = _pick(rng, pop.channel_mix[cust])
    n_spend = len(SPEND_CATEGORIES)
    page = np.where(rng.random(n) < 0.55, _pick(rng, pop.spend_mix[cust]), PAGES.index("home"))
    other = rng.random(n)
    page[other < 0.08] = PAGES.index("credit")
    page[(other >= 0.08) & (other < 0.16)] = PAGES.index("insurance")
    assert PAGES[:n_spend] == SPEND_CATEGORIES
    device = np.full(n, -1)
    app, web = channel == _CH["app"], channel == _CH["web"]
    device[app] = rng.integers(0, 2, app.sum())
    device[web] = rng.integers(2, 4, web.sum())
    return Columns({
        "customer": cust, "ts": ts, "channel": channel, "page": page, "device": device,
        "u_respond": rng.random(n), "u_kind": rng.random(n), "u_dismiss": rng.random(n),
        "delay_ms": (rng.exponential(300.0, n) * 1000).astype(np.int64),
    })  # fmt: skip
