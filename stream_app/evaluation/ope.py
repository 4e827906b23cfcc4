"""Off-policy evaluation: what a *target* policy would have earned, estimated from logged data.

Given a ``LoggedBandit`` (``logs.py``: context, action, reward, propensity per row) and a target
policy, each estimator returns an ``Estimate`` with a confidence interval:

- ``ips``: inverse propensity scoring, mean of ``w * r`` with ``w = pi(a|x) / p_log(a|x)``;
  unbiased when propensities are right and every action the target takes could be logged.
- ``snips``: self-normalised IPS, ``sum(w r) / sum(w)``; slightly biased, much lower variance.
- ``doubly_robust``: a reward model's prediction under the target plus the IPS-weighted
  residual of the logged action; unbiased if either the propensities or the model are right.
  The model is cross-fitted (fit on the other folds) so it does not grade its own homework.

The target is either a function ``target_probs(context, actions) -> probabilities`` (one per
available action, in the order given) or an ``(n, n_actions)`` array of action probabilities
aligned with ``data.action_space`` (columns for unavailable actions must be 0).

Intervals are normal (CLT, the default) or percentile bootstrap (``ci="bootstrap"``, seeded).
``Estimate.ess`` is the effective sample size ``(sum w)^2 / sum w^2``: far below ``n`` means
the target strays from the logging policy and every estimate is shaky.

>>> from stream_app.evaluation.logs import LoggedBandit
>>> rng = np.random.default_rng(0)
>>> acts = rng.integers(0, 2, 4000)                 # uniform logging over two actions
>>> rewards = rng.random(4000) < np.where(acts == 1, 0.7, 0.2)
>>> data = LoggedBandit.from_records(
...     {"context": {}, "action": "ab"[a], "reward": float(r), "propensity": 0.5}
...     for a, r in zip(acts, rewards))
>>> always_b = lambda context, actions: [float(a == "b") for a in actions]
>>> est = ips(data, always_b)
>>> est.ci_low < 0.7 < est.ci_high, est.n
(True, 4000)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Callable, Sequence

import numpy as np

from stream_app.evaluation.logs import LoggedBandit
from stream_app.evaluation.reward_models import RewardModel, RidgeReward

TargetProbs = Callable[[dict[str, Any], tuple[str, ...]], Sequence[float]]


@dataclass(frozen=True)
class Estimate:
    method: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    level: float
    n: int
    ess: float  # effective sample size of the importance weights

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_matrix(data: LoggedBandit, target: TargetProbs | np.ndarray) -> np.ndarray:
    """The target's action probabilities as an ``(n, n_actions)`` matrix; checks they are sane."""
    n, k = len(data), len(data.action_space)
    if callable(target):
        pi = np.zeros((n, k))
        space = np.array(data.action_space, dtype=object)
        for i, ctx in enumerate(data.contexts):
            avail = np.flatnonzero(data.available[i])
            probs = np.asarray(target(ctx, tuple(space[avail])), np.float64)
            if probs.shape != avail.shape:
                raise ValueError(f"row {i}: target returned {probs.shape[0]} probabilities "
                                 f"for {len(avail)} actions")  # fmt: skip
            pi[i, avail] = probs
    else:
        pi = np.asarray(target, np.float64)
        if pi.shape != (n, k):
            raise ValueError(f"target matrix must have shape {(n, k)}, got {pi.shape}")
    if (pi < -1e-12).any() or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("target probabilities must be >= 0 and sum to 1 on every row")
    if (pi[~data.available] > 1e-12).any():
        raise ValueError("target puts probability on an action that was not available")
    return pi


def _weights(data: LoggedBandit, pi: np.ndarray, clip: float | None) -> np.ndarray:
    w = pi[np.arange(len(data)), data.actions] / data.propensities
    return np.minimum(w, clip) if clip is not None else w


def _ess(w: np.ndarray) -> float:
    sq = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0


