"""Reward models for doubly robust estimation: predict every action's expected reward per row.

A model has ``fit(data, rows) -> self`` and ``predict(data, rows) -> (len(rows), n_actions)``,
where ``rows`` selects log entries (so the estimator can cross-fit: fit on one fold, predict the
other). Two are provided:

- ``ActionMean``: per-action mean reward shrunk toward the overall mean (ignores context);
- ``RidgeReward``: per-action ridge regression on the encoded context (numbers as they are,
  booleans as 0/1, strings one-hot), predictions clipped to the observed reward range.

>>> from stream_app.evaluation.logs import LoggedBandit
>>> data = LoggedBandit.from_records(
...     [{"context": {"page": p}, "action": a, "reward": r, "propensity": 0.5}
...      for p, a, r in [("x", "a", 1), ("y", "a", 0), ("x", "b", 0), ("y", "b", 0)] * 10])
>>> rows = np.arange(len(data))
>>> ActionMean(prior_weight=0).fit(data, rows).predict(data, rows[:1]).round(2).tolist()
[[0.5, 0.0]]
>>> RidgeReward(l2=1e-3).fit(data, rows).predict(data, rows[:2]).round(2).tolist()
[[1.0, 0.0], [0.0, 0.0]]
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from stream_app.evaluation.logs import LoggedBandit


class RewardModel(Protocol):
    def fit(self, data: LoggedBandit, rows: np.ndarray) -> RewardModel: ...

    def predict(self, data: LoggedBandit, rows: np.ndarray) -> np.ndarray: ...


class ContextEncoder:
    """Flat context dicts -> a numeric matrix with a leading intercept column."""

    def __init__(self) -> None:
        self._columns: dict[str, int] = {}

    def fit(self, contexts: Sequence[dict[str, Any]]) -> ContextEncoder:
        for ctx in contexts:
            for key, value in ctx.items():
                name = _column(key, value)
                if name is not None and name not in self._columns:
                    self._columns[name] = len(self._columns) + 1
        return self

    def transform(self, contexts: Sequence[dict[str, Any]]) -> np.ndarray:
        x = np.zeros((len(contexts), len(self._columns) + 1))
        x[:, 0] = 1.0
        for i, ctx in enumerate(contexts):
            for key, value in ctx.items():
                col = self._columns.get(_column(key, value) or "")
                if col is not None:
                    x[i, col] = 1.0 if isinstance(value, (str, bool)) else float(value)
        return x


def _column(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return f"{key}={value}"
    return key


class ActionMean:
    """Per-action mean reward, shrunk toward the overall mean by ``prior_weight`` pseudo-rows."""

    def __init__(self, prior_weight: float = 1.0) -> None:
        self.prior_weight = prior_weight

    def fit(self, data: LoggedBandit, rows: np.ndarray) -> ActionMean:
        k = len(data.action_space)
        a, r = data.actions[rows], data.rewards[rows]
        overall = float(r.mean()) if len(r) else 0.0
        sums = np.bincount(a, weights=r, minlength=k)
        counts = np.bincount(a, minlength=k)
        denom = counts + self.prior_weight
        self._means = np.divide(
            sums + self.prior_weight * overall, denom, out=np.full(k, overall), where=denom > 0
        )
        return self

    def predict(self, data: LoggedBandit, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._means, (len(rows), len(self._means))).copy()


class RidgeReward:
    """Per-action ridge regression of reward on the encoded context."""

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = l2

    def fit(self, data: LoggedBandit, rows: np.ndarray) -> RidgeReward:
        self._encoder = ContextEncoder().fit([data.contexts[i] for i in rows])
        x = self._encoder.transform([data.contexts[i] for i in rows])
        a, r = data.actions[rows], data.rewards[rows]
        k, d = len(data.action_space), x.shape[1]
        overall = float(r.mean()) if len(r) else 0.0
        self._weights = np.zeros((d, k))
        self._weights[0] = overall
        penalty = self.l2 * np.eye(d)
        for action in range(k):
            mine = a == action
            if not mine.any():
                continue
            xa = x[mine]
            # Regress the deviation from the overall mean, so a rare action shrinks toward it.
            w = np.linalg.solve(xa.T @ xa + penalty, xa.T @ (r[mine] - overall))
            w[0] += overall
            self._weights[:, action] = w
        self._range = (float(r.min()), float(r.max())) if len(r) else (0.0, 0.0)
        return self

    def predict(self, data: LoggedBandit, rows: np.ndarray) -> np.ndarray:
        x = self._encoder.transform([data.contexts[i] for i in rows])
        return np.clip(x @ self._weights, *self._range)
