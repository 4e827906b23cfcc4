"""Dead letters: a message that could not be processed, unchanged, with the reason and its source.

A dead letter always fits a Kafka record: a message too large to be kept whole (its base64 would
pass the broker's limit, and a dead letter that cannot be sent is a message lost without a trace)
keeps its first ``MAX_KEPT_VALUE_BYTES`` bytes, with ``truncated: true``; every dead letter states
the original's size and SHA-256, so a truncated one still names exactly what was refused.

>>> dl = dead_letter("not JSON", topic="outcomes", partition=1, offset=7, timestamp=5,
...                  key=b"c1", value=b"oops", failed_at=9)
>>> dl["reason"], dl["source"]["offset"], restore_value(dl), dl["value_bytes"], dl["truncated"]
('not JSON', 7, b'oops', 4, False)
>>> big = dead_letter("too large", topic="outcomes", partition=1, offset=8, timestamp=5,
...                   key=b"c1", value=b"x" * 2_000_000, failed_at=9)
>>> big["truncated"], big["value_bytes"], len(restore_prefix(big)) == MAX_KEPT_VALUE_BYTES
(True, 2000000, True)
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

__all__ = ["MAX_KEPT_KEY_BYTES", "MAX_KEPT_VALUE_BYTES", "dead_letter", "letter_key",
           "restore_prefix", "restore_value"]

# What a dead letter keeps of the original: ~350 KB of base64 at most, far below the broker's
# and librdkafka's default 1 MB limit whatever the reason and source add.
MAX_KEPT_VALUE_BYTES = 256 * 1024
MAX_KEPT_KEY_BYTES = 1024
MAX_REASON_CHARS = 1000


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
    """The ``dead-letter`` record of one message (schema ``dead-letter.v1.json``)."""
    value = value or b""
    truncated = len(value) > MAX_KEPT_VALUE_BYTES
    letter = {
        "schema_version": 1,
        "reason": " ".join(reason.split())[:MAX_REASON_CHARS] or "unknown error",
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp},
        "key_b64": None,
        "value_b64": base64.b64encode(value[:MAX_KEPT_VALUE_BYTES]).decode(),
        "value_bytes": len(value),
        "value_sha256": hashlib.sha256(value).hexdigest(),
        "truncated": truncated,
        "failed_at": failed_at,
    }
    if key is not None:
        letter["key_b64"] = base64.b64encode(key[:MAX_KEPT_KEY_BYTES]).decode()
        if len(key) > MAX_KEPT_KEY_BYTES:
            letter["truncated"] = True
            letter["key_bytes"] = len(key)
            letter["key_sha256"] = hashlib.sha256(key).hexdigest()
    return letter


def letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key to send a dead letter under: the original's, cut to ``MAX_KEPT_KEY_BYTES``
    (a key is part of the record's size too)."""
    return key if key is None or len(key) <= MAX_KEPT_KEY_BYTES else key[:MAX_KEPT_KEY_BYTES]


def restore_value(letter: dict[str, Any]) -> bytes:
    """The original message bytes, for inspection or re-publishing; ``ValueError`` when the
    dead letter kept only a prefix of them (``restore_prefix``)."""
    kept = restore_prefix(letter)
    size = letter.get("value_bytes", len(kept))
    if len(kept) != size:
        raise ValueError(f"the dead letter kept the first {len(kept)} of {size} bytes; the "
                         f"original's SHA-256 is {letter.get('value_sha256')}")
    return kept


def restore_prefix(letter: dict[str, Any]) -> bytes:
    """What the dead letter kept of the original message (all of it unless ``truncated``)."""
    return base64.b64decode(letter["value_b64"])
