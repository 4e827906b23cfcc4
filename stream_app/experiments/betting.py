"""A lower confidence sequence for the mean of a nonnegative stream, by testing by betting.

For each candidate mean ``m`` on a grid in (0, 1] a gambler bets that the true mean exceeds
``m``: wealth ``K_t(m) = prod(1 + lambda_i(m) (x_i - m))``. If the mean *is* ``m`` the wealth is
a nonnegative martingale, so by Ville's inequality it ever reaches ``1/alpha`` with probability
at most ``alpha``; every ``m`` whose wealth got there is ruled out. The bound holds at all times
at once and needs no variance estimate, no normal approximation and no upper bound on ``x`` —
exactly what importance-weighted rewards ``w r`` (mostly small, now and then huge) require
(Waudby-Smith & Ramdas 2023; Karampatziakis, Mineiro & Ramdas 2021 for off-policy use).

Bets are predictable plug-ins ``lambda_t = sqrt(2 log(1/alpha) / (var_{t-1} t log(1 + t)))``
capped at ``c / m`` so a factor never drops below ``1 - c``. The cap makes ``K_t(m)`` decrease in
``m``, so the ruled-out means form a prefix of the grid and the bound is its last point (exact to
the grid step). An *upper* bound on a mean in [0, 1] is one minus the lower bound of the
complementary stream (``1 - r``, or ``w (1 - r)`` off-policy, whose mean is ``1 - V``).

The state may carry leading dimensions (``shape``): many independent runs update at once.

>>> rng = np.random.default_rng(1)
>>> lb = BettingLowerBound(alpha=0.05)
>>> for x in rng.exponential(0.3, 4000):   # mean 0.3, unbounded, skewed
...     lb.update(x)
>>> 0.2 < float(lb.lower()) < 0.3
True
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BettingLowerBound"]


class BettingLowerBound:
    """Time-uniform lower bound, at level ``alpha``, for the mean (in [0, 1]) of x >= 0."""

    def __init__(self, alpha: float, grid_size: int = 200, cap: float = 0.5,
                 shape: tuple[int, ...] = ()) -> None:  # fmt: skip
        if not 0 < alpha < 1 or not 0 < cap < 1 or grid_size < 2:
            raise ValueError("need 0 < alpha < 1, 0 < cap < 1 and grid_size >= 2")
        self.alpha, self.cap = alpha, cap
        self.grid = np.arange(1, grid_size + 1) / grid_size
        self.log_wealth = np.zeros((*shape, grid_size))
        self.stats = np.zeros((*shape, 3))  # n, sum x, sum x^2 (for the plug-in bet size)

    def _bet(self) -> np.ndarray:
        n, s, ss = self.stats[..., 0], self.stats[..., 1], self.stats[..., 2]
        var = (0.25 + np.maximum(ss - s * s / np.maximum(n, 1), 0)) / (n + 1)
        t = n + 1
        lam = np.sqrt(2 * math.log(1 / self.alpha) / (var * t * np.log1p(t)))
        return np.minimum(lam[..., None], self.cap / self.grid)

    def update(self, x: np.ndarray | float) -> None:
        """One observation per run (shape ``shape``); ``x >= 0``."""
        x = np.asarray(x, np.float64)
        if np.any(~(x >= 0)):
            raise ValueError("observations must be >= 0")
        self.log_wealth += np.log1p(self._bet() * (x[..., None] - self.grid))
        self.stats += np.stack([np.ones_like(x), x, x * x], axis=-1)

    def lower(self) -> np.ndarray:
        """The largest grid mean ruled out together with all below it (0 if none)."""
        out = self.log_wealth >= math.log(1 / self.alpha)
        k = np.logical_and.accumulate(out, axis=-1).sum(axis=-1)
        return np.where(k > 0, self.grid[np.maximum(k - 1, 0)], 0.0)

    def state(self) -> np.ndarray:
        return np.concatenate([self.stats, self.log_wealth], axis=-1)

    def load(self, state: np.ndarray) -> None:
        self.stats = np.array(state[..., :3], np.float64)
        self.log_wealth = np.array(state[..., 3:], np.float64)
