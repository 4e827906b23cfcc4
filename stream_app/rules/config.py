"""Business rules of one use case, parsed from ``UseCase.rules`` into a frozen ``RuleSet``.

The JSON shape (every key optional; defaults in brackets)::

    {
      "eligibility": [{"field": "context.age", "op": ">=", "value": 18}],       # [none]
      "offer_eligibility": {"loan": [{"field": "profile.score", "op": ">=", "value": 600}]},
      "consent": {"channels": ["email", "sms", "whatsapp", "voice"],           # [these four]
                  "field": "consent_{channel}"},                               # [this]
      "fatigue": {
        "channel_caps": {"sms": {"max": 2, "window_s": 604800}},               # [none]
        "global_cap": {"max": 5, "window_s": 604800},                          # [none]
        "cooldown_s": 3600,                                                    # [0: off]
        "same_offer_s": 86400                                                  # [86400; 0: off]
      },
      "quiet_hours": {"start": "22:00", "end": "07:00",                        # [off]
                      "channels": ["sms", "voice", "whatsapp"]},               # [all channels]
      "inventory": ["cashback"],           # offers with a limited stock, or "*" for all [none]
      "check_validity": true,              # offer valid_from_ms / valid_to_ms [true]
      "history_capacity": 64               # contacts kept per customer [64]
    }

Consent is required by default on the outbound channels (the customer did not ask to be
contacted there) and fails closed. Anything malformed raises ``ConfigError`` with one line.

>>> rs = parse_rules({"fatigue": {"channel_caps": {"sms": {"max": 2, "window_s": 86400}}},
...                   "quiet_hours": {"start": "22:00", "end": "07:00"}})
>>> rs.channel_caps["sms"].max, rs.same_offer_s, rs.quiet_hours.covers(23 * 60)
(2, 86400.0, True)
>>> parse_rules({"fatigue": {"cooldown_s": -1}})
Traceback (most recent call last):
...
stream_app.core.catalogue.ConfigError: fatigue.cooldown_s must be a number >= 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from stream_app.core.catalogue import CHANNELS, ConfigError, EngineConfig
from stream_app.rules.conditions import Condition, parse_conditions
from stream_app.rules.history import DEFAULT_CAPACITY, MAX_CAPACITY

__all__ = [
    "RuleSet",
    "WindowCap",
    "QuietHours",
    "Consent",
    "OUTBOUND_CHANNELS",
    "parse_rules",
    "parse_use_case_rules",
]

OUTBOUND_CHANNELS = ("email", "sms", "whatsapp", "voice")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WindowCap:
    """At most ``max`` contacts in any rolling window of ``window_s`` seconds."""

    max: int
    window_s: float

    @property
    def window_ms(self) -> int:
        return int(round(self.window_s * 1000))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No contact between ``start`` and ``end`` local time (minutes after midnight; may wrap)."""

    start_min: int
    end_min: int
    channels: tuple[str, ...] = CHANNELS

    def covers(self, minute_of_day: int) -> bool:
        if self.start_min < self.end_min:
            return self.start_min <= minute_of_day < self.end_min
        return minute_of_day >= self.start_min or minute_of_day < self.end_min

    def describe(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min)}"


@dataclass(frozen=True, slots=True)
class Consent:
    """Channels that need an explicit consent flag, and where the flag is found."""

    channels: tuple[str, ...] = OUTBOUND_CHANNELS
    field: str = "consent_{channel}"

    def flag(self, channel: str) -> str:
        return self.field.format(channel=channel)


@dataclass(frozen=True, slots=True)
class RuleSet:
    eligibility: tuple[Condition, ...] = ()
    offer_eligibility: Mapping[str, tuple[Condition, ...]] = field(default_factory=lambda: _EMPTY)
    consent: Consent = Consent()
    channel_caps: Mapping[str, WindowCap] = field(default_factory=lambda: _EMPTY)
    global_cap: WindowCap | None = None
    cooldown_s: float = 0.0
    same_offer_s: float = 86400.0
    quiet_hours: QuietHours | None = None
    inventory_offers: frozenset[str] = frozenset()
    inventory_all: bool = False
    check_validity: bool = True
    history_capacity: int = DEFAULT_CAPACITY

    def inventory_limited(self, offer_id: str) -> bool:
        return self.inventory_all or offer_id in self.inventory_offers


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(text: Any, where: str) -> int:
    try:
        hh, mm = str(text).split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise ConfigError(f"{where} must be 'HH:MM', got {text!r}") from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ConfigError(f"{where} must be 'HH:MM', got {text!r}")
    return h * 60 + m


def _number(doc: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}.{key} must be a number >= 0")
    return float(value)


