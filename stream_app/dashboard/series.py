"""Sums over event time at a resolution that coarsens as the run grows: the dashboard's charts.

``TimeBuckets`` keeps, per bucket of event time and per key, a short list of additive sums
(decisions, outcomes, responses...). Buckets are aligned to the epoch and their width is a step
of ``WIDTHS_MS``, each a multiple of the one before: when the span of event time seen no longer
fits in ``max_buckets``, the width moves up the ladder and neighbouring buckets are added
together, so nothing is lost but resolution. A live engine (one second of event time per
second) and the simulator (days of event time in a minute) both end up with a chart of at most
``max_buckets`` points. Past the widest step the oldest buckets are dropped: memory is bounded
by ``max_buckets`` times the keys, whatever timestamps arrive.

>>> tb = TimeBuckets(max_buckets=4)
>>> for ts in (0, 500, 1_000, 2_500):
...     tb.add(ts, ("decisions", "all"), (1.0,))
>>> tb.width_ms, [(start, sums[("decisions", "all")]) for start, sums in tb.rows()]
(1000, [(0, [2.0]), (1000, [1.0]), (2000, [1.0])])
>>> tb.add(7_000, ("decisions", "all"), (1.0,))  # 8 one-second buckets do not fit in 4
>>> tb.width_ms, [(start, sums[("decisions", "all")][0]) for start, sums in tb.rows()]
(5000, [(0, 4.0), (5000, 1.0)])
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

__all__ = ["WIDTHS_MS", "TimeBuckets"]

_S, _M, _H, _D = 1_000, 60_000, 3_600_000, 86_400_000
# 1 s ... 1 week; every width divides the next, so coarsening adds whole buckets together
WIDTHS_MS = (_S, 5 * _S, 10 * _S, 30 * _S, _M, 5 * _M, 10 * _M, 30 * _M, _H, 3 * _H, 6 * _H,
             12 * _H, _D, 7 * _D)


class TimeBuckets:
    """Additive sums per epoch-aligned event-time bucket and key."""

    def __init__(self, max_buckets: int = 60) -> None:
        if max_buckets < 2:
            raise ValueError("max_buckets must be at least 2")
        self.max_buckets = max_buckets
        self._step = 0
        self._buckets: dict[int, dict[Hashable, list[float]]] = {}  # bucket start -> key -> sums
        self.dropped = 0  # buckets dropped at the widest step (the oldest first)

    @property
    def width_ms(self) -> int:
        return WIDTHS_MS[self._step]

    def add(self, ts_ms: int, key: Hashable, values: Sequence[float]) -> None:
        """Add ``values`` element-wise to ``key``'s sums in the bucket of ``ts_ms`` (a key has
        the same number of sums every time)."""
        start = ts_ms - ts_ms % self.width_ms
        bucket = self._buckets.setdefault(start, {})
        sums = bucket.get(key)
        if sums is None:
            bucket[key] = list(values)
        else:
            for i, v in enumerate(values):
                sums[i] += v
        self._fit()

    def _fit(self) -> None:
        while self._span() > self.max_buckets:
            if self._step == len(WIDTHS_MS) - 1:
                self.dropped += 1
                del self._buckets[min(self._buckets)]
                continue
            self._step += 1
            width = self.width_ms
            coarse: dict[int, dict[Hashable, list[float]]] = {}
            for start in sorted(self._buckets):
                into = coarse.setdefault(start - start % width, {})
                for key, sums in self._buckets[start].items():
                    have = into.get(key)
                    into[key] = sums if have is None else [a + b for a, b in zip(have, sums)]
            self._buckets = coarse

    def _span(self) -> int:
        """Buckets from the oldest to the newest, the empty ones between included."""
        if not self._buckets:
            return 0
        return (max(self._buckets) - min(self._buckets)) // self.width_ms + 1

    def rows(self) -> Iterator[tuple[int, dict[Hashable, list[float]]]]:
        """``(bucket start, {key: sums})`` from the oldest bucket to the newest, every bucket
        in between included (empty ones as ``{}``)."""
        if not self._buckets:
            return
        width = self.width_ms
        for start in range(min(self._buckets), max(self._buckets) + width, width):
            yield start, self._buckets.get(start, {})
