"""The topic contract: JSON Schemas in ``schemas/`` are the single source of truth.

Incoming bytes are size-checked, parsed with orjson and validated with the compiled schema of
their topic. Anything wrong raises ``InvalidMessage`` whose text is the one-line reason that goes
into ``dead-letter``. Every number of an input message is bounded by its schema: ``ts`` is an
integer of epoch milliseconds before 2100, amounts and values are finite and at most 1e9 in size,
free-form numbers (request context, interaction attributes) at most 1e15; orjson refuses NaN and
infinities, so nothing non-finite gets past ``decode``.

>>> contract = Contract.load()
>>> contract.decode("outcomes", b'{"outcome_id":"o1","decision_id":"d1","customer_id":"c1",'
...                 b'"ts":1,"type":"clicked"}')["type"]
'clicked'
>>> contract.decode("outcomes", b'{"outcome_id":"o1"}')
Traceback (most recent call last):
...
stream_app.schemas.InvalidMessage: schema violation (outcomes v1): data must contain ['customer_id', 'decision_id', 'ts', 'type'] properties
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

from stream_app.settings import PROJECT_ROOT

SCHEMA_DIR = PROJECT_ROOT / "schemas"
VERSION = 1


class InvalidMessage(ValueError):
    """A message that cannot be processed; ``str(exc)`` is the reason, on one line."""


@dataclass(frozen=True)
class Contract:
    schemas: dict[str, dict[str, Any]]
    validators: dict[str, Callable[[Any], Any]]
    max_bytes: int = 64 * 1024

    @classmethod
    def load(cls, directory: Path = SCHEMA_DIR, max_bytes: int = 64 * 1024) -> Contract:
        schemas: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob(f"*.v{VERSION}.json")):
            schemas[path.name.removesuffix(f".v{VERSION}.json")] = orjson.loads(path.read_bytes())
        validators = {name: fastjsonschema.compile(s) for name, s in schemas.items()}
        return cls(schemas, validators, max_bytes)

    def topics(self) -> list[str]:
        return sorted(self.schemas)

    def validate(self, topic: str, message: Any) -> Any:
        try:
            return self.validators[topic](message)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidMessage(f"schema violation ({topic} v{VERSION}): {exc.message}") from None
        except KeyError:
            raise InvalidMessage(f"no schema for topic {topic!r}") from None

    def decode(self, topic: str, raw: bytes | None) -> dict[str, Any]:
        """Bytes from ``topic`` -> a valid message dict, or ``InvalidMessage``."""
        if raw is None:
            raise InvalidMessage("empty message (null value)")
        if len(raw) > self.max_bytes:
            raise InvalidMessage(f"message too large: {len(raw)} bytes > {self.max_bytes}")
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidMessage(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise InvalidMessage(f"not a JSON object: {type(message).__name__}")
        self.validate(topic, message)
        if type(message.get("ts")) is float:  # 1.764e12 is an integer to JSON Schema: make it one
            message["ts"] = int(message["ts"])
        return message
