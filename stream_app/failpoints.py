"""Failpoints: the worker kills itself (SIGKILL) at a named point of its write path, so a crash
test can stop it exactly where a crash does harm instead of at a random moment.

``STREAM_APP_FAIL_AT=<point>:<input topic>`` (the topic without the prefix; empty: none, the
default) names the point and the input whose records must be in play when it is reached:

- ``processed``: a batch of that input was processed, its state handed to the tables and its
  outputs to the producer, nothing committed yet;
- ``committing``: a commit that covers that input is about to be committed (exactly once: the
  transaction was cut; at least once: the outputs were acknowledged, the offsets not committed);
- ``committed`` (exactly once): that transaction was committed, and its rows are not yet in
  the local stores.

The point fires once, at its first pass: the process dies as if the machine had gone.

>>> Failpoint.parse("")
>>> Failpoint.parse("committed:outcomes")
Failpoint(point='committed', source='outcomes')
>>> Failpoint.parse("later:outcomes")
Traceback (most recent call last):
...
ValueError: STREAM_APP_FAIL_AT: 'later:outcomes' is not <point>:<input topic>, point one of processed, committing, committed
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["POINTS", "Failpoint"]

POINTS = ("processed", "committing", "committed")


@dataclass(frozen=True, slots=True)
class Failpoint:
    point: str
    source: str

    @classmethod
    def parse(cls, spec: str, topic: Callable[[str], str] = str) -> Failpoint | None:
        """The failpoint ``spec`` names (None for none), its input named by ``topic(name)``."""
        if not spec:
            return None
        point, _, source = spec.partition(":")
        if point not in POINTS or not source:
            raise ValueError(f"STREAM_APP_FAIL_AT: {spec!r} is not <point>:<input topic>, "
                             f"point one of {', '.join(POINTS)}")
        return cls(point, topic(source))

    def reached(self, point: str, sources: object) -> None:
        """Die here if this is the point and ``sources`` (input topic names) hold the
        failpoint's input."""
        if point == self.point and self.source in sources:
            os.kill(os.getpid(), signal.SIGKILL)
