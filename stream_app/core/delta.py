"""Delta metrics: how far predictions are from what customers did, per event-time window and group.

Each ``outcome`` record (from ``feedback.py``) carries the predicted response probability of the
chosen offer and the actual response (1 or 0); ``delta = actual - predicted``. ``DeltaAggregator``
rolls them up per tumbling event-time window (``window_s``) and per group: every value of each
dimension in ``dimensions`` (offer, segment, policy, use case, experiment arm; a record without
the dimension is not grouped on it) plus ``dimension="all"``, ``group="*"``. Per group:

- ``count``, ``responses``, ``response_rate``, ``mean_predicted``, ``mean_delta`` (negative: the
  model is optimistic), ``ignored`` (settled by the attribution-window timer);
- ``calibration_error``: expected calibration error over ``bins`` equal-width bins of predicted,
  ``sum_b (n_b / n) * |mean predicted_b - response rate_b|``;
- ``log_loss`` and ``roc_auc``, as ``river.metrics.LogLoss`` / ``ROCAUC`` compute them (the AUC on a
  grid of ``auc_thresholds`` thresholds; ``None`` unless both responses and non-responses were
  seen), from plain counts: one histogram bin per threshold instead of River's confusion matrix
  per threshold, so ``add`` costs a bisection rather than ``auc_thresholds`` updates;
- ``value_sum``: business value realised in the window (late outcomes included: money is money);
- ``regret`` (sum) and ``mean_regret``: per decision, the best posterior mean among the candidates
  minus the chosen offer's, both at decision time. This estimates the response rate the policy
  *chose* to give up by exploring, judged by its own beliefs - the price of exploration. It is
  not regret against the hidden truth (the simulator measures that) and is 0 for greedy choices;
- ``late`` and ``late_responses``: outcomes that arrived after their decision was settled. They
  are kept out of every other figure, which therefore counts each decision exactly once.

Time is event time. ``flush(watermark_ms)`` emits and forgets every window whose end plus
``allowed_lateness_s`` is at or below the watermark, each exactly once. ``add`` refuses (returns
False, counted in ``too_late``) a record whose window has been flushed. Only ``flush`` moves the
watermark, so calling it after each message (O(open windows) when nothing closes) makes the
output depend on the order of the partition's messages only, never on processing speed. Memory
is bounded by the open windows times the groups in them.

>>> agg = DeltaAggregator(window_s=60, dimensions=("offer_id",))
>>> for ts, p, y in [(1_000, 0.8, 1.0), (2_000, 0.2, 0.0), (61_000, 0.5, 1.0)]:
...     _ = agg.add({"kind": "outcome", "ts": ts, "offer_id": "cashback", "predicted": p,
...                  "actual": y, "value": 0.0, "regret": 0.0, "late": False})
>>> [r["window_start"] for r in agg.flush(60_000)], agg.flush(60_000)
([0, 0], [])
>>> r = agg.flush(120_000)[0]
>>> r["dimension"], r["count"], r["responses"], r["mean_delta"], r["roc_auc"]
('all', 1, 1, 0.5, None)
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Iterable, Mapping

__all__ = ["DIMENSIONS", "DeltaAggregator", "GroupMetrics", "outcome_rows"]


def outcome_rows(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The outcome deltas a ``delta-metrics`` message carries: the engine publishes them per
    batch (kind ``outcomes``, a list of ``outcome`` records); an ``outcome`` record is itself;
    any other kind carries none.

    >>> row = {"kind": "outcome", "decision_id": "dc-1", "actual": 1.0}
    >>> outcome_rows({"kind": "outcomes", "outcomes": [row]}) == outcome_rows(row) == [row]
    True
    >>> outcome_rows({"kind": "rollup"})
    []
    """
    kind = message.get("kind")
    if kind == "outcomes":
        return list(message.get("outcomes") or ())
    return [message] if kind == "outcome" else []

DIMENSIONS = ("offer_id", "segment", "policy", "use_case", "experiment_arm")


