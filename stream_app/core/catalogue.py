"""The engine configuration: offers, use cases and the version that names them.

Configuration arrives as JSON on the compacted ``engine-config`` topic (or from a file) and is
parsed here into frozen objects. A configuration that does not parse raises ``ConfigError`` with a
readable reason; the caller keeps the last good one in force.

>>> cfg = parse_config({"version": "v1", "offers": [{"id": "cashback", "category": "cards"}],
...                     "use_cases": [{"id": "default", "policy": "thompson"}]})
>>> cfg.offer_ids, cfg.use_case("default").policy
(('cashback',), 'thompson')
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

FRAMINGS = ("neutral", "urgency", "scarcity")
CHANNELS = ("app", "web", "email", "sms", "whatsapp", "voice", "call_centre")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says why in one line."""


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


def _offer(doc: Mapping[str, Any]) -> Offer:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"offer needs a non-empty string id: {doc!r}")
    framing = doc.get("framing", "neutral")
    if framing not in FRAMINGS:
        raise ConfigError(f"offer {doc['id']!r}: framing must be one of {FRAMINGS}")
    channels = tuple(doc.get("channels", CHANNELS))
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ConfigError(f"offer {doc['id']!r}: unknown channels {sorted(unknown)}")
    value = doc.get("value", 1.0)
    if not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"offer {doc['id']!r}: value must be a number >= 0")
    known = {"id", "category", "channels", "value", "framing", "valid_from_ms", "valid_to_ms"}
    return Offer(
        id=doc["id"],
        category=str(doc.get("category", "general")),
        channels=channels,
        value=float(value),
        framing=framing,
        valid_from_ms=doc.get("valid_from_ms"),
        valid_to_ms=doc.get("valid_to_ms"),
        attributes={k: v for k, v in doc.items() if k not in known},
    )


def _use_case(doc: Mapping[str, Any], offer_ids: set[str]) -> UseCase:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"use case needs a non-empty string id: {doc!r}")
    offers = doc.get("offers")
    if offers is not None:
        missing = set(offers) - offer_ids
        if missing:
            raise ConfigError(f"use case {doc['id']!r} names unknown offers {sorted(missing)}")
        offers = tuple(offers)
    window = doc.get("attribution_window_s", 3600.0)
    if not isinstance(window, (int, float)) or window <= 0:
        raise ConfigError(f"use case {doc['id']!r}: attribution_window_s must be > 0")
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
    if not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"use case {doc['id']!r}: {name} must be a number > 0")
    return float(value)


def parse_config(doc: Mapping[str, Any]) -> EngineConfig:
    """Build an ``EngineConfig`` from its JSON document, or raise ``ConfigError``."""
    if not isinstance(doc, Mapping):
        raise ConfigError("config must be a JSON object")
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise ConfigError("config needs a non-empty string 'version'")
    offers = tuple(_offer(o) for o in doc.get("offers", ()))
    if not offers:
        raise ConfigError("config needs at least one offer")
    ids = [o.id for o in offers]
    if len(set(ids)) != len(ids):
        raise ConfigError("offer ids must be unique")
    if len({o.key for o in offers}) != len(offers):
        raise ConfigError("two offer ids hash to the same key; rename one")
    use_cases = {}
    for uc in doc.get("use_cases", ()):
        parsed = _use_case(uc, set(ids))
        if parsed.id in use_cases:
            raise ConfigError(f"use case {parsed.id!r} is defined twice")
        use_cases[parsed.id] = parsed
    if not use_cases:
        raise ConfigError("config needs at least one use case")
    return EngineConfig(version=version, offers=offers, use_cases=use_cases, raw=dict(doc))
