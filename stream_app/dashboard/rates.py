"""Response rates as the dashboard shows them: a rate with its Wilson score interval, and lift.

The Wilson interval (Wilson, 1927) stays inside [0, 1] and behaves at small counts and at rates
near 0 or 1, where the normal approximation ``p +/- z * sqrt(p (1 - p) / n)`` does not. It is a
fixed-sample interval: right for "what is the rate so far", not a licence to stop an experiment
when it excludes zero (the engine's experiment records carry anytime-valid intervals for that).

>>> lo, hi = wilson(50, 100)
>>> round(lo, 4), round(hi, 4)
(0.4038, 0.5962)
>>> wilson(0, 0) is None
True
>>> round(lift(0.12, 0.10), 6)
0.2
"""

from __future__ import annotations

import math

__all__ = ["Z95", "lift", "rate", "wilson"]

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes`` out of ``n`` (None when ``n`` is 0).

    >>> wilson(0, 10)[0], round(wilson(0, 10)[1], 4)
    (0.0, 0.2775)
    """
    if n <= 0:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def rate(successes: float, n: float) -> float | None:
    """``successes / n``, or None when nothing was counted."""
    return successes / n if n > 0 else None


def lift(group_rate: float | None, baseline_rate: float | None) -> float | None:
    """Relative lift of a group's rate over a baseline rate (0.2: responds 1.2 times as often);
    None when either is unknown or the baseline is 0."""
    if group_rate is None or not baseline_rate:
        return None
    return group_rate / baseline_rate - 1.0