class GroupMetrics:
    """Running delta metrics of one group in one window: O(bins + auc_thresholds) memory."""

    __slots__ = ("count", "responses", "sum_predicted", "sum_delta", "value_sum", "regret",
                 "ignored", "late", "late_responses", "_bin_n", "_bin_p", "_bin_y", "_log_loss",
                 "_thresholds", "_pos_above", "_neg_above")

    def __init__(self, bins: int = 10, auc_thresholds: int = 10) -> None:
        self.count = self.responses = self.ignored = self.late = self.late_responses = 0
        self.sum_predicted = self.sum_delta = self.value_sum = self.regret = 0.0
        self._bin_n = [0] * bins
        self._bin_p = [0.0] * bins
        self._bin_y = [0.0] * bins
        self._log_loss = 0.0  # sum of per-record log losses
        self._thresholds = _thresholds(auc_thresholds)
        # [m]: records whose prediction exceeds exactly the m lowest thresholds
        self._pos_above = [0] * (auc_thresholds + 1)
        self._neg_above = [0] * (auc_thresholds + 1)

    def add(self, predicted: float, actual: float, value: float = 0.0, regret: float = 0.0,
            ignored: bool = False, late: bool = False) -> None:
        self.value_sum += value
        if late:
            self.late += 1
            self.late_responses += actual >= 0.5
            return
        positive = actual >= 0.5
        self.count += 1
        self.responses += positive
        self.ignored += ignored
        self.sum_predicted += predicted
        self.sum_delta += actual - predicted
        self.regret += regret
        b = min(int(predicted * len(self._bin_n)), len(self._bin_n) - 1)
        self._bin_n[b] += 1
        self._bin_p[b] += predicted
        self._bin_y[b] += actual
        p = min(max(predicted, 1e-15), 1 - 1e-15)  # River's clamp
        self._log_loss -= math.log(p if positive else 1.0 - p)
        # bisect_left counts the thresholds t with t < predicted, i.e. River's "p > t"
        (self._pos_above if positive else self._neg_above)[
            bisect_left(self._thresholds, predicted)] += 1

    def roc_auc(self) -> float:
        """River's ``ROCAUC.get()``: trapezoid of TPR over FPR at each threshold (0.0 when one
        class is missing)."""
        n_pos, n_neg = sum(self._pos_above), sum(self._neg_above)
        tprs, fprs = [], []
        tp, fp = n_pos, n_neg  # predictions above threshold k: those exceeding more than k
        for k in range(len(self._thresholds)):
            tp -= self._pos_above[k]
            fp -= self._neg_above[k]
            tprs.append(tp / n_pos if n_pos else 0.0)
            fprs.append(fp / n_neg if n_neg else 0.0)
        return -sum((fprs[i + 1] - fprs[i]) * (tprs[i + 1] + tprs[i]) / 2.0
                    for i in range(len(fprs) - 1))

    def calibration_error(self) -> float | None:
        """Expected calibration error; None when there is nothing to calibrate."""
        if not self.count:
            return None
        gap = sum(abs(p - y) for n, p, y in zip(self._bin_n, self._bin_p, self._bin_y) if n)
        return gap / self.count  # (n_b / n) * |p_b / n_b - y_b / n_b| = |p_b - y_b| / n

    def summary(self) -> dict[str, Any]:
        n = self.count
        both_classes = 0 < self.responses < n
        return {
            "count": n,
            "responses": self.responses,
            "response_rate": self.responses / n if n else None,
            "mean_predicted": self.sum_predicted / n if n else None,
            "mean_delta": self.sum_delta / n if n else None,
            "calibration_error": self.calibration_error(),
            "log_loss": self._log_loss / n if n else None,
            "roc_auc": self.roc_auc() + 0.0 if both_classes else None,  # + 0.0: no "-0.0"
            "value_sum": self.value_sum,
            "regret": self.regret,
            "mean_regret": self.regret / n if n else None,
            "ignored": self.ignored,
            "late": self.late,
            "late_responses": self.late_responses,
        }