def _interval(
    method: str, num: np.ndarray, den: np.ndarray, w: np.ndarray,
    level: float, ci: str, n_boot: int, seed: int,
) -> Estimate:  # fmt: skip
    """Estimate ``sum(num) / sum(den)`` with a normal (delta-method) or bootstrap interval."""
    n = len(num)
    if n == 0:
        raise ValueError("no logged rows to evaluate")
    value = float(num.sum() / den.sum()) if den.sum() > 0 else 0.0
    if ci == "normal":
        # Delta method for a ratio of means; for den == 1 it is the plain standard error.
        resid = num - value * den
        sd = np.sqrt(np.sum((resid - resid.mean()) ** 2) / max(n - 1, 1))
        se = float(sd / den.mean() / np.sqrt(n))
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        low, high = value - z * se, value + z * se
    elif ci == "bootstrap":
        stats = _bootstrap(num, den, n_boot, seed)
        se = float(stats.std(ddof=1))
        low, high = (float(q) for q in np.quantile(stats, [(1 - level) / 2, (1 + level) / 2]))
    else:
        raise ValueError("ci must be 'normal' or 'bootstrap'")
    return Estimate(method, value, se, float(low), float(high), level, n, _ess(w))


def _bootstrap(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, out, done = len(num), np.empty(n_boot), 0
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    while done < n_boot:
        m = min(chunk, n_boot - done)
        idx = rng.integers(0, n, (m, n))
        d = den[idx].sum(axis=1)
        out[done : done + m] = np.divide(num[idx].sum(axis=1), d, out=np.zeros(m), where=d > 0)
        done += m
    return out


def ips(
    data: LoggedBandit, target: TargetProbs | np.ndarray, level: float = 0.95,
    ci: str = "normal", n_boot: int = 1000, seed: int = 0, clip: float | None = None,
) -> Estimate:  # fmt: skip
    """Inverse propensity scoring (``clip`` caps the weights: less variance, some bias)."""
    w = _weights(data, target_matrix(data, target), clip)
    return _interval("ips", w * data.rewards, np.ones(len(w)), w, level, ci, n_boot, seed)


def snips(
    data: LoggedBandit, target: TargetProbs | np.ndarray, level: float = 0.95,
    ci: str = "normal", n_boot: int = 1000, seed: int = 0,
) -> Estimate:  # fmt: skip
    """Self-normalised IPS."""
    w = _weights(data, target_matrix(data, target), None)
    return _interval("snips", w * data.rewards, w, w, level, ci, n_boot, seed)


def doubly_robust(
    data: LoggedBandit, target: TargetProbs | np.ndarray, model: RewardModel | None = None,
    folds: int = 2, level: float = 0.95, ci: str = "normal", n_boot: int = 1000, seed: int = 0,
) -> Estimate:  # fmt: skip
    """Doubly robust, with a cross-fitted reward model (default ``RidgeReward()``)."""
    pi = target_matrix(data, target)
    w = _weights(data, pi, None)
    q = predictions(data, model or RidgeReward(), folds, seed)
    rows = np.arange(len(data))
    scores = (pi * q).sum(axis=1) + w * (data.rewards - q[rows, data.actions])
    return _interval("dr", scores, np.ones(len(w)), w, level, ci, n_boot, seed)


def predictions(
    data: LoggedBandit, model: RewardModel, folds: int = 2, seed: int = 0
) -> np.ndarray:
    """Out-of-fold reward predictions ``(n, n_actions)`` (in-sample when ``folds`` is 1)."""
    n = len(data)
    if folds <= 1:
        rows = np.arange(n)
        return model.fit(data, rows).predict(data, rows)
    fold = np.random.default_rng(seed).permutation(n) % folds
    q = np.zeros((n, len(data.action_space)))
    for f in range(folds):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if len(test):
            q[test] = model.fit(data, train).predict(data, test)
    return q


def evaluate(
    data: LoggedBandit, target: TargetProbs | np.ndarray, level: float = 0.95,
    ci: str = "normal", seed: int = 0, model: RewardModel | None = None,
) -> dict[str, Estimate]:  # fmt: skip
    """IPS, SNIPS and DR of one target, keyed by method name."""
    pi = target_matrix(data, target)  # evaluate the target function once
    return {
        "ips": ips(data, pi, level, ci, seed=seed),
        "snips": snips(data, pi, level, ci, seed=seed),
        "dr": doubly_robust(data, pi, model, level=level, ci=ci, seed=seed),
    }