def _channels(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise ConfigError(f"{where} must be a list of channels")
    unknown = sorted(set(value) - set(CHANNELS))
    if unknown:
        raise ConfigError(f"{where} names unknown channels {unknown}")
    return tuple(value)


def _cap(doc: Any, where: str, capacity: int) -> WindowCap:
    if not isinstance(doc, Mapping) or set(doc) != {"max", "window_s"}:
        raise ConfigError(f"{where} must be {{'max': int, 'window_s': seconds}}")
    cap_max, window = doc["max"], doc["window_s"]
    if isinstance(cap_max, bool) or not isinstance(cap_max, int) or cap_max < 0:
        raise ConfigError(f"{where}.max must be an integer >= 0")
    if cap_max > capacity:
        raise ConfigError(f"{where}.max {cap_max} exceeds history_capacity {capacity}")
    if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
        raise ConfigError(f"{where}.window_s must be a number > 0")
    return WindowCap(cap_max, float(window))


def _check_keys(doc: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where} must be an object")
    unknown = set(doc) - allowed
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
    return doc


_TOP = {"eligibility", "offer_eligibility", "consent", "fatigue", "quiet_hours", "inventory",
        "check_validity", "history_capacity"}  # fmt: skip


def parse_rules(doc: Mapping[str, Any] | None, offer_ids: Iterable[str] | None = None) -> RuleSet:
    """A ``RuleSet`` from a use case's ``rules`` object; offer ids are checked when given."""
    doc = _check_keys(doc or {}, _TOP, "rules")
    known = set(offer_ids) if offer_ids is not None else None

    def check_offers(ids: Iterable[str], where: str) -> None:
        missing = sorted(set(ids) - known) if known is not None else []
        if missing:
            raise ConfigError(f"{where} names unknown offers {missing}")

    capacity = doc.get("history_capacity", DEFAULT_CAPACITY)
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise ConfigError("rules.history_capacity must be an integer")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise ConfigError(f"rules.history_capacity must be in [1, {MAX_CAPACITY}]")

    per_offer = doc.get("offer_eligibility", {})
    if not isinstance(per_offer, Mapping):
        raise ConfigError("rules.offer_eligibility must be an object of offer id -> conditions")
    check_offers(per_offer, "rules.offer_eligibility")
    offer_eligibility = {
        oid: parse_conditions(conds, f"rules.offer_eligibility.{oid}")
        for oid, conds in per_offer.items()
    }

    consent_doc = _check_keys(doc.get("consent", {}), {"channels", "field"}, "rules.consent")
    template = consent_doc.get("field", "consent_{channel}")
    if not isinstance(template, str) or "{channel}" not in template:
        raise ConfigError("rules.consent.field must be a string containing '{channel}'")
    consent = Consent(
        _channels(consent_doc.get("channels", list(OUTBOUND_CHANNELS)), "rules.consent.channels"),
        template,
    )

    fat = _check_keys(doc.get("fatigue", {}), {"channel_caps", "global_cap", "cooldown_s",
                                               "same_offer_s"}, "rules.fatigue")  # fmt: skip
    caps_doc = _check_keys(fat.get("channel_caps", {}), set(CHANNELS), "rules.fatigue.channel_caps")
    channel_caps = {
        ch: _cap(c, f"rules.fatigue.channel_caps.{ch}", capacity) for ch, c in caps_doc.items()
    }
    global_cap = (
        _cap(fat["global_cap"], "rules.fatigue.global_cap", capacity)
        if fat.get("global_cap") is not None
        else None
    )

    quiet = None
    if doc.get("quiet_hours") is not None:
        q = _check_keys(doc["quiet_hours"], {"start", "end", "channels"}, "rules.quiet_hours")
        start = _minutes(q.get("start"), "rules.quiet_hours.start")
        end = _minutes(q.get("end"), "rules.quiet_hours.end")
        if start == end:
            raise ConfigError("rules.quiet_hours.start and end must differ")
        quiet = QuietHours(start, end, _channels(q.get("channels", list(CHANNELS)),
                                                 "rules.quiet_hours.channels"))  # fmt: skip

    inventory = doc.get("inventory", [])
    if inventory != "*":
        if not isinstance(inventory, list) or not all(isinstance(o, str) for o in inventory):
            raise ConfigError("rules.inventory must be a list of offer ids or '*'")
        check_offers(inventory, "rules.inventory")
    validity = doc.get("check_validity", True)
    if not isinstance(validity, bool):
        raise ConfigError("rules.check_validity must be true or false")

    return RuleSet(
        eligibility=parse_conditions(doc.get("eligibility", []), "rules.eligibility"),
        offer_eligibility=MappingProxyType(offer_eligibility),
        consent=consent,
        channel_caps=MappingProxyType(channel_caps),
        global_cap=global_cap,
        cooldown_s=_number(fat, "cooldown_s", "fatigue", 0.0),
        same_offer_s=_number(fat, "same_offer_s", "fatigue", 86400.0),
        quiet_hours=quiet,
        inventory_offers=frozenset(inventory) if inventory != "*" else frozenset(),
        inventory_all=inventory == "*",
        check_validity=validity,
        history_capacity=capacity,
    )


def parse_use_case_rules(config: EngineConfig) -> dict[str, RuleSet]:
    """The ``RuleSet`` of every use case in ``config`` (parse once per config version)."""
    out = {}
    for uc in config.use_cases.values():
        try:
            out[uc.id] = parse_rules(uc.rules, config.offer_ids)
        except ConfigError as exc:
            raise ConfigError(f"use case {uc.id!r}: {exc}") from None
    return out