def _thresholds(n: int) -> list[float]:
    """River's ROCAUC thresholds: ``n`` evenly over [0, 1], the ends nudged outwards."""
    out = [i / (n - 1) for i in range(n)]
    out[0] -= 1e-7
    out[-1] += 1e-7
    return out


class DeltaAggregator:
    """Tumbling event-time windows of ``GroupMetrics``; emits closed windows as rollup records."""

    def __init__(self, window_s: float = 60.0, dimensions: Iterable[str] = DIMENSIONS,
                 bins: int = 10, auc_thresholds: int = 10, allowed_lateness_s: float = 0.0) -> None:
        if window_s <= 0 or bins < 1 or auc_thresholds < 2 or allowed_lateness_s < 0:
            raise ValueError("need window_s > 0, bins >= 1, auc_thresholds >= 2, lateness >= 0")
        self.window_ms = int(round(window_s * 1000))
        self.lateness_ms = int(round(allowed_lateness_s * 1000))
        self.dimensions = tuple(dimensions)
        self.bins, self.auc_thresholds = bins, auc_thresholds
        self.too_late = 0  # records refused because their window was already flushed
        self._windows: dict[int, dict[tuple[str, str], GroupMetrics]] = {}
        self._watermark: int | None = None

    @property
    def watermark_ms(self) -> int | None:
        return self._watermark

    @property
    def open_windows(self) -> int:
        """Windows added to and not flushed yet (what bounds memory)."""
        return len(self._windows)

    def window_start(self, ts_ms: int) -> int:
        return ts_ms - ts_ms % self.window_ms

    def _closed(self, start: int) -> bool:
        end = start + self.window_ms
        return self._watermark is not None and end + self.lateness_ms <= self._watermark

    def add(self, record: Mapping[str, Any]) -> bool:
        """Count one ``outcome`` record in its window; False if that window is already flushed."""
        if record.get("kind") != "outcome":
            raise ValueError(f"DeltaAggregator takes outcome records, got {record.get('kind')!r}")
        start = self.window_start(int(record["ts"]))
        if self._closed(start):
            self.too_late += 1
            return False
        predicted, actual = float(record["predicted"]), float(record["actual"])
        if not (0.0 <= predicted <= 1.0 and 0.0 <= actual <= 1.0):  # also refuses NaN
            raise ValueError(f"predicted and actual must be in [0, 1]: {predicted}, {actual}")
        args = (predicted, actual, float(record.get("value") or 0.0),
                float(record.get("regret") or 0.0), bool(record.get("ignored")),
                bool(record.get("late")))
        keys = [("all", "*")]
        keys += [(d, str(record[d])) for d in self.dimensions if record.get(d) is not None]
        groups = self._windows.setdefault(start, {})
        for key in keys:
            group = groups.get(key)
            if group is None:
                group = groups[key] = GroupMetrics(self.bins, self.auc_thresholds)
            group.add(*args)
        return True

    def flush(self, watermark_ms: int) -> list[dict[str, Any]]:
        """Advance the watermark (never backwards) and emit every window that closed, oldest first.

        Within a window, records come ``all`` first, then by dimension order and group name.
        """
        if self._watermark is None or watermark_ms > self._watermark:
            self._watermark = int(watermark_ms)
        out: list[dict[str, Any]] = []
        for start in sorted(s for s in self._windows if self._closed(s)):
            groups = self._windows.pop(start)
            order = {d: i for i, d in enumerate(("all", *self.dimensions))}
            for dim, name in sorted(groups, key=lambda k: (order[k[0]], k[1])):
                end = start + self.window_ms
                out.append({"schema_version": 1, "kind": "rollup", "ts": end,
                            "window_start": start, "window_end": end, "dimension": dim,
                            "group": name, **groups[dim, name].summary()})
        return out
