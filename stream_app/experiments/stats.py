"""In-stream experiment statistics: running sums per arm, readable at any moment.

``ExperimentStats`` keeps one row of sufficient statistics per arm (exposures, outcomes,
responses, value and its square, non-zero values, one count per guardrail metric): O(1) work
per event, a few hundred bytes of state, a versioned binary codec. ``snapshot`` turns it into a
JSON-ready ``delta-metrics`` record (kind ``experiment``) with, for every arm against the
baseline (the control group, else the first arm), the lift in response rate and in value per
outcome with an *anytime-valid* confidence sequence (``sequential.py``), a sample-ratio check
and guardrail alarms. Lift sequences are Bonferroni-corrected over the arms compared, so the
chance that any arm ever shows a false lift stays below ``alpha`` however often it is read.

Every decision served under the experiment is an exposure; every outcome (including "ignored"
from the attribution timer) is an outcome of that arm. For a ``no_action`` control group the
caller records an outcome at the end of the attribution window (organic response, or 0).
Partitions keep their own stats; ``merge`` adds them up.

>>> from stream_app.experiments.config import parse_experiment
>>> exp = parse_experiment({"id": "e", "arms": [{"name": "A"}, {"name": "B"}], "min_n": 2})
>>> st = ExperimentStats(exp)
>>> for arm, r in [("A", 0), ("A", 1), ("B", 1), ("B", 1)]:
...     st.add_exposure(arm); st.add_outcome(arm, reward=r, value=10.0 * r)
>>> snap = st.snapshot(ts_ms=0)
>>> snap["kind"], [a["response_rate"] for a in snap["arms"]], snap["arms"][1]["lift"]["diff"]
('experiment', [0.5, 1.0], 0.5)
>>> ExperimentStats.decode(exp, st.encode()).snapshot(0) == snap
True
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import numpy as np

from stream_app.experiments.config import Experiment
from stream_app.experiments.sequential import Bounds, diff_cs, mean_cs
from stream_app.experiments.srm import SampleRatio, sample_ratio_check

__all__ = ["ExperimentStats", "StatsCodecError", "COLUMNS"]

COLUMNS = ("exposures", "outcomes", "responses", "value", "value_sq", "value_events")
EXP, OUT, RESP, VAL, VAL2, VALN = range(len(COLUMNS))
_HEADER = struct.Struct("<BxHHxxI")  # version, n_arms, n_cols, fingerprint
_VERSION = 1
MIN_VALUE_EVENTS = 20


class StatsCodecError(ValueError):
    """Stored experiment statistics that cannot be decoded for this experiment."""


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class ExperimentStats:
    """Running per-arm statistics of one experiment (one partition's share of its traffic)."""

    def __init__(self, experiment: Experiment, table: np.ndarray | None = None) -> None:
        self.experiment = experiment
        self._metrics = tuple(g.metric for g in experiment.guardrails)
        shape = (len(experiment.arms), len(COLUMNS) + len(self._metrics))
        self._table = np.zeros(shape) if table is None else table
        if self._table.shape != shape:
            raise ValueError(f"table shape {self._table.shape} does not fit {shape}")

    @property
    def table(self) -> np.ndarray:
        """A read-only view: one row per arm, ``COLUMNS`` then one column per guardrail."""
        view = self._table.view()
        view.flags.writeable = False
        return view

    def add_exposure(self, arm: str, n: int = 1) -> None:
        self._table[self.experiment.index_of(arm), EXP] += n

    def add_outcome(self, arm: str, reward: float, value: float = 0.0) -> None:
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {reward}")
        row = self._table[self.experiment.index_of(arm)]
        row[OUT] += 1
        row[RESP] += reward
        row[VAL] += value
        row[VAL2] += value * value
        row[VALN] += value != 0

    def add_guardrail_event(self, arm: str, metric: str) -> None:
        """A harm event (opt-out, complaint...) by a customer of ``arm``."""
        try:
            col = len(COLUMNS) + self._metrics.index(metric)
        except ValueError:
            raise KeyError(f"{self.experiment.id!r} has no guardrail {metric!r}") from None
        self._table[self.experiment.index_of(arm), col] += 1

    def merge(self, other: ExperimentStats) -> ExperimentStats:
        """The statistics of both (e.g. two partitions); the experiment must be the same."""
        if _fingerprint(other.experiment) != _fingerprint(self.experiment):
            raise ValueError("cannot merge statistics of different experiments")
        return ExperimentStats(self.experiment, self._table + other._table)

    # -- reading -----------------------------------------------------------------------------
    def lift(self, arm: str, metric: str = "response_rate") -> Bounds:
        """Arm minus baseline for ``response_rate`` or ``value`` (per outcome), with its CS."""
        e, t = self.experiment, self._table
        i, b = e.index_of(arm), e.baseline
        alpha = e.alpha / max(1, len(e.arms) - 1)
        common = dict(alpha=alpha, plan_n=e.plan_n, min_n=e.min_n)
        if metric == "response_rate":
            return diff_cs(t[i, OUT], t[i, RESP], None, t[b, OUT], t[b, RESP], None, binary=True,
                           **common)  # fmt: skip
        if metric == "value":
            return diff_cs(t[i, OUT], t[i, VAL], t[i, VAL2], t[b, OUT], t[b, VAL], t[b, VAL2],
                           events_t=t[i, VALN], events_c=t[b, VALN],
                           min_events=MIN_VALUE_EVENTS, **common)  # fmt: skip
        raise KeyError(f"unknown metric {metric!r}")

    def srm(self) -> SampleRatio:
        e = self.experiment
        return sample_ratio_check(self._table[:, EXP], e.shares, e.srm_alpha)

    def guardrails(self) -> list[dict[str, Any]]:
        """One record per (guardrail, arm): rate per exposure, its CS, and whether it alarms."""
        e, t, out = self.experiment, self._table, []
        common = dict(alpha=e.alpha, plan_n=e.plan_n, min_n=e.min_n, binary=True)
        for j, g in enumerate(e.guardrails):
            col = len(COLUMNS) + j
            for i, arm in enumerate(e.arms):
                rate = mean_cs(t[i, EXP], t[i, col], **common)
                reasons = []
                if g.max_rate is not None and rate.low > g.max_rate:
                    reasons.append(f"{g.metric} rate above {g.max_rate:g}")
                if g.max_increase is not None and i != e.baseline:
                    inc = diff_cs(t[i, EXP], t[i, col], None, t[e.baseline, EXP],
                                  t[e.baseline, col], None, **common)  # fmt: skip
                    if inc.low > g.max_increase:
                        reasons.append(f"{g.metric} rate above baseline by > {g.max_increase:g}")
                out.append({"metric": g.metric, "arm": arm.name, "events": int(t[i, col]),
                            "rate": _num(rate.estimate) if t[i, EXP] else None,
                            "cs": [_num(rate.low), _num(rate.high)],
                            "alarm": bool(reasons), "reasons": reasons})  # fmt: skip
        return out

    def _lift_dict(self, arm: str, metric: str, base_mean: float) -> dict[str, Any]:
        b = self.lift(arm, metric)
        diff = _num(b.estimate) if self._table[self.experiment.index_of(arm), OUT] else None
        rel = diff / base_mean if diff is not None and base_mean else None
        return {"diff": diff, "cs": [_num(b.low), _num(b.high)], "relative": rel,
                "significant": bool(b.low > 0 or b.high < 0)}  # fmt: skip

    def snapshot(self, ts_ms: int) -> dict[str, Any]:
        """A JSON-ready ``delta-metrics`` record of kind ``experiment``."""
        e, t = self.experiment, self._table
        arms = []
        base = e.baseline
        base_rate = t[base, RESP] / t[base, OUT] if t[base, OUT] else 0.0
        base_value = t[base, VAL] / t[base, OUT] if t[base, OUT] else 0.0
        for i, arm in enumerate(e.arms):
            n_out = t[i, OUT]
            rate = mean_cs(n_out, t[i, RESP], alpha=e.alpha, plan_n=e.plan_n, min_n=e.min_n,
                           binary=True)  # fmt: skip
            row = {"arm": arm.name, "control": arm.control, "share": float(e.shares[i]),
                   "exposures": int(t[i, EXP]), "outcomes": int(n_out),
                   "responses": float(t[i, RESP]),
                   "response_rate": _num(rate.estimate) if n_out else None,
                   "response_rate_cs": [_num(rate.low), _num(rate.high)],
                   "value": float(t[i, VAL]),
                   "value_per_outcome": float(t[i, VAL] / n_out) if n_out else None}  # fmt: skip
            if i != base:
                row["lift"] = self._lift_dict(arm.name, "response_rate", base_rate)
                row["value_lift"] = self._lift_dict(arm.name, "value", base_value)
            arms.append(row)
        guard = self.guardrails()
        srm = self.srm()
        return {"kind": "experiment", "ts": int(ts_ms), "experiment_id": e.id,
                "use_case": e.use_case, "baseline": e.arms[base].name, "alpha": e.alpha,
                "anytime_valid": True, "arms": arms, "srm": srm.as_dict(),
                "guardrails": guard,
                "alarm": srm.flagged or any(g["alarm"] for g in guard)}  # fmt: skip

    # -- state -------------------------------------------------------------------------------
    def encode(self) -> bytes:
        k, m = self._table.shape
        head = _HEADER.pack(_VERSION, k, m, _fingerprint(self.experiment))
        return head + self._table.astype("<f8").tobytes()

    @classmethod
    def decode(cls, experiment: Experiment, data: bytes | None) -> ExperimentStats:
        """Stored statistics, or empty ones for ``None``; raises if they belong elsewhere."""
        if not data:
            return cls(experiment)
        if len(data) < _HEADER.size:
            raise StatsCodecError("experiment stats shorter than their header")
        version, k, m, fp = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise StatsCodecError(f"unknown experiment stats version {version}")
        if fp != _fingerprint(experiment):
            raise StatsCodecError("stored stats belong to a different experiment definition")
        body = memoryview(data)[_HEADER.size :]
        if len(body) != k * m * 8:
            raise StatsCodecError("experiment stats length does not match their shape")
        return cls(experiment, np.frombuffer(body, "<f8").reshape(k, m).astype(np.float64))


def _fingerprint(e: Experiment) -> int:
    names = [e.id, *e.arm_names, "|", *(g.metric for g in e.guardrails)]
    return zlib.crc32("\x1f".join(names).encode())
