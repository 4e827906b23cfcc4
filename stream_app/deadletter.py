"""Dead letters: a message that could not be processed, unchanged, with the reason and its source.

>>> dl = dead_letter("not JSON", topic="outcomes", partition=1, offset=7, timestamp=5,
...                  key=b"c1", value=b"oops", failed_at=9)
>>> dl["reason"], dl["source"]["offset"], restore_value(dl)
('not JSON', 7, b'oops')
"""

from __future__ import annotations

import base64
from typing import Any


def dead_letter(
    reason: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    key: bytes | None,
    value: bytes | None,
    failed_at: int,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "reason": " ".join(reason.split())[:1000] or "unknown error",
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp},
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value or b"").decode(),
        "failed_at": failed_at,
    }


def restore_value(letter: dict[str, Any]) -> bytes:
    """The original message bytes, for inspection or re-publishing."""
    return base64.b64decode(letter["value_b64"])
