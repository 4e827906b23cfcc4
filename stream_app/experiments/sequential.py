"""Anytime-valid intervals: confidence sequences that may be read after every single update.

A fixed-sample interval (mean ± 1.96 se) is only valid when looked at once. Reading it after
every outcome and stopping at the first "significant" look inflates false positives far above
5%. A *confidence sequence* covers the truth at every time simultaneously with probability
``1 - alpha``, so a dashboard refreshed on every event keeps its error rate.

We use the two-sided normal-mixture boundary (Robbins; Howard, Ramdas, McAuliffe & Sekhon 2021):
for a standardised sum with intrinsic time ``v``,

    |S_v| <= b(v) = sqrt((v + rho) * log((v + rho) / (rho * alpha**2)))   for all v

with probability at least ``1 - alpha``; the plug-in version with the running standard error is
the asymptotic confidence sequence of Waudby-Smith et al. (2021, "Time-uniform central limit
theory"), equivalently the mixture SPRT of Johari et al. for a difference of means. The half-width
is ``se * b(v) / sqrt(v)``; ``rho`` is tuned so the sequence is tightest at ``v = plan_n`` and any
choice keeps it valid. Before ``min_n`` observations per arm no claim is made (infinite interval).

``mean_cs`` bounds one arm's mean, ``diff_cs`` the difference between two arms. Both work on
arrays of any shape (a whole simulated history at once), which is what the tests exploit.

The price of peeking at will, at the planned size, relative to a one-look interval:

>>> round(float(cs_half_width(1.0, 10_000, 0.05, 10_000) / 1.96), 2)  # vs one look
1.55
>>> b = diff_cs(2000, 300, None, 2000, 200, None, alpha=0.05, plan_n=2000, binary=True)
>>> round(float(b.estimate), 3), bool(b.low > 0)
(0.05, True)
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

__all__ = ["Bounds", "boundary", "cs_half_width", "normal_half_width", "mean_cs", "diff_cs",
           "rate_variance", "sample_variance"]  # fmt: skip


class Bounds(NamedTuple):
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


@lru_cache(maxsize=64)
def _rho_ratio(alpha: float) -> float:
    """``rho / v*`` minimising ``b(v*)``; depends on alpha only."""
    x = np.logspace(-4, 2, 6001)
    width = (1 + x) * (np.log((1 + x) / x) - 2 * np.log(alpha))
    return float(x[np.argmin(width)])


def boundary(v: np.ndarray | float, alpha: float, rho: float) -> np.ndarray:
    """The normal-mixture boundary ``b(v)`` on a standardised sum (two-sided, level alpha)."""
    v = np.asarray(v, np.float64)
    return np.sqrt((v + rho) * np.log((v + rho) / (rho * alpha**2)))


def cs_half_width(se, v, alpha: float, plan_n: float) -> np.ndarray:
    """Half-width of the confidence sequence for an estimate with standard error ``se`` at
    intrinsic time (effective sample size) ``v``; tightest at ``v = plan_n``."""
    v = np.asarray(v, np.float64)
    rho = _rho_ratio(alpha) * plan_n
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.asarray(se, np.float64) * boundary(v, alpha, rho) / np.sqrt(v)
    return np.where(v > 0, half, np.inf)


def normal_half_width(se, alpha: float) -> np.ndarray:
    """Half-width of the usual fixed-sample normal interval (valid for one look only)."""
    return NormalDist().inv_cdf(1 - alpha / 2) * np.asarray(se, np.float64)


def rate_variance(n, total) -> np.ndarray:
    """Variance of a [0, 1] outcome bounded by ``p (1 - p)``, with p shrunk toward 1/2 (never 0)."""
    p = (np.asarray(total, np.float64) + 0.5) / (np.asarray(n, np.float64) + 1.0)
    return p * (1 - p)


def sample_variance(n, total, total_sq) -> np.ndarray:
    n = np.asarray(n, np.float64)
    total = np.asarray(total, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (np.asarray(total_sq, np.float64) - total * total / n) / (n - 1)
    return np.where(n > 1, np.maximum(var, 0.0), np.inf)


def _variance(n, total, total_sq, binary: bool) -> np.ndarray:
    return rate_variance(n, total) if binary else sample_variance(n, total, total_sq)


def mean_cs(n, total, total_sq=None, *, alpha: float, plan_n: float, min_n: int = 30,
            binary: bool = False) -> Bounds:  # fmt: skip
    """Confidence sequence for a mean from running ``n``, sum and sum of squares.

    ``binary=True`` is for outcomes in [0, 1] (responses, guardrail events): the sequence is the
    Wilson-style set of rates ``p`` with ``|mean - p| <= c sqrt(p (1 - p) / n)``, which stays
    honest for rare events where a plug-in variance would be near zero; ``total_sq`` is unused.
    """
    n = np.asarray(n, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.asarray(total, np.float64) / n
        if binary:
            c = cs_half_width(1.0, n, alpha, plan_n)
            shrink = 1.0 + c * c / n
            centre = (mean + c * c / (2 * n)) / shrink
            spread = np.clip(mean * (1 - mean), 0, None) / n + c * c / (4 * n * n)
            half = c / shrink * np.sqrt(spread)
            low, high = centre - half, centre + half
        else:
            half = cs_half_width(np.sqrt(sample_variance(n, total, total_sq) / n), n, alpha, plan_n)
            low, high = mean - half, mean + half
    ready = n >= min_n
    return Bounds(mean, np.where(ready, low, -np.inf), np.where(ready, high, np.inf))


def diff_cs(n_t, total_t, total_sq_t, n_c, total_c, total_sq_c, *, alpha: float, plan_n: float,
            min_n: int = 30, binary: bool = False, events_t=None, events_c=None,
            min_events: int = 0) -> Bounds:  # fmt: skip
    """Confidence sequence for ``mean_t - mean_c`` (treatment minus baseline).

    ``plan_n`` is the planned number of observations *per arm*; the intrinsic time of a
    difference is the effective size ``n_t n_c / (n_t + n_c)`` (half of ``n`` for equal arms).
    ``binary=True`` bounds each variance by ``p (1 - p)`` with ``p`` shrunk toward 1/2. For a
    skewed metric (revenue: mostly zeros, a few large values) pass the counts of non-zero
    observations as ``events_*``: no claim is made before each arm has ``min_events`` of them,
    because until then the sample variance badly understates the truth.
    """
    n_t = np.asarray(n_t, np.float64)
    n_c = np.asarray(n_c, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.asarray(total_t, np.float64) / n_t - np.asarray(total_c, np.float64) / n_c
        var = _variance(n_t, total_t, total_sq_t, binary) / n_t + _variance(
            n_c, total_c, total_sq_c, binary
        ) / n_c
        v = n_t * n_c / (n_t + n_c)
    half = cs_half_width(np.sqrt(var), v, alpha, plan_n / 2.0)
    ready = (n_t >= min_n) & (n_c >= min_n)
    if min_events:
        ready &= (np.asarray(events_t) >= min_events) & (np.asarray(events_c) >= min_events)
    half = np.where(ready, half, np.inf)
    return Bounds(diff, diff - half, diff + half)
