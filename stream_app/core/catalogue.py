"""The engine configuration: offers, use cases and the version that names them.

Configuration arrives as JSON on the compacted ``engine-config`` topic (or from a file) and is
parsed here into frozen objects. A configuration that does not parse raises ``ConfigError`` with a
readable reason; the caller keeps the last good one in force. A key the engine does not know is
refused with its JSON path (``use_cases[0]: unknown key ['rule']``), never ignored: a misspelt
key would otherwise leave a rule silently unapplied. Numbers are bounded (``MAX_WINDOW_S``,
``MAX_OFFER_VALUE``). An offer's budget (``budgets``: accepted offers in total, offer value
accepted per day) is a ``Budget``; the fleet keeps to it (``fleet/budgets.py``).

>>> cfg = parse_config({"version": "v1", "offers": [{"id": "cashback", "category": "cards"}],
...                     "use_cases": [{"id": "default", "policy": "thompson"}]})
>>> cfg.offer_ids, cfg.use_case("default").policy
(('cashback',), 'thompson')
>>> parse_config({"version": "v1", "offers": [{"id": "cashback"}],
...               "use_cases": [{"id": "default", "rule": {}}]})
Traceback (most recent call last):
...
stream_app.core.catalogue.ConfigError: use_cases[0]: unknown key ['rule'] (known: id, policy, params, offers, attribution_window_s, challengers, rules, half_life_s, prior, promotion)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

FRAMINGS = ("neutral", "urgency", "scarcity")
CHANNELS = ("app", "web", "email", "sms", "whatsapp", "voice", "call_centre")
CONFIG_KEYS = ("schema_version", "version", "description", "inventory", "budgets", "offers",
               "use_cases", "routing", "experiments", "segments")
OFFER_KEYS = ("id", "category", "channels", "value", "framing", "valid_from_ms", "valid_to_ms",
              "attributes")
USE_CASE_KEYS = ("id", "policy", "params", "offers", "attribution_window_s", "challengers",
                 "rules", "half_life_s", "prior", "promotion")
MAX_WINDOW_S = 366 * 86_400  # the longest attribution window (and arms' half-life)
MAX_OFFER_VALUE = 1e9
MAX_COUNT = 2**53 - 1  # the largest integer JSON carries exactly


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says why in one line."""


def refuse_unknown_keys(doc: Mapping[str, Any], known: tuple[str, ...], path: str) -> None:
    """Raise ``ConfigError`` naming ``path`` (a JSON path) when ``doc`` has a key not in
    ``known``.

    >>> refuse_unknown_keys({"max": 1, "windw_s": 60}, ("max", "window_s"), "rules.global_cap")
    Traceback (most recent call last):
    ...
    stream_app.core.catalogue.ConfigError: rules.global_cap: unknown key ['windw_s'] (known: max, window_s)
    """
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        raise ConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {unknown} "
                          f"(known: {', '.join(known)})")


