"""The demo offer catalogue and the one helper that accepts a catalogue in any of its forms.

``default_engine_config()`` is an engine-config document (the ``engine-config`` topic's shape):
eight offers over five categories, three of them urgency- or scarcity-framed twins or flash
sales, so loss-averse customers have something to respond to.

>>> doc = default_engine_config()
>>> len(doc["offers"]), doc["use_cases"][0]["id"]
(8, 'default')
>>> sorted({o["framing"] for o in doc["offers"]})
['neutral', 'scarcity', 'urgency']
>>> [o.id for o in as_offers(doc)][:2]
['grocery_cashback', 'grocery_cashback_ends_tonight']
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

from stream_app.core.catalogue import EngineConfig, Offer, parse_config

_DIGITAL = ["app", "web", "email", "sms", "whatsapp"]

_DEFAULT: dict[str, Any] = {
    "version": "sim-v1",
    "offers": [
        {"id": "grocery_cashback", "category": "groceries", "channels": _DIGITAL,
         "value": 1.0, "framing": "neutral"},
        {"id": "grocery_cashback_ends_tonight", "category": "groceries", "channels": _DIGITAL,
         "value": 1.0, "framing": "urgency"},
        {"id": "travel_miles_boost", "category": "travel", "channels": ["app", "web", "email"],
         "value": 3.0, "framing": "neutral"},
        {"id": "travel_last_seats", "category": "travel", "channels": _DIGITAL,
         "value": 3.0, "framing": "scarcity"},
        {"id": "dining_2for1", "category": "dining", "channels": _DIGITAL,
         "value": 1.5, "framing": "neutral"},
        {"id": "electronics_flash_sale", "category": "electronics", "channels": _DIGITAL,
         "value": 2.0, "framing": "urgency"},
        {"id": "personal_loan", "category": "credit",
         "channels": ["app", "web", "email", "voice", "call_centre"],
         "value": 5.0, "framing": "neutral"},
        {"id": "home_insurance", "category": "insurance",
         "channels": ["app", "web", "email", "sms", "voice", "call_centre"],
         "value": 4.0, "framing": "neutral"},
    ],
    "use_cases": [
        {"id": "default", "policy": "thompson", "attribution_window_s": 3600.0},
    ],
}  # fmt: skip


def default_engine_config(attribution_window_s: float = 3600.0) -> dict[str, Any]:
    """A fresh copy of the demo engine configuration (JSON-ready; safe to mutate)."""
    doc = copy.deepcopy(_DEFAULT)
    doc["use_cases"][0]["attribution_window_s"] = float(attribution_window_s)
    return doc


def as_offers(offers: EngineConfig | Mapping[str, Any] | Iterable[Offer]) -> tuple[Offer, ...]:
    """Offers from an ``EngineConfig``, an engine-config document, or an iterable of ``Offer``."""
    if isinstance(offers, EngineConfig):
        return offers.offers
    if isinstance(offers, Mapping):
        return parse_config(offers).offers
    result = tuple(offers)
    if not result or not all(isinstance(o, Offer) for o in result):
        raise TypeError("offers must be an EngineConfig, a config document or a list of Offer")
    return result
