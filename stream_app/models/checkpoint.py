"""Versioned checkpoint envelope for population-level models.

River models are plain Python objects with no stable binary format of their own, so a model
checkpoint is a pickle inside an envelope::

    b"SAMC" | u8 envelope version | u32 header length | JSON header | pickle payload

The JSON header names the ``kind`` of object, the River / Python versions that wrote it and the
SHA-256 of the payload; ``loads`` refuses another kind, another envelope version or a corrupted
payload before it unpickles anything.

Pickle is accepted here, and only here, because model checkpoints are population-level state the
engine writes and reads itself (one per partition, on a changelog topic or disk it owns). It is
never used for per-customer state (``stream_app.profile`` has its own binary codec), and a
checkpoint must never be loaded from an untrusted source: unpickling can run code.

>>> blob = dumps({"weights": [1, 2]}, kind="demo")
>>> blob[:4], loads(blob, kind="demo")
(b'SAMC', {'weights': [1, 2]})
>>> header(blob)["kind"]
'demo'
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import struct
from typing import Any

import river

__all__ = ["CheckpointError", "dumps", "header", "loads"]

MAGIC = b"SAMC"
ENVELOPE_VERSION = 1
_PREFIX = struct.Struct("<4sBI")


class CheckpointError(ValueError):
    """Bytes that are not a checkpoint this code can restore; the message says why."""


def dumps(obj: Any, kind: str) -> bytes:
    """Checkpoint ``obj`` (a model or a suite of models) as bytes."""
    payload = pickle.dumps(obj, protocol=5)
    head = json.dumps(
        {
            "kind": kind,
            "river": river.__version__,
            "python": platform.python_version(),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload_bytes": len(payload),
        },
        sort_keys=True,
    ).encode()
    return _PREFIX.pack(MAGIC, ENVELOPE_VERSION, len(head)) + head + payload


def header(data: bytes) -> dict[str, Any]:
    """The envelope's JSON header, without unpickling the payload."""
    if len(data) < _PREFIX.size:
        raise CheckpointError("checkpoint shorter than its prefix")
    magic, version, n = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError("not a stream_app model checkpoint (bad magic)")
    if version != ENVELOPE_VERSION:
        raise CheckpointError(f"unknown checkpoint envelope version {version}")
    try:
        return json.loads(data[_PREFIX.size : _PREFIX.size + n])
    except ValueError:
        raise CheckpointError("checkpoint header is not JSON") from None


def loads(data: bytes, kind: str | None = None) -> Any:
    """Restore a checkpoint written by ``dumps``; ``kind`` (if given) must match."""
    head = header(data)
    if kind is not None and head.get("kind") != kind:
        raise CheckpointError(f"checkpoint holds {head.get('kind')!r}, expected {kind!r}")
    _, _, n = _PREFIX.unpack_from(data)
    payload = data[_PREFIX.size + n :]
    if hashlib.sha256(payload).hexdigest() != head.get("sha256"):
        raise CheckpointError("checkpoint payload does not match its checksum")
    return pickle.loads(payload)