def offer_key(offer_id: str) -> int:
    """Stable 32-bit key of an offer id, used to store per-offer state compactly."""
    return zlib.crc32(offer_id.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Offer:
    id: str
    category: str = "general"
    channels: tuple[str, ...] = CHANNELS
    value: float = 1.0
    framing: str = "neutral"
    valid_from_ms: int | None = None
    valid_to_ms: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> int:
        return offer_key(self.id)

    @property
    def urgent(self) -> bool:
        return self.framing in ("urgency", "scarcity")


@dataclass(frozen=True, slots=True)
class Budget:
    """An offer's budget, used up by accepted offers on every partition (``fleet/budgets.py``):
    ``count`` accepted offers in total, ``value_per_day`` of the offer's ``value`` accepted per
    UTC day (of the decision)."""

    count: int | None = None
    value_per_day: float | None = None


@dataclass(frozen=True, slots=True)
class UseCase:
    id: str
    policy: str = "thompson"
    params: Mapping[str, Any] = field(default_factory=dict)
    offers: tuple[str, ...] | None = None  # None: every offer in the catalogue
    attribution_window_s: float = 3600.0
    challengers: tuple[str, ...] = ()
    rules: Mapping[str, Any] = field(default_factory=dict)
    half_life_s: float | None = None  # arms forget with this half-life in event time
    prior: Mapping[str, Any] = field(default_factory=dict)  # HierarchicalPrior settings


@dataclass(frozen=True, slots=True)
class EngineConfig:
    version: str
    offers: tuple[Offer, ...]
    use_cases: Mapping[str, UseCase]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    budgets: Mapping[str, Budget] = field(default_factory=dict)  # offer id -> its budget
    offer_ids: tuple[str, ...] = field(init=False)
    offer_keys: np.ndarray = field(init=False, compare=False, repr=False)
    offer_values: np.ndarray = field(init=False, compare=False, repr=False)
    offer_urgent: np.ndarray = field(init=False, compare=False, repr=False)
    _index: Mapping[str, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ids = tuple(o.id for o in self.offers)
        object.__setattr__(self, "offer_ids", ids)
        object.__setattr__(self, "_index", {oid: i for i, oid in enumerate(ids)})
        object.__setattr__(
            self, "offer_keys", np.fromiter((o.key for o in self.offers), np.uint32, len(ids))
        )
        object.__setattr__(
            self, "offer_values", np.fromiter((o.value for o in self.offers), np.float64, len(ids))
        )
        object.__setattr__(
            self, "offer_urgent", np.fromiter((o.urgent for o in self.offers), bool, len(ids))
        )
        for arr in (self.offer_keys, self.offer_values, self.offer_urgent):
            arr.flags.writeable = False

    def index_of(self, offer_id: str) -> int:
        try:
            return self._index[offer_id]
        except KeyError:
            raise ConfigError(f"unknown offer {offer_id!r}") from None

    def use_case(self, use_case_id: str) -> UseCase:
        try:
            return self.use_cases[use_case_id]
        except KeyError:
            raise ConfigError(f"unknown use case {use_case_id!r}") from None


def _offer(doc: Mapping[str, Any], path: str) -> Offer:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"{path}: offer needs a non-empty string id: {str(doc)[:200]}")
    refuse_unknown_keys(doc, OFFER_KEYS, path)
    framing = doc.get("framing", "neutral")
    if framing not in FRAMINGS:
        raise ConfigError(f"offer {doc['id']!r}: framing must be one of {FRAMINGS}")
    channels = tuple(doc.get("channels", CHANNELS))
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ConfigError(f"offer {doc['id']!r}: unknown channels {sorted(unknown)}")
    value = doc.get("value", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= MAX_OFFER_VALUE:
        raise ConfigError(f"offer {doc['id']!r}: value must be a number in [0, {MAX_OFFER_VALUE:g}]")
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, Mapping):
        raise ConfigError(f"{path}.attributes must be an object")
    return Offer(
        id=doc["id"],
        category=str(doc.get("category", "general")),
        channels=channels,
        value=float(value),
        framing=framing,
        valid_from_ms=doc.get("valid_from_ms"),
        valid_to_ms=doc.get("valid_to_ms"),
        attributes=dict(attributes),
    )


def _use_case(doc: Mapping[str, Any], offer_ids: set[str], path: str) -> UseCase:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"{path}: use case needs a non-empty string id: {str(doc)[:200]}")
    refuse_unknown_keys(doc, USE_CASE_KEYS, path)
    offers = doc.get("offers")
    if offers is not None:
        missing = set(offers) - offer_ids
        if missing:
            raise ConfigError(f"use case {doc['id']!r} names unknown offers {sorted(missing)}")
        offers = tuple(offers)
    window = doc.get("attribution_window_s", 3600.0)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or \
            not 0 < window <= MAX_WINDOW_S:
        raise ConfigError(f"use case {doc['id']!r}: attribution_window_s must be in "
                          f"(0, {MAX_WINDOW_S}]")
    for i, challenger in enumerate(doc.get("challengers") or ()):
        if isinstance(challenger, Mapping):
            refuse_unknown_keys(challenger, ("policy", "params", "name"),
                                f"{path}.challengers[{i}]")
    if isinstance(doc.get("promotion"), Mapping):
        refuse_unknown_keys(doc["promotion"], ("auto", "after_s", "min_n"), f"{path}.promotion")
    return UseCase(
        id=doc["id"],
        policy=str(doc.get("policy", "thompson")),
        params=dict(doc.get("params", {})),
        offers=offers,
        attribution_window_s=float(window),
        challengers=tuple(doc.get("challengers", ())),
        rules=dict(doc.get("rules", {})),
        half_life_s=_positive_or_none(doc, "half_life_s"),
        prior=dict(doc.get("prior", {})),
    )


