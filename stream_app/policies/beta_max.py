"""P(arm i has the largest draw) for independent Beta arms, by numerical integration.

Thompson sampling picks arm ``i`` with probability

    P_i = integral  f_i(x) * prod_{j != i} F_j(x)  dx

(``f`` / ``F``: Beta density / CDF). There is no closed form beyond two arms; this evaluates it
deterministically, vectorised over the arms, in the logit domain ``y = log(x / (1 - x))`` where
every Beta density is smooth and bell-shaped (log-concave, no end-point singularity even for
``alpha`` or ``beta`` below 1):

- the grid is ``uniform`` points over ``[lo, hi]`` plus ``per_arm`` points over each arm's own
  ``mean +- z sd`` in the logit domain (mean ``log(alpha / beta)``, sd ``sqrt(1/alpha + 1/beta)``),
  so a sharp posterior is resolved as well as a flat one; ``lo`` is the largest of the arms'
  ``mean - z sd`` (the winning draw is almost never below it), ``hi`` the largest ``mean + z sd``;
- each CDF is exact at ``lo`` and ``hi`` (``scipy.special.betainc``) and in between the
  cumulative integral of the density (trapezoid with end corrections from the density's
  analytic derivative, fourth order), scaled to the exact mass between ``lo`` and ``hi``;
- ``P_i = sum over cells of dF_i * mean of prod_{j != i} F_j`` plus the mass above ``hi``; the
  result is normalised to sum to one;
- identical arms (the offers a customer has not seen yet share their prior) are integrated once,
  and ``prod_{j != i} F_j`` is the product over all arms divided by ``F_i``: the cost is in the
  number of numpy calls as much as in their size, and this keeps both small.

Against a fine-grid reference the error is below 3e-3 (absolute) over posteriors from
``alpha = 0.1`` to thousands of observations (``tests/unit/test_policies_thompson.py`` checks it
against a large Monte Carlo); a 512-draw Monte Carlo estimate has a standard error of up to 0.022.
The cost is numpy work over distinct arms x grid points (the grid grows with the arms): about
0.2 ms for 20 arms, against about 0.7 ms for drawing 512 x 20 Beta variates.

>>> p = win_probabilities(np.array([2.0, 2.0]), np.array([8.0, 8.0]))
>>> [round(float(v), 3) for v in p]
[0.5, 0.5]
>>> p = win_probabilities(np.array([3.0, 1.0]), np.array([1.0, 1.0]))  # exactly 3/4, 1/4
>>> bool(abs(p[0] - 0.75) < 3e-3), float(p.sum())
(True, 1.0)
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special

__all__ = ["win_probabilities"]

_Y_LIMIT = 45.0  # logit bound: x within (3e-20, 1 - 3e-20)


def win_probabilities(alpha: np.ndarray, beta: np.ndarray, per_arm: int = 17, z: float = 6.0,
                      uniform: int = 32) -> np.ndarray:
    """P(arm i's Beta(alpha_i, beta_i) draw is the largest), for every arm; sums to one."""
    a = np.asarray(alpha, np.float64)
    b = np.asarray(beta, np.float64)
    n = len(a)
    if n == 1:
        return np.ones(1)
    pairs = list(zip(a.tolist(), b.tolist()))
    distinct = dict.fromkeys(pairs)
    group = None  # position of each arm among the distinct ones, when some are repeated
    if len(distinct) < n:
        where = {k: j for j, k in enumerate(distinct)}
        group = np.array([where[k] for k in pairs], np.intp)
        a, b = np.array(list(distinct)).T
    cdf = _cdfs(_grid(a, b, per_arm, z, uniform), a, b)  # (grid point, distinct arm)
    every = cdf if group is None else cdf[:, group]
    # prod_{j != i} F_j = prod_j F_j / F_i, the zero factors counted apart
    zero = every == 0.0
    if zero.any():
        zeros = np.count_nonzero(zero, axis=1)[:, None]
        own_zero = cdf == 0.0
        others = np.where(zero, 1.0, every).prod(axis=1)[:, None] / np.where(own_zero, 1.0, cdf)
        others[zeros - own_zero > 0] = 0.0
    else:
        others = every.prod(axis=1)[:, None] / cdf
    p = (np.diff(cdf, axis=0) * (others[1:] + others[:-1])).sum(axis=0) * 0.5
    p += (1.0 - cdf[-1]) * others[-1]
    np.maximum(p, 0.0, out=p)
    if group is not None:
        p = p[group]
    return p / p.sum()


def _grid(a: np.ndarray, b: np.ndarray, per_arm: int, z: float, uniform: int) -> np.ndarray:
    """The sorted, distinct logit grid: ``uniform`` points over ``[lo, hi]`` plus each arm's own."""
    mean, sd = np.log(a / b), np.sqrt(1.0 / a + 1.0 / b)
    lo = min(max(float((mean - z * sd).max()), -_Y_LIMIT), _Y_LIMIT)
    hi = min(max(float((mean + z * sd).max()), -_Y_LIMIT), _Y_LIMIT)
    if hi - lo < 1e-9:
        hi = lo + 1e-9
    own = (mean + sd * _steps(-z, z, per_arm)[:, None]).ravel()
    y = np.concatenate((np.linspace(lo, hi, uniform), own[(own > lo) & (own < hi)]))
    y.sort()
    keep = np.empty(len(y), bool)
    keep[0] = True
    np.not_equal(y[1:], y[:-1], out=keep[1:])
    return y[keep]


def _cdfs(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Every arm's CDF (columns) at the logit grid ``y`` (rows)."""
    x = special.expit(y)[:, None]
    # arrays are (grid point, arm): cumulative sums run down the columns
    # log density up to a per-arm constant: alpha log x + beta log(1 - x), in the logit domain
    g = np.logaddexp(0.0, -y)[:, None] * -a
    g -= np.logaddexp(0.0, y)[:, None] * b
    g -= g.max(axis=0)
    np.exp(g, out=g)
    slope = (1.0 - x) * a
    slope -= x * b
    slope *= g  # d g / d y
    dy = np.diff(y)[:, None]
    cells = g[1:] + g[:-1]
    cells *= dy
    cells += (slope[:-1] - slope[1:]) * (dy * dy / 6.0)
    np.maximum(cells, 0.0, out=cells)
    mass = np.cumsum(cells, axis=0)
    f_lo = special.betainc(a, b, x[0, 0])
    f_hi = special.betainc(a, b, x[-1, 0])
    total = mass[-1]
    scale = np.divide(f_hi - f_lo, total, out=np.zeros(len(a)), where=total > 0)
    cdf = np.empty((len(y), len(a)))
    cdf[0] = f_lo
    np.multiply(mass, scale, out=cdf[1:])
    cdf[1:] += f_lo
    return cdf


@functools.cache
def _steps(start: float, stop: float, num: int) -> np.ndarray:
    steps = np.linspace(start, stop, num)
    steps.flags.writeable = False
    return steps
