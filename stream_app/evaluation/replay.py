"""Replay (rejection sampling, Li et al. 2011): run a policy, learning included, against a log.

For each logged row the policy picks among the available actions. If it picks the logged action,
the row counts: the policy sees the logged reward (and may learn from it); otherwise the row is
skipped as if it never happened. Under uniform logging the rows that count are a fair sample of
what the policy would have met online, so the mean reward is an unbiased estimate of its value
(Li, Chu, Langford, Wang: "Unbiased offline evaluation of contextual-bandit-based news article
recommendation algorithms", WSDM 2011).

Logs with non-uniform propensities are handled by a further rejection: a matching row is kept
with probability ``p_min / propensity`` (``p_min``: the smallest logged propensity), which makes
every action equally likely to be kept whatever the logging policy preferred. The price is fewer
rows kept; ``n_matched`` says how many.

>>> from stream_app.evaluation.logs import LoggedBandit
>>> rng = np.random.default_rng(1)
>>> acts = rng.integers(0, 2, 4000)
>>> rewards = rng.random(4000) < np.where(acts == 1, 0.7, 0.2)
>>> data = LoggedBandit.from_records(
...     {"context": {}, "action": "ab"[a], "reward": float(r), "propensity": 0.5}
...     for a, r in zip(acts, rewards))
>>> res = replay(data, lambda context, actions: "b")
>>> res.ci_low < 0.7 < res.ci_high, abs(res.n_matched - 2000) < 150
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

from stream_app.evaluation.logs import LoggedBandit

Pick = Callable[[dict[str, Any], tuple[str, ...]], str]
Learn = Callable[[dict[str, Any], str, float], None]


@dataclass(frozen=True)
class ReplayResult:
    value: float  # mean reward over the rows that counted
    se: float
    ci_low: float
    ci_high: float
    level: float
    n_logged: int
    n_matched: int
    rewards: np.ndarray = field(repr=False)  # reward of each row that counted, in log order

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high

    def as_dict(self) -> dict[str, Any]:
        return {"method": "replay", "value": self.value, "se": self.se, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "level": self.level, "n_logged": self.n_logged,
                "n_matched": self.n_matched}  # fmt: skip


def replay(
    data: LoggedBandit,
    pick: Pick,
    learn: Learn | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> ReplayResult:
    """Replay ``pick(context, actions) -> action`` (and ``learn(context, action, reward)``)."""
    rng = np.random.default_rng(seed)
    space = data.action_space
    p_min = float(data.propensities.min()) if len(data) else 1.0
    keep_u = rng.random(len(data))
    kept: list[float] = []
    for i, ctx in enumerate(data.contexts):
        actions = tuple(a for a, ok in zip(space, data.available[i]) if ok)
        logged = space[data.actions[i]]
        if pick(ctx, actions) != logged:
            continue
        if keep_u[i] >= p_min / data.propensities[i]:
            continue
        reward = float(data.rewards[i])
        kept.append(reward)
        if learn is not None:
            learn(ctx, logged, reward)
    rewards = np.array(kept)
    m = len(rewards)
    value = float(rewards.mean()) if m else float("nan")
    se = float(rewards.std(ddof=1) / np.sqrt(m)) if m > 1 else float("inf")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return ReplayResult(value, se, value - z * se, value + z * se, level, len(data), m, rewards)
