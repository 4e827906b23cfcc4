"""``stream-app export TOPIC --out FILE.jsonl``: a topic range as JSON Lines, one message a line
(the record format is in ``ranges.py``). Reads by partition assignment: no consumer group joins,
no offsets are committed, the topic is left as it was.

``TOPIC`` is a contract name (``decisions``), which gets the configured topic prefix, or any full
topic name that exists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO

import orjson

from stream_app.settings import Settings
from stream_app.tools.ranges import RangeError, TopicRange, read_range


def resolve_topic(settings: Settings, name: str) -> str:
    """A contract name gets the prefix of the settings; anything else is taken as it is."""
    from stream_app.kafka.topics import CONTRACT

    return settings.topic(name) if name in {s.name for s in CONTRACT} else name


def export(settings: Settings, topic: str, rng: TopicRange, out: Path | None) -> int:
    """Write the range to ``out`` (stdout if None); returns the number of records."""
    if out is None:
        return _write(settings, topic, rng, sys.stdout.buffer)
    with open(out, "wb") as fh:
        return _write(settings, topic, rng, fh)


def _write(settings: Settings, topic: str, rng: TopicRange, fh: IO[bytes]) -> int:
    n = 0
    for rec in read_range(settings.bootstrap_servers, topic, rng):
        fh.write(orjson.dumps(rec) + b"\n")
        n += 1
    fh.flush()
    return n


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cli import CliError

    topic = resolve_topic(settings, args.topic)
    try:
        rng = TopicRange.from_args(args)
        out = Path(args.out) if args.out and args.out != "-" else None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
        n = export(settings, topic, rng, out)
    except RangeError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    if out is not None:
        print(f"exported {n} messages of {topic} to {out}")
    return 0