def _positive_or_none(doc: Mapping[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 < value <= 10 * MAX_WINDOW_S:
        raise ConfigError(f"use case {doc['id']!r}: {name} must be a number in "
                          f"(0, {10 * MAX_WINDOW_S}]")
    return float(value)


def _budgets(doc: Mapping[str, Any], offer_ids: set[str]) -> dict[str, Budget]:
    """``budgets`` (offer id -> ``{"count": N, "value_per_day": V}``) and ``inventory`` (offer id
    -> N: the count budgets alone, in short).

    >>> _budgets({"budgets": {"a": {"value_per_day": 50}}, "inventory": {"b": 3}}, {"a", "b"})
    {'a': Budget(count=None, value_per_day=50.0), 'b': Budget(count=3, value_per_day=None)}
    >>> _budgets({"budgets": {"a": {"count": -1}}}, {"a"})
    Traceback (most recent call last):
    ...
    stream_app.core.catalogue.ConfigError: budgets.a.count must be an integer in [0, 9007199254740991]
    """
    raw, inventory = doc.get("budgets", {}), doc.get("inventory", {})
    if not isinstance(raw, Mapping):
        raise ConfigError("budgets must be an object: offer id -> {count, value_per_day}")
    if not isinstance(inventory, Mapping):
        raise ConfigError("inventory must be an object: offer id -> count budget")

    def count(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise ConfigError(f"{path} must be an integer in [0, {MAX_COUNT}]")
        return value

    budgets: dict[str, Budget] = {}
    for offer_id, spec in raw.items():
        path = f"budgets.{offer_id}"
        if offer_id not in offer_ids:
            raise ConfigError(f"{path}: unknown offer {offer_id!r}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{path} must be an object with count and/or value_per_day")
        refuse_unknown_keys(spec, ("count", "value_per_day"), path)
        per_day = spec.get("value_per_day")
        if per_day is not None and (isinstance(per_day, bool) or not isinstance(
                per_day, (int, float)) or not 0 <= per_day <= MAX_COUNT):
            raise ConfigError(f"{path}.value_per_day must be a number in [0, {MAX_COUNT}]")
        if spec.get("count") is None and per_day is None:
            raise ConfigError(f"{path} must set count and/or value_per_day")
        budgets[offer_id] = Budget(
            None if spec.get("count") is None else count(spec["count"], f"{path}.count"),
            None if per_day is None else float(per_day))
    for offer_id, n in inventory.items():
        if offer_id not in offer_ids:
            raise ConfigError(f"inventory.{offer_id}: unknown offer {offer_id!r}")
        known = budgets.get(offer_id, Budget())
        if known.count is not None:
            raise ConfigError(f"inventory.{offer_id}: budgets.{offer_id}.count is set too; "
                              "keep one")
        budgets[offer_id] = Budget(count(n, f"inventory.{offer_id}"), known.value_per_day)
    return budgets


def parse_config(doc: Mapping[str, Any]) -> EngineConfig:
    """Build an ``EngineConfig`` from its JSON document, or raise ``ConfigError``."""
    if not isinstance(doc, Mapping):
        raise ConfigError("config must be a JSON object")
    refuse_unknown_keys(doc, CONFIG_KEYS, "config")
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise ConfigError("config needs a non-empty string 'version'")
    offers = tuple(_offer(o, f"offers[{i}]") for i, o in enumerate(doc.get("offers", ())))
    if not offers:
        raise ConfigError("config needs at least one offer")
    ids = [o.id for o in offers]
    if len(set(ids)) != len(ids):
        raise ConfigError("offer ids must be unique")
    if len({o.key for o in offers}) != len(offers):
        raise ConfigError("two offer ids hash to the same key; rename one")
    use_cases = {}
    for i, uc in enumerate(doc.get("use_cases", ())):
        parsed = _use_case(uc, set(ids), f"use_cases[{i}]")
        if parsed.id in use_cases:
            raise ConfigError(f"use case {parsed.id!r} is defined twice")
        use_cases[parsed.id] = parsed
    if not use_cases:
        raise ConfigError("config needs at least one use case")
    return EngineConfig(version=version, offers=offers, use_cases=use_cases, raw=dict(doc),
                        budgets=_budgets(doc, set(ids)))
