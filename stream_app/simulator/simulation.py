"""A simulation run: contract messages in event-time order, and the customers' answers.

``Simulation(population, days=...)`` draws everything that does not depend on the engine up
front (behaviour events, decision requests and, per request, the customer's hidden dice). What
depends on the engine -- contact fatigue and the answers -- is computed by ``respond``:

- ``events()`` yields ``(topic, message)`` with topic ``"interactions"`` or
  ``"decision-requests"``, in ``ts`` order; messages are JSON-ready dicts in the shape of
  ``docs/contract.md``.
- ``respond(decision)`` takes a ``decisions`` message and returns an ``outcomes`` message
  (``accepted`` / ``converted`` / ``clicked``: reward 1; ``dismissed``: reward 0) or ``None``
  when the customer ignores the offer (the engine's attribution timer then counts it as ignored).
  The outcome's ``ts`` is a few minutes after the decision's (exponential, mean 5 min; capped
  at ``max_delay_s`` if given, e.g. to stay inside the attribution window): the caller holds it
  until event time reaches it. Call ``respond`` in event-time order per customer; a repeated
  ``decision_id`` gets the same answer and counts as one contact.
- ``true_probs``, ``true_prob`` and ``oracle`` read the ground truth for a request as it stands
  (fatigue included), for regret.

>>> sim = Simulation(Population(seed=5, n_customers=100), days=1.0)
>>> topic, msg = next(iter(sim.events()))
>>> topic in ("interactions", "decision-requests"), msg["customer_id"][:1]
(True, 'c')
>>> req = next(iter(sim.requests()))
>>> best, p = sim.oracle(req)
>>> p == max(sim.true_probs(req)) and 0.0 < p < 1.0
True
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

from stream_app.core.catalogue import CHANNELS
from stream_app.simulator.behaviour import (
    DEVICES,
    INTERACTION_TYPES,
    draw_interactions,
    draw_requests,
    merchant_name,
)
from stream_app.simulator.population import DAY_MS, PAGES, Population
from stream_app.simulator.segments import SPEND_CATEGORIES

FATIGUE_WEIGHT = 0.45  # logit lost per recent contact
DISMISS_SHARE = 0.3  # of non-responses on interactive channels that are explicit dismissals
_INTERACTIVE = {"app", "web", "whatsapp"}
_OUTBOUND = {"email", "sms", "whatsapp", "voice"}  # channels that need the customer's consent
_CH = {c: i for i, c in enumerate(CHANNELS)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Simulation:
    """One seeded run of a ``Population`` over ``days`` of event time from ``start_ms``."""

    def __init__(
        self,
        population: Population,
        days: float = 7.0,
        start_ms: int | None = None,
        use_case: str = "default",
        fatigue_half_life_s: float = 86_400.0,
        fatigue_weight: float = FATIGUE_WEIGHT,
        max_delay_s: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.population = pop = population
        self.start_ms = pop.start_ms if start_ms is None else int(start_ms)
        self.end_ms = self.start_ms + int(days * DAY_MS)
        self.use_case = use_case
        self.fatigue_half_life_ms = fatigue_half_life_s * 1000.0
        self.fatigue_weight = fatigue_weight
        self.max_delay_ms = None if max_delay_s is None else int(max_delay_s * 1000)
        self.seed = pop.seed if seed is None else seed
        rng = np.random.default_rng([self.seed, 0x51A])
        self._ev = draw_interactions(pop, rng, self.start_ms, self.end_ms)
        self._rq = draw_requests(pop, rng, self.start_ms, self.end_ms)
        rq = self._rq
        self._logits = pop.logits(rq.customer, rq.ts, rq.channel, rq.page)
        self._logits[~pop.eligible(rq.channel)] = -np.inf
        self._fatigue = np.zeros(pop.n_customers)
        self._fatigue_at = np.zeros(pop.n_customers, np.int64)
        self._answered: dict[str, dict[str, Any] | None] = {}
        self._prefix = f"rq-{self.seed}-"

    # -- messages ----------------------------------------------------------------------------
    @property
    def n_requests(self) -> int:
        return len(self._rq)

    @property
    def n_interactions(self) -> int:
        return len(self._ev)

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """All messages in event-time order (interactions first on equal ``ts``)."""
        ev_ts, rq_ts = self._ev.ts, self._rq.ts
        i = j = 0
        while i < len(ev_ts) or j < len(rq_ts):
            if j == len(rq_ts) or (i < len(ev_ts) and ev_ts[i] <= rq_ts[j]):
                yield "interactions", self.interaction(i)
                i += 1
            else:
                yield "decision-requests", self.request(j)
                j += 1

    def interactions(self) -> Iterator[dict[str, Any]]:
        return (self.interaction(i) for i in range(len(self._ev)))

    def requests(self) -> Iterator[dict[str, Any]]:
        return (self.request(j) for j in range(len(self._rq)))

    def interaction(self, i: int) -> dict[str, Any]:
        ev, pop = self._ev, self.population
        kind = INTERACTION_TYPES[ev.type[i]]
        msg: dict[str, Any] = {
            "event_id": f"ev-{self.seed}-{i}",
            "customer_id": pop.customer_id(int(ev.customer[i])),
            "ts": int(ev.ts[i]),
            "type": kind,
        }
        if ev.channel[i] >= 0:
            msg["channel"] = CHANNELS[ev.channel[i]]
        if kind == "transaction":
            msg["amount"] = float(ev.amount[i])
            msg["category"] = SPEND_CATEGORIES[ev.category[i]]
            msg["merchant"] = merchant_name(int(ev.category[i]), int(ev.merchant[i]))
        return msg

    def request(self, j: int) -> dict[str, Any]:
        rq, pop = self._rq, self.population
        context: dict[str, Any] = {"page": PAGES[rq.page[j]]}
        if rq.device[j] >= 0:
            context["device"] = DEVICES[rq.device[j]]
        channel = CHANNELS[rq.channel[j]]
        if channel in _OUTBOUND:  # the channel system passes the consent it holds
            context[f"consent_{channel}"] = True
        return {
            "request_id": f"{self._prefix}{j}",
            "customer_id": pop.customer_id(int(rq.customer[j])),
            "ts": int(rq.ts[j]),
            "channel": CHANNELS[rq.channel[j]],
            "use_case": self.use_case,
            "context": context,
            "timezone": pop.timezone_of(int(rq.customer[j])),
        }

    def reset(self) -> None:
        """Forget contacts and answers, so the same run (same dice) can face another policy."""
        self._fatigue[:] = 0.0
        self._fatigue_at[:] = 0
        self._answered.clear()

    def candidates(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        """Offers that may be shown for a request: on its channel and among its candidates."""
        allowed = set(request.get("candidates") or self.population.offer_ids)
        channel = request["channel"]
        offers = self.population.offers
        return tuple(o.id for o in offers if channel in o.channels and o.id in allowed)

    # -- ground truth ------------------------------------------------------------------------
    def mean_true_probs(self) -> np.ndarray:
        """Per offer, the mean response probability (before fatigue) over the requests where it
        is available: what "best on average" in hindsight is judged by."""
        probs = _sigmoid(self._logits)
        avail = np.isfinite(self._logits)
        counts = avail.sum(axis=0)
        return np.divide(probs.sum(axis=0), counts, out=np.zeros(len(counts)), where=counts > 0)

    def _row(self, request: Mapping[str, Any]) -> int | None:
        """Index of a request this simulation emitted, or None for a foreign request."""
        rid = str(request.get("request_id", ""))
        if rid.startswith(self._prefix) and rid[len(self._prefix) :].isdigit():
            j = int(rid[len(self._prefix) :])
            # Matched by id (and customer), not by ts: a decision may be stamped a little later.
            if j < len(self._rq):
                emitted_for = self.population.customer_id(int(self._rq.customer[j]))
                if emitted_for == request.get("customer_id"):
                    return j
        return None

    def _fatigue_level(self, customer: int, ts: int) -> float:
        dt = ts - self._fatigue_at[customer]
        if dt <= 0:
            return float(self._fatigue[customer])
        return float(self._fatigue[customer] * 0.5 ** (dt / self.fatigue_half_life_ms))

    def _base_logits(self, request: Mapping[str, Any], customer: int) -> np.ndarray:
        j = self._row(request)
        if j is not None:
            return self._logits[j]
        pop = self.population
        channel = np.array([_CH[request["channel"]]])
        page = np.array([pop.page_index((request.get("context") or {}).get("page"))])
        logits = pop.logits(np.array([customer]), np.array([request["ts"]]), channel, page)[0]
        logits[~pop.eligible(channel)[0]] = -np.inf
        return logits

    def true_probs(self, request: Mapping[str, Any]) -> np.ndarray:
        """Response probability of every offer (``population.offer_ids`` order) for this request
        now; 0 for offers not available on the channel or not among the request's candidates."""
        pop = self.population
        customer = pop.customer_index(request["customer_id"])
        logits = self._base_logits(request, customer)
        fatigue = self._fatigue_level(customer, request["ts"])
        probs = _sigmoid(logits - self.fatigue_weight * fatigue)
        candidates = request.get("candidates")
        if candidates:
            probs = np.where(np.isin(pop.offer_ids, list(candidates)), probs, 0.0)
        return probs

    def true_prob(self, request: Mapping[str, Any], offer_id: str) -> float:
        return float(self.true_probs(request)[self.population.offer_ids.index(offer_id)])

    def oracle(self, request: Mapping[str, Any]) -> tuple[str, float]:
        """The offer a clairvoyant would show, and its response probability."""
        probs = self.true_probs(request)
        best = int(np.argmax(probs))
        return self.population.offer_ids[best], float(probs[best])

    # -- the customer's answer ---------------------------------------------------------------
    def respond(self, decision: Mapping[str, Any]) -> dict[str, Any] | None:
        """The customer's outcome message for a ``decisions`` message, or None (ignored)."""
        decision_id = str(decision["decision_id"])
        if decision_id in self._answered:
            return self._answered[decision_id]
        offer_id = decision.get("offer_id")
        if decision.get("action") != "offer" or offer_id is None:
            return None
        pop = self.population
        customer = pop.customer_index(decision["customer_id"])
        ts = int(decision["ts"])
        request = {"request_id": decision.get("request_id"), "customer_id": decision["customer_id"],
                   "ts": ts, "channel": decision["channel"]}  # fmt: skip
        j = self._row(request)
        if offer_id in pop.offer_ids:
            p = self.true_prob(request, offer_id)
        else:
            p = 0.0
        # A foreign request has no pre-drawn dice; derive them from the decision id.
        dice = (
            (self._rq.u_respond[j], self._rq.u_kind[j], self._rq.u_dismiss[j], self._rq.delay_ms[j])
            if j is not None
            else _dice(self.seed, decision_id)
        )
        self._fatigue[customer] = self._fatigue_level(customer, ts) + 1.0
        self._fatigue_at[customer] = max(ts, self._fatigue_at[customer])
        outcome = self._outcome(decision, offer_id, p, dice)
        self._answered[decision_id] = outcome
        return outcome

    def _delay(self, delay_ms: int) -> int:
        delay = 1000 + delay_ms  # reaction time: one second plus an exponential, mean 5 minutes
        return delay if self.max_delay_ms is None else min(delay, self.max_delay_ms)

    def _outcome(
        self, decision: Mapping[str, Any], offer_id: str, p: float, dice: tuple
    ) -> dict[str, Any] | None:
        u_respond, u_kind, u_dismiss, delay_ms = dice
        if u_respond < p:
            value = self.population.offers[self.population.offer_ids.index(offer_id)].value
            kind, value = ("converted", value) if u_kind < 0.7 else ("clicked", 0.0)
        elif decision["channel"] in _INTERACTIVE and u_dismiss < DISMISS_SHARE:
            kind, value = "dismissed", 0.0
        else:
            return None
        return {
            "outcome_id": f"oc-{decision['decision_id']}",
            "decision_id": str(decision["decision_id"]),
            "customer_id": decision["customer_id"],
            "ts": int(decision["ts"]) + self._delay(int(delay_ms)),
            "type": kind,
            "value": float(value),
        }


def _dice(seed: int, key: str) -> tuple[float, float, float, int]:
    rng = np.random.default_rng([seed, *key.encode("utf-8")])
    u = rng.random(3)
    return float(u[0]), float(u[1]), float(u[2]), int(rng.exponential(300.0) * 1000)
