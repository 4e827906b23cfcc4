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
  result is normalised to sum to one.

Against a fine-grid reference the error is below 3e-3 (absolute) over posteriors from
``alpha = 0.1`` to thousands of observations (``tests/unit/test_policies_thompson.py`` checks it
against a large Monte Carlo); a 512-draw Monte Carlo estimate has a standard error of up to 0.022.
The cost is numpy work over arms x grid points (the grid grows with the arms): about 0.3 ms for
20 arms, against about 0.7 ms for drawing 512 x 20 Beta variates.

>>> p = win_probabilities(np.array([2.0, 2.0]), np.array([8.0, 8.0]))
>>> [round(float(v), 3) for v in p]
[0.5, 0.5]
>>> p = win_probabilities(np.array([3.0, 1.0]), np.array([1.0, 1.0]))  # exactly 3/4, 1/4
>>> bool(abs(p[0] - 0.75) < 3e-3), float(p.sum())
(True, 1.0)
"""

from __future__ import annotations

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
    mean, sd = np.log(a / b), np.sqrt(1.0 / a + 1.0 / b)
    lo = float(np.clip((mean - z * sd).max(), -_Y_LIMIT, _Y_LIMIT))
    hi = float(np.clip((mean + z * sd).max(), -_Y_LIMIT, _Y_LIMIT))
    if hi - lo < 1e-9:
        hi = lo + 1e-9
    own = (mean + sd * np.linspace(-z, z, per_arm)[:, None]).ravel()
    y = np.unique(np.concatenate((np.linspace(lo, hi, uniform), own[(own > lo) & (own < hi)])))
    x = special.expit(y)[:, None]
    # arrays are (grid point, arm): cumulative sums and products run down contiguous columns
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
    scale = np.divide(f_hi - f_lo, total, out=np.zeros(n), where=total > 0)
    cdf = np.empty((len(y), n))
    cdf[0] = f_lo
    np.multiply(mass, scale, out=cdf[1:])
    cdf[1:] += f_lo
    # prod_{j != i} F_j: products of the arms before i and after i
    before = np.ones_like(cdf)
    np.cumprod(cdf[:, :-1], axis=1, out=before[:, 1:])
    after = np.ones_like(cdf)
    np.cumprod(cdf[:, :0:-1], axis=1, out=after[:, -2::-1])
    others = before * after
    p = (np.diff(cdf, axis=0) * (others[1:] + others[:-1])).sum(axis=0) * 0.5
    p += (1.0 - cdf[-1]) * others[-1]
    np.maximum(p, 0.0, out=p)
    return p / p.sum()
