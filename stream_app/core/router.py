"""The algorithm router: which policy answers this request, and why.

The engine configuration's top-level ``routing`` is an ordered list of rules. A rule matches on
any subset of ``use_case``, ``segment``, ``channel`` and ``objective``; a value may be one string
or a list of strings (any of them). The first rule that matches wins; when none does, the use
case's own ``policy`` and ``params`` answer. A rule with an empty ``when`` matches everything.

A rule's ``params`` are the policy's constructor settings as given (the use case's ``params`` are
not merged in). Every rule is checked when the configuration is parsed - unknown condition keys,
unknown channels, unknown use cases, unknown policies or policy parameters raise ``ConfigError`` -
so a bad routing table is rejected as a whole and the last good configuration stays in force.

>>> from stream_app.core.catalogue import parse_config
>>> cfg = parse_config({"version": "v1", "offers": [{"id": "cashback"}],
...     "use_cases": [{"id": "default", "policy": "thompson"}],
...     "routing": [{"when": {"segment": "new"}, "policy": "ucb", "params": {"c": 2.0}},
...                 {"when": {"channel": ["sms", "whatsapp"]}, "policy": "risk_aversion"}]})
>>> router = Router.from_config(cfg)
>>> route = router.route("default", segment="loyal", channel="sms")
>>> route.policy, route.because
('risk_aversion', 'rule 2: channel=sms')
>>> router.route("default", segment="new").params["c"]
2.0
>>> router.route("default", segment="loyal", channel="app").because
'use case default'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from stream_app.core.catalogue import CHANNELS, ConfigError, EngineConfig, UseCase
from stream_app.policies.registry import make_policy

__all__ = ["CONDITIONS", "Route", "RoutingRule", "Router"]

CONDITIONS = ("use_case", "segment", "channel", "objective")


@dataclass(frozen=True, slots=True)
class Route:
    """The policy to run for one request, its settings, and a short reason for the decision log."""

    policy: str
    params: Mapping[str, Any]
    because: str


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One parsed rule: ``when`` maps a condition to the tuple of values it accepts."""

    number: int  # 1-based position in the routing list, as people count
    when: Mapping[str, tuple[str, ...]]
    policy: str
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def matches(self, request: Mapping[str, str | None]) -> bool:
        return all(request.get(key) in values for key, values in self.when.items())

    def reason(self, request: Mapping[str, str | None]) -> str:
        label = f"rule {self.number}" + (f" ({self.name})" if self.name else "")
        matched = ", ".join(f"{key}={request[key]}" for key in CONDITIONS if key in self.when)
        return f"{label}: {matched or 'always'}"


class Router:
    """Ordered routing rules plus the use cases they fall back to. Immutable once built."""

    def __init__(self, rules: Iterable[RoutingRule], use_cases: Mapping[str, UseCase]) -> None:
        self.rules: tuple[RoutingRule, ...] = tuple(rules)
        self.use_cases: Mapping[str, UseCase] = MappingProxyType(dict(use_cases))

    @classmethod
    def from_config(cls, config: EngineConfig) -> Router:
        """Router for a parsed configuration (its raw document's ``routing``, default none)."""
        return cls.parse(config.raw.get("routing", ()), config.use_cases)

    @classmethod
    def parse(cls, routing: Any, use_cases: Mapping[str, UseCase]) -> Router:
        """Parse the ``routing`` JSON list, or raise ``ConfigError`` saying what is wrong."""
        if routing is None:
            routing = ()
        if not isinstance(routing, (list, tuple)):
            raise ConfigError("routing must be a list of rules")
        return cls((_rule(i, doc, use_cases) for i, doc in enumerate(routing, 1)), use_cases)

    def route(
        self,
        use_case: str,
        *,
        segment: str | None = None,
        channel: str | None = None,
        objective: str | None = None,
    ) -> Route:
        """The first matching rule's policy, else the use case's own; O(rules).

        A condition on a value the request does not have (``None``) does not match. An unknown
        use case raises ``ConfigError``, as ``EngineConfig.use_case`` does.
        """
        uc = self.use_cases.get(use_case)
        if uc is None:
            raise ConfigError(f"unknown use case {use_case!r}")
        request = {"use_case": use_case, "segment": segment, "channel": channel,
                   "objective": objective}
        for rule in self.rules:
            if rule.matches(request):
                return Route(rule.policy, rule.params, rule.reason(request))
        return Route(uc.policy, uc.params, f"use case {uc.id}")


def _values(key: str, value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{where}: {key} must be a string or a non-empty list of strings")
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where}: {key} values must be non-empty strings")
    return tuple(values)


def _rule(number: int, doc: Any, use_cases: Mapping[str, UseCase]) -> RoutingRule:
    where = f"routing rule {number}"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where} must be an object")
    unknown = set(doc) - {"when", "policy", "params", "name"}
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)}")
    when_doc = doc.get("when", {})
    if not isinstance(when_doc, Mapping):
        raise ConfigError(f"{where}: when must be an object")
    bad = set(when_doc) - set(CONDITIONS)
    if bad:
        raise ConfigError(f"{where}: cannot match on {sorted(bad)}; known: {', '.join(CONDITIONS)}")
    when = {key: _values(key, when_doc[key], where) for key in CONDITIONS if key in when_doc}
    unknown_channels = sorted(set(when.get("channel", ())) - set(CHANNELS))
    if unknown_channels:
        raise ConfigError(f"{where}: unknown channels {unknown_channels}")
    unknown_use_cases = sorted(set(when.get("use_case", ())) - set(use_cases))
    if unknown_use_cases:
        raise ConfigError(f"{where}: unknown use cases {unknown_use_cases}")
    policy, params, name = doc.get("policy"), doc.get("params", {}), doc.get("name")
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"{where}: policy must be a non-empty string")
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: params must be an object")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}: name must be a string")
    try:
        make_policy(policy, params)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return RoutingRule(number, MappingProxyType(when), policy, MappingProxyType(dict(params)), name)
