"""Shadow (challenger) policies judged on live traffic by off-policy estimates.

The production policy (the *champion*) picks the offer and logs its propensity ``p``. A
challenger in shadow is asked only how likely *it* would have been to pick that same offer,
``q``. With ``w = q / p`` each logged reward ``r`` says something about the challenger:

- IPS, ``sum(w r) / n``: unbiased when ``p`` is right and ``p > 0`` wherever ``q > 0``;
- self-normalised IPS (SNIPS), ``sum(w r) / sum(w)``: slightly biased, much steadier;
- the champion's own value is the plain mean of ``r``.

Each comes with a fixed-sample normal interval (``ci``, SNIPS by the delta method: valid for
one look, and only while ``ess`` is large) and an anytime-valid confidence sequence (``cs``) by
testing by betting (``betting.py``), which holds at every look without any normal approximation —
importance weights are heavy-tailed, and an asymptotic sequence was found to miss badly when
logged propensities are small. The promotion rule (``promotion.py``) reads ``cs``.
``ess`` is the effective sample size ``(sum w)^2 / sum w^2``: far below ``n`` means the
challenger strays from the champion and every estimate is shaky. Work per event is O(grid);
state is nine sums plus four betting grids (about 6.5 kB with the default 200-point grid).

>>> rng = np.random.default_rng(0)
>>> a = rng.integers(0, 2, 5000)                        # champion: uniform over two offers
>>> r = (rng.random(5000) < np.where(a == 1, 0.6, 0.2)).astype(float)
>>> sh = ShadowEstimator("always-b")
>>> sh.add_many(np.full(5000, 0.5), (a == 1).astype(float), r)
>>> est = sh.estimates()
>>> est["snips"].ci_low < 0.6 < est["snips"].ci_high, est["champion"].cs_high < 0.6
(True, True)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_app.experiments.betting import BettingLowerBound
from stream_app.experiments.sequential import normal_half_width

__all__ = ["ShadowEstimator", "Estimate", "shadow_terms", "shadow_estimates", "FIELDS"]

FIELDS = ("n", "r", "r2", "w", "w2", "wr", "w2r", "w2r2", "events")
N, R, R2, W, W2, WR, W2R, W2R2, EVENTS = range(len(FIELDS))
_HEADER = struct.Struct("<BxHH")  # version, number of sums, betting grid size
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    se: float
    ci_low: float
    ci_high: float
    cs_low: float
    cs_high: float

    def as_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"value": num(self.value), "se": num(self.se), "ci": [num(self.ci_low),
                num(self.ci_high)], "cs": [num(self.cs_low), num(self.cs_high)]}  # fmt: skip


def shadow_terms(logged_propensity, challenger_prob, reward) -> np.ndarray:
    """Per logged row, its contribution to each of ``FIELDS`` (shape ``(..., len(FIELDS))``)."""
    p = np.asarray(logged_propensity, np.float64)
    q = np.asarray(challenger_prob, np.float64)
    r = np.asarray(reward, np.float64)
    if np.any(~(p > 0) | (p > 1)):
        raise ValueError("logged propensities must be in (0, 1]")
    if np.any(~(q >= 0) | (q > 1)):
        raise ValueError("challenger probabilities must be in [0, 1]")
    w = q / p
    p, w, r = np.broadcast_arrays(p, w, r)
    wr = w * r
    return np.stack([np.ones_like(w), r, r * r, w, w * w, wr, w * wr, wr * wr,
                     (wr != 0).astype(np.float64)], axis=-1)  # fmt: skip


def shadow_estimates(
    sums: np.ndarray, alpha: float = 0.05, min_n: int = 30, min_events: int = 10
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``{"champion" | "ips" | "snips": (value, se, ci_low, ci_high)}`` — point estimates and
    fixed-sample normal intervals from running sums, over any leading shape."""
    s = np.asarray(sums, np.float64)
    n = s[..., N]
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        champ = s[..., R] / n
        champ_var = (s[..., R2] - n * champ**2) / (n - 1)
        ips = s[..., WR] / n
        ips_var = (s[..., W2R2] - n * ips**2) / (n - 1)
        snips = s[..., WR] / s[..., W]
        sn_var = (s[..., W2R2] - 2 * snips * s[..., W2R] + snips**2 * s[..., W2]) / s[..., W] ** 2
        for name, value, se, events in (
            ("champion", champ, np.sqrt(np.maximum(champ_var / n, 0)), n),
            ("ips", ips, np.sqrt(np.maximum(ips_var / n, 0)), s[..., EVENTS]),
            ("snips", snips, np.sqrt(np.maximum(sn_var, 0)), s[..., EVENTS]),
        ):
            ready = (n >= min_n) & (events >= min_events)
            half = np.where(ready, normal_half_width(se, alpha), np.inf)
            out[name] = (value, se, value - half, value + half)
    return out


