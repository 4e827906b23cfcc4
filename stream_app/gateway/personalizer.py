"""Azure AI Personalizer's Rank / Reward / Activate calls, mapped onto the engine's contract.

A Rank call (``POST /personalizer/v1.0/rank``, body ``contextFeatures``, ``actions``,
``excludedActions``, ``eventId``, ``deferActivation``) becomes one ``decision-requests`` message:

- ``eventId`` is the ``request_id`` (a fresh one when the call has none), so the decision id is
  the engine's ``decision_id_for(eventId)``;
- the customer is the first ``customerId`` (else ``userId``) found at the top level of a context
  feature object; without one, ``anon-`` and a hash of the event id (each event a new customer:
  the engine then learns for the segment and the population only);
- the other context features, flattened with dots (``{"device": {"mobile": true}}`` ->
  ``device.mobile``), are the request's ``context`` (at most 64: ``segment`` and ``objective``
  mean to the engine what they always mean);
- ``actions`` minus ``excludedActions`` are the ``candidates``; every action id must be an offer
  of the use case in the engine's catalogue, else the call is refused (400) naming the unknown
  ones. Action features are not read: the catalogue describes the offers;
- the *baseline* is the first action not excluded (Personalizer's own definition).

The response (201) is Personalizer's ``RankResponse``: ``rewardActionId`` the offer to show,
``ranking`` every action with a probability (the engine's chosen offer first with its
propensity; the engine reports no other action's probability, so the rest of the mass is shared
equally among the other eligible actions; actions the business rules removed and excluded ones
have 0), ``eventId``, plus ``servedBy`` (``engine``, ``baseline`` in apprentice mode, or
``fallback`` with ``fallbackReason``) and ``decisionId``.

A Reward call (``{"value": v}``, v in [-1, 1]) becomes an outcome on the event's decision:
``accepted`` with ``value`` v when v > 0, else ``dismissed``.

>>> from stream_app.core.catalogue import parse_config
>>> cfg = parse_config({"version": "v1", "offers": [{"id": "news"}, {"id": "sports"}],
...                     "use_cases": [{"id": "default"}]})
>>> call = parse_rank({"contextFeatures": [{"userId": "u-7"}, {"device": {"mobile": True}}],
...                    "actions": [{"id": "news"}, {"id": "sports"}], "eventId": "ev-1"},
...                   cfg, "default", "web")
>>> call.customer_id, call.context, call.baseline
('u-7', {'device.mobile': True}, 'news')
>>> try:
...     parse_rank({"actions": [{"id": "weather"}]}, cfg, "default", "web")
... except BadRequest as exc:
...     print(exc)
unknown actions ['weather']: not offers of use case 'default' in the engine's catalogue (version v1)
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream_app.core.catalogue import CHANNELS, EngineConfig

__all__ = ["BadRequest", "NotFound", "RankCall", "parse_rank", "parse_reward", "ranking",
           "reward_outcome", "error_body", "CUSTOMER_KEYS", "MAX_ACTIONS"]

CUSTOMER_KEYS = ("customerId", "userId")
MAX_ACTIONS = 50  # Personalizer's documented limit
MAX_CONTEXT = 64  # the decision request's context
MAX_ID = 128  # the contract's id length
_MAX_DEPTH = 8


class BadRequest(ValueError):
    """The call cannot be served; ``str(exc)`` says why (HTTP 400)."""


class NotFound(LookupError):
    """The call names something the gateway does not know (HTTP 404)."""


def error_body(code: str, message: str) -> dict[str, Any]:
    """Personalizer's ``ErrorResponse`` shape, used by every route of the gateway."""
    return {"error": {"code": code, "message": message}}


