"""The planted customer segments of the simulator: who the customers are, before any noise.

Each ``SegmentSpec`` is a behavioural archetype (a *spend personality*): how much of its spend
goes to each category, where it is reachable, how active it is, how loss- and risk-averse it is
and how quickly it churns. ``Population`` draws individual customers around these centres, so a
clustering of the emitted behaviour should recover them; the segment of a customer is ground
truth that the engine never sees.

Timezones are ones without daylight saving time, so the fixed UTC offsets used by the ground
truth agree with what ``zoneinfo`` computes for the same name on any date.

>>> [s.name for s in DEFAULT_SEGMENTS]
['digital_natives', 'family_budgeters', 'affluent_travellers', 'cautious_savers', 'deal_hunters']
>>> all(abs(sum(s.spend_mix.values()) - 1.0) < 1e-9 for s in DEFAULT_SEGMENTS)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from stream_app.core.catalogue import CHANNELS

SPEND_CATEGORIES = (
    "groceries", "dining", "travel", "fuel", "entertainment", "electronics", "fashion", "health",
)  # fmt: skip

MERCHANTS: Mapping[str, tuple[str, ...]] = {
    "groceries": ("FreshMart", "GreenGrocer", "SuperSave", "CornerShop"),
    "dining": ("PizzaPlace", "SushiBar", "CafeNero", "BurgerJoint"),
    "travel": ("SkyAir", "RailConnect", "StayWell Hotels", "RideShare"),
    "fuel": ("FuelStop", "PetroMax", "QuickFill"),
    "entertainment": ("StreamFlix", "CinemaCity", "GameVault", "TicketHub"),
    "electronics": ("TechWorld", "GadgetHub", "PhoneCity"),
    "fashion": ("StyleCo", "ShoeBox", "DenimDepot", "LuxeLabel"),
    "health": ("CarePharmacy", "FitGym", "DentalPlus"),
}

# Typical transaction size per category, relative to the segment's spend level.
CATEGORY_AMOUNT = {
    "groceries": 1.0, "dining": 0.8, "travel": 6.0, "fuel": 1.2,
    "entertainment": 0.5, "electronics": 4.0, "fashion": 1.5, "health": 1.0,
}  # fmt: skip

TIMEZONES: Mapping[str, float] = {  # name -> fixed UTC offset in hours (no DST)
    "UTC": 0.0,
    "Africa/Johannesburg": 2.0,
    "Asia/Dubai": 4.0,
    "Asia/Kolkata": 5.5,
    "Asia/Singapore": 8.0,
    "America/Sao_Paulo": -3.0,
}

# Offer categories that carry financial risk (risk-averse customers avoid them) or remove it.
RISK_SIGN: Mapping[str, float] = {"credit": -1.0, "investments": -1.0, "insurance": 1.0}


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    name: str
    share: float  # of the population
    spend_mix: Mapping[str, float]  # category -> share of spend, sums to 1
    channel_mix: Mapping[str, float]  # channel -> share of the customer's requests
    events_per_day: float  # behaviour events (transactions, views, logins, ...)
    requests_per_day: float  # decision requests (the customer is somewhere we can show an offer)
    spend_level: float  # median transaction amount in a category of relative size 1
    loss_aversion: float  # mean trait in [0, 1]; > 0.5 responds to urgency / scarcity framing
    risk_aversion: float  # mean trait in [0, 1]; > 0.5 avoids credit / investment offers
    churn_per_day: float  # hazard of going inactive
    active_hour: float  # mean local hour of activity


def _mix(**weights: float) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


DEFAULT_SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec(
        "digital_natives", 0.25,
        _mix(dining=3, entertainment=3, fashion=2, electronics=1.5, groceries=1, travel=0.5),
        _mix(app=6, web=1, whatsapp=2, sms=0.5),
        events_per_day=6.0, requests_per_day=2.0, spend_level=18.0,
        loss_aversion=0.7, risk_aversion=0.3, churn_per_day=0.004, active_hour=21.0,
    ),
    SegmentSpec(
        "family_budgeters", 0.25,
        _mix(groceries=5, fuel=2, health=1.5, fashion=1, dining=0.5),
        _mix(email=3, sms=3, app=2, web=1),
        events_per_day=4.0, requests_per_day=1.2, spend_level=30.0,
        loss_aversion=0.6, risk_aversion=0.7, churn_per_day=0.002, active_hour=18.0,
    ),
    SegmentSpec(
        "affluent_travellers", 0.15,
        _mix(travel=4, dining=3, fashion=1.5, electronics=1, groceries=1),
        _mix(app=4, web=3, email=2),
        events_per_day=3.0, requests_per_day=1.0, spend_level=60.0,
        loss_aversion=0.3, risk_aversion=0.3, churn_per_day=0.002, active_hour=12.0,
    ),
    SegmentSpec(
        "cautious_savers", 0.15,
        _mix(groceries=4, health=3, fuel=1.5, dining=0.5),
        _mix(email=3, web=2, call_centre=2, voice=1),
        events_per_day=2.0, requests_per_day=0.6, spend_level=25.0,
        loss_aversion=0.8, risk_aversion=0.85, churn_per_day=0.001, active_hour=10.0,
    ),
    SegmentSpec(
        "deal_hunters", 0.20,
        _mix(electronics=3, fashion=3, groceries=2, entertainment=1),
        _mix(web=4, whatsapp=2, sms=2, app=2),
        events_per_day=5.0, requests_per_day=1.5, spend_level=22.0,
        loss_aversion=0.75, risk_aversion=0.5, churn_per_day=0.008, active_hour=15.0,
    ),
)  # fmt: skip

assert all(set(s.channel_mix) <= set(CHANNELS) for s in DEFAULT_SEGMENTS)
assert all(set(s.spend_mix) <= set(SPEND_CATEGORIES) for s in DEFAULT_SEGMENTS)
