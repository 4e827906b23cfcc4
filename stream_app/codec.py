"""The shared first step of every versioned binary state codec: read and check the header.

>>> import struct
>>> header = struct.Struct("<BxxxI")
>>> read_header(header.pack(1, 7), header, 1, ValueError, "arm state")
(1, 7)
>>> read_header(b"\\x01", header, 1, ValueError, "arm state")
Traceback (most recent call last):
...
ValueError: arm state shorter than its header
>>> read_header(header.pack(2, 7), header, (1, 2), ValueError, "arm state")  # shared header
(2, 7)
"""

from __future__ import annotations

import struct


def read_header(data: bytes, header: struct.Struct, version: int | tuple[int, ...],
                error: type[Exception], what: str) -> tuple:
    """Unpack ``header`` from the start of ``data``; its first field must be ``version`` (or one
    of the versions given, for a codec whose versions share one header).

    Raises ``error`` with "<what> shorter than its header" or "unknown <what> version N".
    """
    if len(data) < header.size:
        raise error(f"{what} shorter than its header")
    fields = header.unpack_from(data)
    if fields[0] not in (version if isinstance(version, tuple) else (version,)):
        raise error(f"unknown {what} version {fields[0]}")
    return fields
