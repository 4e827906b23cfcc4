"""What the gateway does for each call, without HTTP: ask the engine, answer, remember, reward.

``DecisionGateway`` serves both APIs over one ``EngineLink`` (``engine.py``):

- ``decide`` (``POST /v1/decide``): a ``decision-requests`` message in, the engine's decision out;
  with no decision within the timeout, a ``no_action`` decision that says it is the gateway's
  fallback (a channel that waits longer than that has already moved on; ``no_action`` is the
  only answer that breaks no business rule);
- ``outcome`` (``POST /v1/outcomes``): an ``outcomes`` message, produced once valid;
- ``rank`` / ``reward`` / ``activate``: Personalizer's calls (``personalizer.py``); on timeout
  the configured fallback (the baseline action, or none) marked ``servedBy: fallback``.

A reward becomes an outcome only when the engine's decision is what the caller was told to show
(the engine learns from what customers saw, never from what they did not); otherwise it is
counted as ``rewards_not_attributed``. In apprentice mode (``apprentice.py``) the baseline share
asks the engine to decide among the baseline action alone, so the engine's decision *is* the
baseline and its reward teaches the baseline's arm; the engine's share asks among all actions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from stream_app.core.catalogue import EngineConfig
from stream_app.core.decision import decision_id_for
from stream_app.core.feedback import reward_of
from stream_app.gateway import metrics
from stream_app.gateway.apprentice import BASELINE, ENGINE, Apprentice, ApprenticeRule
from stream_app.gateway.engine import Answered, EngineLink
from stream_app.gateway.events import AnsweredEvent, EventBook
from stream_app.gateway.personalizer import (
    BadRequest,
    NotFound,
    parse_rank,
    parse_reward,
    ranking,
    reward_outcome,
)
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import GatewaySettings

__all__ = ["Conflict", "DecisionGateway", "Reply", "Unavailable"]

log = structlog.get_logger("stream_app.gateway")

DEFAULT_WINDOW_S = 3600.0  # attribution window of a use case the catalogue does not know
FALLBACK_POLICY = "gateway-fallback"


class Conflict(ValueError):
    """The call repeats an event that is already answered or in flight (HTTP 409)."""


class Unavailable(RuntimeError):
    """The gateway cannot serve the call yet (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class Reply:
    body: dict[str, Any]
    status: int = 200
    timing: dict[str, float] = field(default_factory=dict)  # Server-Timing entries, ms


class DecisionGateway:
    """The gateway's logic over an ``EngineLink`` and the engine's catalogue."""

    def __init__(self, engine: EngineLink, catalogue: Callable[[], EngineConfig | None],
                 settings: GatewaySettings, contract: Contract,
                 clock: Callable[[], float] = time.time) -> None:
        if settings.fallback not in ("baseline", "no_action"):
            raise ValueError(f"gateway fallback must be 'baseline' or 'no_action', "
                             f"not {settings.fallback!r}")
        self.engine = engine
        self.catalogue = catalogue
        self.settings = settings
        self.contract = contract
        self.clock = clock
        self.timeout_s = settings.timeout_ms / 1000.0
        rule = ApprenticeRule(settings.apprentice_margin, settings.apprentice_explore,
                              settings.apprentice_alpha, settings.apprentice_min_n)
        self.apprentices = {uc: Apprentice(uc, rule) for uc in settings.apprentice}
        for uc in self.apprentices:
            metrics.APPRENTICE_ONLINE.labels(uc).set(0)
        self.events = EventBook(settings.max_events)
        self.counts: Counter[str] = Counter()
        self._in_flight: set[str] = set()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- asking the engine ------------------------------------------------------------------
    def _share(self, use_case: str, event_id: str) -> str | None:
        apprentice = self.apprentices.get(use_case)
        return apprentice.arm(event_id) if apprentice is not None else None

    async def _ask(self, request: dict[str, Any]) -> Answered | None:
        decision_id = decision_id_for(request["request_id"])
        if decision_id in self._in_flight or decision_id in self.events:
            raise Conflict(f"event {request['request_id']!r} is already answered or in flight")
        self._in_flight.add(decision_id)
        try:
            answered = await self.engine.decide(request, self.timeout_s)
        finally:
            self._in_flight.discard(decision_id)
        self.counts["decisions" if answered is not None else "fallbacks"] += 1
        return answered

    def _window_ms(self, use_case: str) -> int:
        config = self.catalogue()
        uc = config.use_cases.get(use_case) if config is not None else None
        return int(1000 * (uc.attribution_window_s if uc is not None else DEFAULT_WINDOW_S))

    @staticmethod
    def _timing(answered: Answered | None, started: float) -> dict[str, float]:
        total = (time.perf_counter() - started) * 1000.0
        if answered is None:
            return {"total": total}
        own = max(total - answered.engine_ms - answered.return_ms, 0.0)
        return {"engine": answered.engine_ms, "return": answered.return_ms, "gateway": own,
                "total": total}

    # -- the engine's own API ---------------------------------------------------------------
    async def decide(self, raw: bytes) -> Reply:
        """``POST /v1/decide``: a decision request (the contract's JSON) -> the decision."""
        started = time.perf_counter()
        try:
            request = self.contract.decode("decision-requests", raw)
        except InvalidMessage as exc:
            raise BadRequest(str(exc)) from None
        use_case, share = request["use_case"], None
        if use_case in self.apprentices:
            if not request.get("candidates"):
                raise BadRequest(f"use case {use_case!r} is in apprentice mode: the request must "
                                 f"list candidates, the first being the baseline")
            share = self._share(use_case, request["request_id"])
            if share == BASELINE:
                request = {**request, "candidates": request["candidates"][:1]}
        answered = await self._ask(request)
        timing = self._timing(answered, started)
        metrics.answered("decide", use_case, "fallback" if answered is None else share or ENGINE,
                         timing)
        if answered is None:
            return Reply(self._fallback_decision(request), 200, timing)
        decision = {**answered.decision, "served_by": share or ENGINE}
        if share is not None and decision["action"] == "offer":  # its outcome is counted
            now = self.now_ms()
            self.events.add(AnsweredEvent(
                decision["decision_id"], request["request_id"], request["customer_id"], use_case,
                decision["offer_id"], decision["offer_id"], now,
                now + self._window_ms(use_case), share=share))
        elif share is not None:  # nothing shown: nothing to respond to
            self._count(use_case, share, 0.0)
        return Reply(decision, 200, timing)

    def _fallback_decision(self, request: Mapping[str, Any]) -> dict[str, Any]:
        reason = f"no decision from the engine within {self.settings.timeout_ms:g} ms"
        return {
            "schema_version": 1, "decision_id": decision_id_for(request["request_id"]),
            "request_id": request["request_id"], "customer_id": request["customer_id"],
            "ts": request["ts"], "use_case": request["use_case"], "channel": request["channel"],
            "action": "no_action", "offer_id": None, "ranked": [], "propensity": 1.0,
            "propensity_se": 0.0, "predicted": 0.0, "policy": FALLBACK_POLICY,
            "routed_because": reason, "config_version": "", "model_version": "",
            "explore": False, "seed": 0, "rule_reasons": {"*": [reason]}, "latency_ms": 0.0,
            "served_by": "fallback", "fallback_reason": reason,
        }

    async def outcome(self, raw: bytes) -> Reply:
        """``POST /v1/outcomes``: an outcome (the contract's JSON), produced once valid."""
        try:
            outcome = self.contract.decode("outcomes", raw)
        except InvalidMessage as exc:
            raise BadRequest(str(exc)) from None
        event = self.events.get(outcome["decision_id"])
        if event is not None and not event.rewarded:
            event.rewarded = True
            self._count(event.use_case, event.share, reward_of(outcome["type"]))
        await self.engine.send_outcome(outcome)
        self.counts["outcomes"] += 1
        metrics.rewarded(sent=True)
        return Reply({"outcome_id": outcome["outcome_id"], "accepted": True}, 202)

    # -- Personalizer's API -----------------------------------------------------------------
    async def rank(self, body: Any, use_case: str, channel: str) -> Reply:
        """``POST /personalizer/v1.0/rank`` -> Personalizer's RankResponse (201)."""
        started = time.perf_counter()
        config = self.catalogue()
        if config is None:
            raise Unavailable("no engine configuration has been published yet")
        call = parse_rank(body, config, use_case, channel)
        share = self._share(use_case, call.event_id)
        asked = (call.baseline,) if share == BASELINE else call.candidates
        now = self.now_ms()
        request = call.request(now, asked)
        if len(orjson.dumps(request)) > self.contract.max_bytes:
            raise BadRequest(f"the decision request would exceed {self.contract.max_bytes} bytes")
        answered = await self._ask(request)
        decision = answered.decision if answered is not None else None
        engine_offer = decision["offer_id"] if decision is not None else None
        if decision is None:
            served_by = "fallback"
            shown = call.baseline if self.settings.fallback == "baseline" else None
        else:
            served_by = share or ENGINE
            shown = call.baseline if share == BASELINE else engine_offer
        event = AnsweredEvent(
            decision_id_for(call.event_id), call.event_id, call.customer_id, use_case, shown,
            engine_offer, now, now + self._window_ms(use_case),
            share=share if served_by != "fallback" else None,
            activated=not call.defer_activation)
        self.events.add(event)
        response: dict[str, Any] = {
            "ranking": ranking(call, shown, decision, by_engine=served_by == ENGINE),
            "eventId": call.event_id, "rewardActionId": shown, "servedBy": served_by,
            "decisionId": event.decision_id}
        if served_by == "fallback":
            response["fallbackReason"] = \
                f"no decision from the engine within {self.settings.timeout_ms:g} ms"
        timing = self._timing(answered, started)
        metrics.answered("rank", use_case, served_by, timing)
        return Reply(response, 201, timing)

    def _event(self, event_id: str) -> AnsweredEvent:
        event = self.events.get(decision_id_for(event_id))
        if event is None:
            raise NotFound(f"unknown event {event_id!r}: never ranked here, or past its use "
                           f"case's attribution window")
        return event

    async def reward(self, event_id: str, body: Any) -> Reply:
        """``POST /personalizer/v1.0/events/{eventId}/reward`` (204)."""
        value = parse_reward(body)
        event = self._event(event_id)
        event.rewards.append(value)
        if event.activated:
            await self._send_rewards(event)
        return Reply({}, 204)

    async def activate(self, event_id: str) -> Reply:
        """``POST /personalizer/v1.0/events/{eventId}/activate`` (204): the event was shown;
        rewards held until now are sent."""
        event = self._event(event_id)
        if not event.activated:
            event.activated = True
            await self._send_rewards(event)
        return Reply({}, 204)

    async def _send_rewards(self, event: AnsweredEvent) -> None:
        values, event.rewards = event.rewards, []
        for value in values:
            if not event.rewarded:
                event.rewarded = True
                self._count(event.use_case, event.share, max(value, 0.0))
            if not event.attributable:
                self.counts["rewards_not_attributed"] += 1
                metrics.rewarded(sent=False)
                log.info("reward_not_attributed", event_id=event.event_id,
                         shown=event.action, engine_offer=event.engine_offer)
                continue
            event.sent += 1
            await self.engine.send_outcome(reward_outcome(
                event.decision_id, event.customer_id, value, self.now_ms(), event.sent))
            self.counts["rewards"] += 1
            metrics.rewarded(sent=True)

    # -- apprentice bookkeeping -------------------------------------------------------------
    def _count(self, use_case: str, share: str | None, reward: float) -> None:
        """An apprentice share's reward for one event it served."""
        apprentice = self.apprentices.get(use_case)
        if apprentice is None or share is None:
            return
        if apprentice.record(share, reward, self.now_ms()):
            metrics.APPRENTICE_ONLINE.labels(use_case).set(1)
            log.info("apprentice_switched", **apprentice.status())

    def sweep(self) -> int:
        """Forget the events whose window ended; an activated one never rewarded counts as
        reward 0 for its apprentice share (the engine counts it as ignored). Returns how many."""
        gone = self.events.expire(self.now_ms())
        for event in gone:
            if event.activated and not event.rewarded:
                self._count(event.use_case, event.share, 0.0)
        return len(gone)

    def status(self) -> dict[str, Any]:
        config = self.catalogue()
        return {
            "config_version": config.version if config is not None else None,
            "timeout_ms": self.settings.timeout_ms, "events": len(self.events),
            "in_flight": len(self._in_flight),
            "counts": dict(sorted(self.counts.items())),
            "apprentice": {uc: a.status() for uc, a in sorted(self.apprentices.items())},
        }

