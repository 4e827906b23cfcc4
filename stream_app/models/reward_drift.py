"""A use case's drift alarm, and the exploration it raises.

**Detection** (the fleet's learner, ``RewardDrift``): per use case, a ``river.drift.ADWIN`` over
the rewards of its settled decisions (1 answered, 0 ignored), watched once it has seen
``grace`` of them. An alarm is raised when ADWIN cut its window within the last ``fast``
rewards *and* the recent response rate (an exponential mean over ~``fast`` rewards) is below the
long-run one (~``slow`` rewards) by at least ``min_drop`` (relative): a rise is learning, not
drift, and ADWIN alone also cuts at the daily rhythm of who answers. The detector then starts
afresh (``grace`` again). The alarm's event time is kept per use case (``alarm_ms``); the
``ModelSuite`` holding this object travels in every fleet snapshot, so every partition reads the
same alarm, one snapshot later. The same lessons in the same order give the same alarms.

**Response** (every partition, ``pooled_half_life``): while an alarm is recent, the use case's
pooled evidence (segment and population Beta arms, contextual ridge statistics) forgets
faster: its forgetting rate ``ln 2 / half_life`` gains ``ln 2 / drift_half_life_s`` at the
alarm, and the extra rate falls linearly to nothing over ``drift_window_s``. The posteriors
widen, so Thompson sampling re-explores the arms, and evidence of the new behaviour outweighs
the old sooner; then learning goes back to the use case's own half-life. A customer's own arms
keep the use case's half-life. Settings: the use case's ``prior`` (``drift_half_life_s``,
``drift_window_s``; none: no response).

>>> drift = RewardDrift(grace=100)
>>> records = [r for i in range(3000) for r in drift.learn("default", float(i % 3 == 0), i)]
>>> records, drift.alarm_ms("default")   # a steady response rate: no alarm
([], None)
>>> records = [r for i in range(3000, 5000) for r in drift.learn("default", 0.0, i)]
>>> [(r["model"], r["action"]) for r in records], drift.alarm_ms("default") is not None
([('use-case/default', 'explore')], True)
>>> round(pooled_half_life(86_400.0, 3_600.0, 43_200.0, alarm_ms=0, now_ms=0))  # at the alarm
3456
>>> pooled_half_life(86_400.0, 3_600.0, 43_200.0, alarm_ms=0, now_ms=43_200_000)  # over
86400.0
"""

from __future__ import annotations

import math
from typing import Any

from river import drift

__all__ = ["RewardDrift", "pooled_half_life"]


class RewardDrift:
    """ADWIN over each use case's rewards, and the event time of its last alarm."""

    def __init__(self, delta: float = 0.05, grace: int = 200, min_drop: float = 0.3,
                 fast: int = 200, slow: int = 2000) -> None:
        if not 0 < delta < 1 or grace < 1 or not 0 <= min_drop < 1 or not 1 <= fast < slow:
            raise ValueError("delta must be in (0, 1), grace >= 1, min_drop in [0, 1) and "
                             "1 <= fast < slow")
        self.delta, self.grace, self.min_drop = delta, grace, min_drop
        self.fast, self.slow = fast, slow
        self._adwin: dict[str, drift.ADWIN] = {}
        self._seen: dict[str, int] = {}
        self._means: dict[str, list[float]] = {}  # use case -> [recent mean, long-run mean]
        self._armed: dict[str, int] = {}  # use case -> an ADWIN cut counts until this update
        self.alarms: dict[str, int] = {}  # use case -> event time of its last alarm
        self.n_alarms = 0

    def alarm_ms(self, use_case: str) -> int | None:
        return self.alarms.get(use_case)

    def learn(self, use_case: str, reward: float, ts: int) -> list[dict[str, Any]]:
        """One settled decision's reward; the ``delta-metrics`` drift record of an alarm."""
        reward = float(reward)
        detector = self._adwin.get(use_case)
        if detector is None:
            detector = self._adwin[use_case] = drift.ADWIN(delta=self.delta)
            self._seen[use_case] = 0
            self._means[use_case] = [reward, reward]
        seen = self._seen[use_case] = self._seen[use_case] + 1
        means = self._means[use_case]
        means[0] += (reward - means[0]) / min(seen, self.fast)
        means[1] += (reward - means[1]) / min(seen, self.slow)
        detector.update(reward)
        if seen <= self.grace:
            return []
        if detector.drift_detected:  # a change: an alarm if the rate falls within ``fast``
            self._armed[use_case] = seen + self.fast
        if seen > self._armed.get(use_case, 0):
            return []
        recent, before = means
        if recent > before * (1.0 - self.min_drop):  # a rise, or a small fall: not an alarm
            return []
        self._adwin[use_case], self._seen[use_case] = drift.ADWIN(delta=self.delta), 0
        self._armed[use_case] = 0
        self.alarms[use_case] = int(ts)
        self.n_alarms += 1
        return [{
            "kind": "drift", "ts": int(ts), "model": f"use-case/{use_case}", "candidate": "reward",
            "detector": "adwin", "error_before": 1.0 - before, "error_after": 1.0 - recent,
            "candidate_updates": seen, "n_updates": seen, "action": "explore",
        }]  # fmt: skip


def pooled_half_life(half_life_s: float | None, drift_half_life_s: float | None,
                     drift_window_s: float, alarm_ms: int | None, now_ms: int) -> float | None:
    """The half-life of a use case's pooled evidence at ``now_ms``: its own (``None``: no
    forgetting) with the extra forgetting of a recent alarm (module docstring)."""
    if drift_half_life_s is None or alarm_ms is None or not drift_window_s > 0:
        return half_life_s
    age = (now_ms - alarm_ms) / (1000.0 * drift_window_s)
    if not 0.0 <= age < 1.0:
        return half_life_s
    rate = (0.0 if half_life_s is None else math.log(2) / half_life_s) + \
        (1.0 - age) * math.log(2) / drift_half_life_s
    return math.log(2) / rate
