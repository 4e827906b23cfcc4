"""Pseudonymised customer ids: a keyed hash in place of the customer id on the topics that leave
the engine for analytics.

With a key set (``STREAM_APP_PSEUDONYMISE_KEY``, or ``STREAM_APP_PSEUDONYMISE_KEY_FILE`` naming
a file that holds it), ``customer-scores`` (its key and ``customer_id``), the outcome rows of
``delta-metrics`` and ``erasure-audit`` carry ``ps-`` + the first 128 bits of
HMAC-SHA256(key, customer id), in hex (35 characters). The same id always gives the same
pseudonym, so analytics can still count and join per customer; without the key nobody can tell
which customer it is, nor test a guessed id. 128 bits make a collision between two customers
negligible (about n² / 2¹²⁹ for n customers).

``decisions`` keep the real id: the channel that delivers the offer needs it. ``dead-letter``
keeps the original bytes (to reprocess them). The input topics are the producers'.

Changing the key gives every customer a new pseudonym: the ``customer-scores`` records written
under the old one are no longer reached by an erasure (its tombstone names the new pseudonym);
erase before a key change, or empty the topic.

>>> pseudonym = Pseudonyms(b"secret")
>>> p = pseudonym("c-42")
>>> p == pseudonym("c-42"), p.startswith("ps-"), len(p), p == Pseudonyms(b"other")("c-42")
(True, True, 35, False)
>>> Pseudonyms(None)("c-42"), Pseudonyms(None).enabled
('c-42', False)
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PREFIX", "Pseudonyms"]

PREFIX = "ps-"
DIGEST_BYTES = 16  # HMAC-SHA256 truncated to 128 bits


class Pseudonyms:
    """Customer id -> pseudonym under ``key``; the id itself when there is no key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None) -> None:
        if key is not None and not key:
            raise ValueError("a pseudonymisation key must not be empty")
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, customer_id: str) -> str:
        if self._key is None:
            return customer_id
        digest = hmac.new(self._key, customer_id.encode("utf-8"), hashlib.sha256).digest()
        return PREFIX + digest[:DIGEST_BYTES].hex()

    def __repr__(self) -> str:  # never the key
        return f"Pseudonyms(enabled={self.enabled})"
