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
      "inventory": ["cashback"],           # offers shown only under a budget, or "*" [none]
      "check_validity": true,              # offer valid_from_ms / valid_to_ms [true]
      "history_capacity": 64               # contacts kept per customer [derived]
    }

Consent is required by default on the outbound channels (the customer did not ask to be
contacted there) and fails closed. ``inventory`` names the offers the use case shows only under
a budget (the config's top-level ``budgets``, kept fleet-wide by ``fleet/budgets.py``): one
without a budget is removed; a budget applies in every use case, listed here or not. Anything
malformed raises ``ConfigError`` with one line.

**How many contacts a customer's history keeps.** Unless ``history_capacity`` is set, it is the
smallest number from which every rule that reads the history is answered exactly
(``history_capacity_for``), within ``[HISTORY_FLOOR, MAX_CAPACITY]``: a global cap of ``max``
needs the last ``max`` contacts, a cool-down the last one, and a channel cap or "not the same
offer twice" needs every contact of its window - as many as the rules let a customer receive in
such a window (``contacts_bound``). The default rules (same offer at most once in 24 h, no caps)
need one contact per offer of the catalogue. A window nothing bounds needs ``MAX_CAPACITY``.

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

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from stream_app.core.catalogue import CHANNELS, ConfigError, EngineConfig
from stream_app.rules.conditions import Condition, parse_conditions
from stream_app.rules.history import DEFAULT_CAPACITY, MAX_CAPACITY

__all__ = [
    "HISTORY_FLOOR",
    "RuleSet",
    "WindowCap",
    "QuietHours",
    "Consent",
    "OUTBOUND_CHANNELS",
    "contacts_bound",
    "history_capacity_for",
    "parse_rules",
    "parse_use_case_rules",
]

OUTBOUND_CHANNELS = ("email", "sms", "whatsapp", "voice")
HISTORY_FLOOR = 8  # a derived history capacity is never smaller (room for a config change)
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


def _cap(doc: Any, where: str, capacity: int | None) -> WindowCap:
    if not isinstance(doc, Mapping) or set(doc) != {"max", "window_s"}:
        raise ConfigError(f"{where} must be {{'max': int, 'window_s': seconds}}")
    cap_max, window = doc["max"], doc["window_s"]
    if isinstance(cap_max, bool) or not isinstance(cap_max, int) or cap_max < 0:
        raise ConfigError(f"{where}.max must be an integer >= 0")
    if capacity is not None and cap_max > capacity:
        raise ConfigError(f"{where}.max {cap_max} exceeds history_capacity {capacity}")
    if cap_max > MAX_CAPACITY:
        raise ConfigError(f"{where}.max {cap_max} exceeds the longest history ({MAX_CAPACITY})")
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

    capacity = doc.get("history_capacity")  # None: derived from the rules, below
    if capacity is not None:
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

    rules = RuleSet(
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
        history_capacity=capacity or DEFAULT_CAPACITY,
    )
    if capacity is None:
        n_offers = len(known) if known is not None else None
        rules = replace(rules, history_capacity=history_capacity_for([(rules, n_offers)]))
    return rules


def parse_use_case_rules(config: EngineConfig) -> dict[str, RuleSet]:
    """The ``RuleSet`` of every use case in ``config`` (parse once per config version).

    A customer has one contact history, which every use case records into and reads: a derived
    capacity is the one all the use cases together need (an explicit one is kept as set).
    """
    out = {}
    for uc in config.use_cases.values():
        try:
            out[uc.id] = parse_rules(uc.rules, config.offer_ids)
        except ConfigError as exc:
            raise ConfigError(f"use case {uc.id!r}: {exc}") from None
    if len(out) > 1:
        shared = history_capacity_for(
            [(out[uc.id], len(uc.offers if uc.offers is not None else config.offer_ids))
             for uc in config.use_cases.values()])
        for uc in config.use_cases.values():
            if (uc.rules or {}).get("history_capacity") is None:
                out[uc.id] = replace(out[uc.id], history_capacity=shared)
    return out


def _per_window(count: int, window_ms: int, cap_window_ms: int) -> int:
    """``count`` per rolling ``cap_window_ms``, over any window of ``window_ms``: the window is
    covered by ``ceil(window_ms / cap_window_ms)`` consecutive cap windows."""
    return count * -(-window_ms // cap_window_ms)


def contacts_bound(rules: RuleSet, window_ms: int, n_offers: int | None) -> int | None:
    """The most contacts ``rules`` let a customer receive in any rolling window of
    ``window_ms``, or ``None`` when no rule bounds it.

    Each rule that blocks a contact bounds it on its own; the smallest bound holds:

    - a global cap of ``max`` per ``W``: ``max`` in any window of ``W``;
    - a cool-down of ``c``: contacts are at least ``c`` apart, one per ``c``;
    - "not the same offer twice within ``S``": each of the ``n_offers`` once per ``S``;
    - caps on every channel: the sum of their ``max`` per window.

    A window longer than the rule's counts one rule window per started rule window. Contacts
    are assumed to arrive in event-time order (a replayed, older contact can exceed a bound).

    Parameters
    ----------
    rules
        The rules of one use case.
    window_ms
        The length of the window, in milliseconds (event time).
    n_offers
        How many offers the use case can show (``None``: unknown, "same offer" bounds nothing).

    Examples
    --------
    >>> day = 86_400_000
    >>> contacts_bound(parse_rules({}), day, n_offers=8)   # each offer once a day
    8
    >>> contacts_bound(parse_rules({}), 7 * day, n_offers=8)
    56
    >>> rules = parse_rules({"fatigue": {"global_cap": {"max": 3, "window_s": 86400}}})
    >>> contacts_bound(rules, day, n_offers=8), contacts_bound(rules, 7 * day, None)
    (3, 21)
    >>> contacts_bound(parse_rules({"fatigue": {"same_offer_s": 0}}), day, 8) is None
    True
    """
    bounds = []
    if rules.global_cap is not None and rules.global_cap.window_ms > 0:
        bounds.append(_per_window(rules.global_cap.max, window_ms, rules.global_cap.window_ms))
    cooldown_ms = int(round(rules.cooldown_s * 1000))
    if cooldown_ms > 0:
        bounds.append(_per_window(1, window_ms, cooldown_ms))
    same_ms = int(round(rules.same_offer_s * 1000))
    if same_ms > 0 and n_offers is not None:
        bounds.append(_per_window(n_offers, window_ms, same_ms))
    caps = rules.channel_caps
    if set(caps) >= set(CHANNELS) and all(c.window_ms > 0 for c in caps.values()):
        bounds.append(sum(_per_window(c.max, window_ms, c.window_ms) for c in caps.values()))
    return min(bounds) if bounds else None


def history_capacity_for(use_cases: Iterable[tuple[RuleSet, int | None]]) -> int:
    """The smallest contact-history capacity from which every rule of every use case sharing
    the history is answered exactly, within ``[HISTORY_FLOOR, MAX_CAPACITY]``.

    What each rule needs of the history (newest contacts first):

    - a global cap of ``max`` per ``W``: the last ``max`` contacts (the cap is reached when the
      ``max``-th newest is inside the window), or fewer when fewer fit in ``W`` (the cap is then
      never reached);
    - a cool-down: the last contact;
    - a channel cap per ``w``, and "not the same offer twice within ``S``": every contact of
      the window (``w`` or ``S``), on any channel - the most that all the use cases together
      let a customer receive in it (``contacts_bound``, added over the use cases);
    - quiet hours, consent, eligibility, validity and inventory read no history.

    A window that no rule bounds cannot be answered exactly from any count: it gets
    ``MAX_CAPACITY``. The bounds hold because the capacity answers the rules that make them
    (by induction over the contacts made).

    Parameters
    ----------
    use_cases
        ``(rules, n_offers)`` of every use case recording into the history; ``n_offers`` is
        how many offers the use case can show (``None``: unknown).

    Examples
    --------
    >>> history_capacity_for([(parse_rules({}), 8)])    # the defaults: each offer once a day
    8
    >>> history_capacity_for([(parse_rules({}), 20)])
    20
    >>> week = {"max": 2, "window_s": 604800}
    >>> capped = parse_rules({"fatigue": {"channel_caps": {"sms": week},
    ...                                   "global_cap": {"max": 5, "window_s": 604800}}})
    >>> history_capacity_for([(capped, 100)])   # 5 a week at most: the sms cap reads those
    8
    >>> history_capacity_for([(capped, 100), (parse_rules({}), 4)])  # + 4 x 7 from the other
    33
    >>> history_capacity_for([(parse_rules({"fatigue": {"same_offer_s": 0,
    ...                                                 "channel_caps": {"sms": week}}}), 8)])
    1024
    """
    use_cases = list(use_cases)

    def bound(window_ms: int) -> int | None:
        total = 0
        for rules, n_offers in use_cases:
            b = contacts_bound(rules, window_ms, n_offers)
            if b is None:
                return None
            total += b
        return total

    need = 0
    for rules, _ in use_cases:
        g = rules.global_cap
        if g is not None:
            fit = bound(g.window_ms)
            need = max(need, g.max if fit is None else min(g.max, fit))
        if rules.cooldown_s > 0:
            need = max(need, 1)
        windows = [c.window_ms for c in rules.channel_caps.values()]
        if rules.same_offer_s > 0:
            windows.append(int(round(rules.same_offer_s * 1000)))
        for window_ms in windows:
            b = bound(window_ms)
            if b is None:
                return MAX_CAPACITY
            need = max(need, b)
    return min(max(need, HISTORY_FLOOR), MAX_CAPACITY)
