"""Python's cyclic garbage collector in the worker: its pauses measured, and tuned for latency.

The collector stops the event loop while it runs. A full (generation 2) collection walks every
tracked container object: the worker's long-lived ones (Faust, aiokafka, River's trees and
statistics: ~10^5 objects) dominate it, so each one costs tens to hundreds of ms, and the decisions
waiting meanwhile see it as tail latency. With CPython's default thresholds (700, 10, 10) a young
collection runs every 700 net container allocations, a few times per event.

``tune`` applies the two standard remedies: ``gc.freeze()`` once start-up is done (the objects
alive then move to a permanent generation that no collection walks; they are still freed by
reference counting, only reference cycles among them would stay) and a larger first threshold
(``STREAM_APP_GC_THRESHOLD``; fewer, slightly longer young collections, and the full ones, which
CPython starts after a number of young ones, with them). ``Pauses`` measures what the collector
costs either way, for the memory report and a warning on a pause over ``warn_ms``.

>>> pauses = Pauses(warn_ms=1e9)
>>> pauses.install(); _ = gc.collect(); pauses.uninstall()
>>> report = pauses.report()
>>> report["gc_collections"][2] >= 1 and report["gc_pause_max_ms"] >= 0.0
True
>>> pauses.report()["gc_collections"]  # counts since the previous report
[0, 0, 0]
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

__all__ = ["Pauses", "tune"]


def tune(threshold0: int, freeze: bool = True) -> dict[str, Any]:
    """Set the young generation's threshold (0: keep CPython's) and, with ``freeze``, freeze
    what is alive now; returns what was done, for the log."""
    if threshold0 > 0:
        _, t1, t2 = gc.get_threshold()
        gc.set_threshold(threshold0, t1, t2)
    if freeze:
        gc.collect()  # what start-up left as garbage is not frozen with the rest
        gc.freeze()
    return {"frozen_objects": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}


class Pauses:
    """Collections and their pauses per generation since the last ``report``."""

    def __init__(self, warn_ms: float = 100.0,
                 on_long_pause: Callable[[int, float], None] | None = None) -> None:
        self.warn_ms, self.on_long_pause = warn_ms, on_long_pause
        self._started = 0.0
        self._reset()

    def _reset(self) -> None:
        self._count, self._ms = [0, 0, 0], [0.0, 0.0, 0.0]
        self._max_ms = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000.0
        generation = info["generation"]
        self._count[generation] += 1
        self._ms[generation] += ms
        self._max_ms = max(self._max_ms, ms)
        if ms >= self.warn_ms and self.on_long_pause is not None:
            self.on_long_pause(generation, ms)

    def report(self) -> dict[str, Any]:
        out = {"gc_collections": list(self._count),
               "gc_pause_ms": [round(ms, 1) for ms in self._ms],
               "gc_pause_max_ms": round(self._max_ms, 1)}
        self._reset()
        return out