@dataclass(frozen=True, slots=True)
class RankCall:
    event_id: str
    customer_id: str
    use_case: str
    channel: str
    context: dict[str, Any]
    actions: tuple[str, ...]  # every action, in the caller's order
    candidates: tuple[str, ...]  # the actions not excluded, in the caller's order
    defer_activation: bool

    @property
    def baseline(self) -> str:
        return self.candidates[0]

    def request(self, ts_ms: int, candidates: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The ``decision-requests`` message (among ``candidates``, default all of them)."""
        req: dict[str, Any] = {
            "schema_version": 1, "request_id": self.event_id, "customer_id": self.customer_id,
            "ts": ts_ms, "channel": self.channel, "use_case": self.use_case,
            "candidates": list(candidates or self.candidates)}
        if self.context:
            req["context"] = self.context
        return req


def parse_rank(body: Any, config: EngineConfig, use_case: str, channel: str) -> RankCall:
    """A Rank call's JSON body -> ``RankCall``, or ``BadRequest`` with the reason."""
    if not isinstance(body, Mapping):
        raise BadRequest("the Rank body must be a JSON object")
    if channel not in CHANNELS:
        raise BadRequest(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
    if use_case not in config.use_cases:
        raise BadRequest(f"unknown use case {use_case!r} (engine config {config.version} has "
                         f"{', '.join(sorted(config.use_cases))})")
    actions = _actions(body.get("actions"))
    excluded = body.get("excludedActions") or []
    if not isinstance(excluded, list) or not all(isinstance(a, str) for a in excluded):
        raise BadRequest("excludedActions must be a list of action ids")
    offers = config.use_cases[use_case].offers
    known = set(config.offer_ids if offers is None else offers)
    unknown = [a for a in actions if a not in known]
    if unknown:
        raise BadRequest(f"unknown actions {unknown}: not offers of use case {use_case!r} in "
                         f"the engine's catalogue (version {config.version})")
    dropped = set(excluded)
    candidates = tuple(a for a in actions if a not in dropped)
    if not candidates:
        raise BadRequest("every action is excluded: nothing to rank")
    event_id = body.get("eventId")
    if event_id is None:
        event_id = uuid.uuid4().hex
    elif not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID:
        raise BadRequest(f"eventId must be a string of 1 to {MAX_ID} characters")
    defer = body.get("deferActivation", False)
    if not isinstance(defer, bool):
        raise BadRequest("deferActivation must be true or false")
    customer, context = _context(body.get("contextFeatures"))
    if customer is None:
        customer = "anon-" + hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()
    return RankCall(event_id, customer, use_case, channel, context, actions, candidates, defer)


def _actions(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("actions must be a non-empty list of {\"id\": ..., \"features\": [...]}")
    if len(raw) > MAX_ACTIONS:
        raise BadRequest(f"{len(raw)} actions: at most {MAX_ACTIONS}")
    ids = []
    for i, action in enumerate(raw):
        aid = action.get("id") if isinstance(action, Mapping) else None
        if not isinstance(aid, str) or not 0 < len(aid) <= MAX_ID:
            raise BadRequest(f"actions[{i}] needs an id: a string of 1 to {MAX_ID} characters")
        ids.append(aid)
    if len(set(ids)) != len(ids):
        twice = sorted({a for a in ids if ids.count(a) > 1})
        raise BadRequest(f"action ids must be unique: {twice}")
    return tuple(ids)


def _context(raw: Any) -> tuple[str | None, dict[str, Any]]:
    """(customer id or None, the flattened context features)."""
    if raw is None:
        return None, {}
    if not isinstance(raw, list) or not all(isinstance(f, Mapping) for f in raw):
        raise BadRequest("contextFeatures must be a list of JSON objects")
    customer = None
    context: dict[str, Any] = {}
    for features in raw:
        for key in CUSTOMER_KEYS:
            value = features.get(key)
            if customer is None and value is not None:
                if isinstance(value, bool) or not isinstance(value, (str, int)) or \
                        not 0 < len(str(value)) <= MAX_ID:
                    raise BadRequest(f"context feature {key} must be a string or integer of 1 to "
                                     f"{MAX_ID} characters")
                customer = str(value)
        for key, value in features.items():
            if key not in CUSTOMER_KEYS:
                _flatten(str(key), value, context, 1)
    return customer, context


def _flatten(key: str, value: Any, out: dict[str, Any], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise BadRequest(f"context feature {key} is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{key}.{k}", v, out, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(f"{key}.{i}", v, out, depth + 1)
    else:
        out[key] = value
        if len(out) > MAX_CONTEXT:
            raise BadRequest(f"more than {MAX_CONTEXT} context features once flattened (a "
                             f"decision request's context holds at most {MAX_CONTEXT})")


def ranking(call: RankCall, shown: str | None, decision: Mapping[str, Any] | None,
            by_engine: bool) -> list[dict[str, Any]]:
    """Every action of the call with its probability, ``shown`` first.

    ``by_engine``: ``shown`` is the engine's choice, with its propensity; the other eligible
    actions (the engine's ``ranked``) share the rest equally. Otherwise ``shown`` was chosen by
    the gateway (baseline, fallback) with certainty."""
    out: list[dict[str, Any]] = []
    if shown is not None:
        if by_engine and decision is not None:
            p = float(decision["propensity"])
            others = [r["offer_id"] for r in decision.get("ranked", ()) if r["offer_id"] != shown]
            out.append({"id": shown, "probability": round(p, 6)})
            rest = (1.0 - p) / len(others) if others else 0.0
            out += [{"id": a, "probability": round(rest, 6)} for a in others]
        else:
            out.append({"id": shown, "probability": 1.0})
    listed = {r["id"] for r in out}
    out += [{"id": a, "probability": 0.0} for a in call.actions if a not in listed]
    return out


def parse_reward(body: Any) -> float:
    """A Reward call's body -> its value in [-1, 1], or ``BadRequest``."""
    value = body.get("value") if isinstance(body, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest("the Reward body must be {\"value\": <number>}")
    if not -1.0 <= value <= 1.0:
        raise BadRequest(f"reward value {value} is outside [-1, 1]")
    return float(value)


def reward_outcome(decision_id: str, customer_id: str, value: float, ts_ms: int,
                   sequence: int) -> dict[str, Any]:
    """The ``outcomes`` message of the ``sequence``-th reward of a decision.

    >>> reward_outcome("dc-1", "c-1", 0.5, 1_000, 1)["type"], reward_outcome("dc-1", "c-1",
    ...     0.0, 1_000, 2)["type"]
    ('accepted', 'dismissed')
    """
    return {"schema_version": 1, "outcome_id": f"oc-{decision_id}-{sequence}",
            "decision_id": decision_id, "customer_id": customer_id, "ts": ts_ms,
            "type": "accepted" if value > 0 else "dismissed", "value": value}
