"""A tiny, safe condition language for eligibility: one field, one operator, one value.

A condition is JSON, never code: ``{"field": "context.age", "op": ">=", "value": 18}``. The field is
a dotted path into what is known at request time: ``context.<key>`` (the request's context),
``profile.<key>`` (the customer's profile summary) or ``request.<key>`` (``channel``,
``timezone``, ``use_case``...). Operators: ``==  !=  <  <=  >  >=  in  not_in  exists``.

Conditions fail closed: a missing field, a ``None`` value or values that cannot be compared make
the condition false (``exists`` with ``"value": false`` is the one way to ask for absence).

>>> adult = parse_condition({"field": "context.age", "op": ">=", "value": 18})
>>> adult.holds({"context": {"age": 30}}), adult.holds({"context": {"age": 12}}), adult.holds({})
(True, False, False)
>>> parse_condition({"field": "profile.segment", "op": "in", "value": ["gold"]}).describe()
"profile.segment in ['gold']"
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from stream_app.core.catalogue import ConfigError

__all__ = ["Condition", "parse_condition", "parse_conditions", "lookup", "MISSING", "ROOTS"]

ROOTS = ("context", "profile", "request")
MISSING: Any = object()

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda x, v: x in v,
    "not_in": lambda x, v: x not in v,
}
OPS = (*_COMPARE, "exists")


def lookup(facts: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in nested mappings, or ``MISSING``."""
    node: Any = facts
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any = None

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.field.split("."))

    def holds(self, facts: Mapping[str, Any]) -> bool:
        """True when the condition is met by ``facts`` (``{"context": ..., "profile": ...}``)."""
        found = lookup(facts, self.path)
        present = found is not MISSING and found is not None
        if self.op == "exists":
            return present == bool(self.value)
        if not present:
            return False
        if isinstance(found, bool) != isinstance(self.value, bool) and self.op not in (
            "in",
            "not_in",
        ):
            return False  # True == 1 in Python; a flag never equals a number here
        try:
            return bool(_COMPARE[self.op](found, self.value))
        except TypeError:
            return False

    def describe(self) -> str:
        if self.op == "exists":
            return f"{self.field} exists" if self.value else f"{self.field} absent"
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.field} {self.op} {value!r}"


def parse_condition(doc: Mapping[str, Any]) -> Condition:
    """One condition from JSON, or ``ConfigError`` naming what is wrong."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"condition must be an object: {doc!r}")
    unknown = set(doc) - {"field", "op", "value"}
    if unknown:
        raise ConfigError(f"condition has unknown keys {sorted(unknown)}")
    field, op = doc.get("field"), doc.get("op")
    if not isinstance(field, str) or field.split(".")[0] not in ROOTS or "." not in field:
        raise ConfigError(f"condition field must be one of {ROOTS} + '.<key>': {field!r}")
    if op not in OPS:
        raise ConfigError(f"condition op must be one of {OPS}: {op!r}")
    value = doc.get("value", True if op == "exists" else MISSING)
    if value is MISSING:
        raise ConfigError(f"condition on {field} needs a value")
    if op in ("in", "not_in"):
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"condition {field} {op} needs a list value")
        value = tuple(value)
    elif op == "exists" and not isinstance(value, bool):
        raise ConfigError(f"condition {field} exists takes a boolean value")
    elif isinstance(value, (list, dict)):
        raise ConfigError(f"condition {field} {op} needs a scalar value")
    return Condition(field, op, value)


def parse_conditions(docs: Any, where: str) -> tuple[Condition, ...]:
    """A list of conditions (all must hold)."""
    if not isinstance(docs, Sequence) or isinstance(docs, (str, bytes)):
        raise ConfigError(f"{where} must be a list of conditions")
    return tuple(parse_condition(d) for d in docs)