class ShadowEstimator:
    """Streaming off-policy value of one challenger, next to the champion's on-policy value.

    Rewards must lie in [0, 1] (the contract's responses). ``cs`` bounds come from four
    betting sequences (``betting.py``), each at level ``alpha / 2`` so that each two-sided
    sequence holds with probability ``1 - alpha``.
    """

    def __init__(self, challenger: str, champion: str = "production", alpha: float = 0.05,
                 min_n: int = 30, min_events: int = 10, grid_size: int = 200) -> None:  # fmt: skip
        self.challenger, self.champion = challenger, champion
        self.alpha, self.min_n, self.min_events = alpha, min_n, min_events
        self._sums = np.zeros(len(FIELDS))
        # four lower bounds at once: champion r, champion 1 - r, challenger w r, w (1 - r)
        self._bet = BettingLowerBound(alpha / 2, grid_size, shape=(4,))

    def add(self, logged_propensity: float, challenger_prob: float, reward: float) -> None:
        """One logged decision: its propensity under the champion, the challenger's probability
        of the same offer, and the reward observed (in [0, 1])."""
        p, q, r = float(logged_propensity), float(challenger_prob), float(reward)
        if not (0.0 < p <= 1.0 and 0.0 <= q <= 1.0 and 0.0 <= r <= 1.0):
            raise ValueError(f"need 0 < propensity <= 1, 0 <= prob <= 1, 0 <= reward <= 1: "
                             f"got {p}, {q}, {r}")  # fmt: skip
        w = q / p
        wr = w * r
        self._sums += (1.0, r, r * r, w, w * w, wr, w * wr, wr * wr, float(wr != 0))
        self._bet.update(np.array([r, 1.0 - r, wr, w - wr]))

    def add_many(self, logged_propensity, challenger_prob, reward) -> None:
        """Several logged decisions, in order."""
        for p, q, r in zip(*np.broadcast_arrays(logged_propensity, challenger_prob, reward)):
            self.add(float(p), float(q), float(r))

    @property
    def n(self) -> int:
        return int(self._sums[N])

    @property
    def ess(self) -> float:
        return float(self._sums[W] ** 2 / self._sums[W2]) if self._sums[W2] > 0 else 0.0

    def estimates(self) -> dict[str, Estimate]:
        """``champion``, ``ips`` and ``snips`` estimates; the two challenger estimates share the
        same confidence sequence (both estimate the challenger's value)."""
        raw = shadow_estimates(self._sums, self.alpha, self.min_n, self.min_events)
        lows = self._bet.lower().tolist()
        champ_cs = (lows[0], 1.0 - lows[1])
        chall_cs = (lows[2], 1.0 - lows[3])
        return {
            name: Estimate(*(float(x) for x in raw[name]), *cs)
            for name, cs in (("champion", champ_cs), ("ips", chall_cs), ("snips", chall_cs))
        }

    def snapshot(self, ts_ms: int, use_case: str | None = None) -> dict[str, Any]:
        """A JSON-ready ``delta-metrics`` record of kind ``shadow``."""
        est = self.estimates()
        return {"kind": "shadow", "ts": int(ts_ms), "use_case": use_case, "n": self.n,
                "alpha": self.alpha, "anytime_valid": True,
                "champion": {"policy": self.champion, **est["champion"].as_dict()},
                "challenger": {"policy": self.challenger, "ess": self.ess,
                               "ips": est["ips"].as_dict(),
                               "snips": est["snips"].as_dict()}}  # fmt: skip

    def encode(self) -> bytes:
        state = np.concatenate([self._sums, self._bet.state().ravel()])
        head = _HEADER.pack(_VERSION, len(FIELDS), len(self._bet.grid))
        return head + state.astype("<f8").tobytes()

    @classmethod
    def decode(cls, data: bytes | None, challenger: str, **settings: Any) -> ShadowEstimator:
        """An estimator with stored state (empty for ``None``); ``settings`` as in ``__init__``."""
        est = cls(challenger, **settings)
        if not data:
            return est
        if len(data) < _HEADER.size:
            raise ValueError("shadow state shorter than its header")
        version, k, grid = _HEADER.unpack_from(data)
        fits = version == _VERSION and k == len(FIELDS) and grid == len(est._bet.grid)
        if not fits or len(data) != _HEADER.size + 8 * (k + 4 * (3 + grid)):
            raise ValueError(f"shadow state (version {version}, grid {grid}) cannot be read here")
        state = np.frombuffer(data, "<f8", offset=_HEADER.size).astype(np.float64)
        est._sums = state[:k].copy()
        est._bet.load(state[k:].reshape(4, 3 + grid))
        return est
