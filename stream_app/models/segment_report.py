"""Segment performance: how many customers each segment holds and how they answer offers.

Sizes are exact current memberships (within a partition): each assignment moves a customer from
the segment on their profile to the new one. Outcomes add shown / responded / value to the
segment of the customer at outcome time. Rows are JSON-ready records of the ``delta-metrics``
topic (``kind: "segment"``).

>>> r = SegmentReport(n_segments=2)
>>> r.move(-1, 0); r.move(-1, 0); r.move(0, 1)
>>> r.outcome(0, reward=1.0, value=12.5); r.outcome(0, reward=0.0)
>>> row = r.rows(ts=0)[0]
>>> row["size"], row["shown"], row["response_rate"], row["value_per_contact"]
(1, 2.0, 0.5, 6.25)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SegmentReport"]


class SegmentReport:
    """Counters per segment: current size, outcomes shown, responses and value realised."""

    def __init__(self, n_segments: int) -> None:
        self.n_segments = n_segments
        self._size = np.zeros(n_segments, np.int64)
        self._shown = np.zeros(n_segments)
        self._responded = np.zeros(n_segments)
        self._value = np.zeros(n_segments)

    def move(self, old: int, new: int) -> None:
        """A customer's segment changed from ``old`` to ``new`` (-1: none)."""
        if old == new:
            return
        if 0 <= old < self.n_segments:
            self._size[old] = max(self._size[old] - 1, 0)
        if 0 <= new < self.n_segments:
            self._size[new] += 1

    def outcome(self, segment: int, reward: float, value: float = 0.0) -> None:
        """One answered (``reward`` 1) or unanswered (0) offer of a customer in ``segment``."""
        if 0 <= segment < self.n_segments:
            self._shown[segment] += 1.0
            self._responded[segment] += reward
            self._value[segment] += value

    def rows(self, ts: int) -> list[dict[str, Any]]:
        """One JSON-ready record per segment."""
        out = []
        for j in range(self.n_segments):
            shown = float(self._shown[j])
            out.append({
                "kind": "segment", "ts": int(ts), "segment": j, "size": int(self._size[j]),
                "shown": shown, "responded": float(self._responded[j]),
                "response_rate": float(self._responded[j]) / shown if shown else None,
                "value": float(self._value[j]),
                "value_per_contact": float(self._value[j]) / shown if shown else None,
            })  # fmt: skip
        return out
