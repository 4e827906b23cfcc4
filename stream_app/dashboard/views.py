"""The chart series and experiment tables of the dashboard's summary, from what the board keeps.

``read_experiment`` checks and trims one ``experiment`` record of ``delta-metrics`` (kind
``experiment``: per arm its exposures, outcomes, responses, response rate with an anytime-valid
confidence sequence, and the lift over the baseline arm with its own); ``experiment_rows`` puts
the latest records of each experiment together. Records without a ``partition`` are
fleet-wide; when several partitions publish their own, their counts are added up and the
rates and lifts recomputed from the sums, without intervals (confidence sequences of parts do
not add up to one of the whole).

``series_view`` turns ``TimeBuckets`` into the arrays the page draws.

>>> record = {"kind": "experiment", "ts": 5, "experiment_id": "e", "baseline": "A", "arms": [
...     {"arm": "A", "exposures": 10, "outcomes": 10, "responses": 2.0},
...     {"arm": "B", "exposures": 10, "outcomes": 10, "responses": 4.0}]}
>>> parts = [read_experiment({**record, "partition": p}) for p in (0, 1)]
>>> [(a["arm"], a["outcomes"], a["response_rate"], a["lift"]) for a in
...  experiment_rows(parts)[0]["arms"]]
[('A', 20, 0.2, None), ('B', 20, 0.4, 0.2)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from stream_app.dashboard.rates import rate, wilson
from stream_app.dashboard.series import TimeBuckets

__all__ = ["experiment_rows", "read_experiment", "series_view"]


def read_experiment(m: dict[str, Any]) -> dict[str, Any]:
    """The fields of an ``experiment`` record the dashboard shows; ValueError (or TypeError,
    KeyError) if they are not what the record should hold."""
    arms = m["arms"]
    if not isinstance(arms, list) or not arms:
        raise ValueError("experiment record without arms")
    return {"experiment_id": str(m["experiment_id"]), "use_case": m.get("use_case"),
            "baseline": str(m.get("baseline") or _arm(arms[0])["arm"]), "ts": m["ts"],
            "partition": m.get("partition"), "alarm": bool(m.get("alarm")),
            "srm": bool((m.get("srm") or {}).get("flagged")), "arms": [_arm(a) for a in arms]}


def _arm(a: Any) -> dict[str, Any]:
    if not isinstance(a, dict):
        raise TypeError("an experiment arm is not an object")
    lifted = a.get("lift") if isinstance(a.get("lift"), dict) else {}
    return {"arm": str(a["arm"]), "control": bool(a.get("control")),
            "exposures": int(a["exposures"]), "outcomes": int(a["outcomes"]),
            "responses": float(a["responses"]),
            "interval": _pair(a.get("response_rate_cs")),
            "lift": _number(lifted.get("diff")), "lift_interval": _pair(lifted.get("cs")),
            "significant": bool(lifted.get("significant")) if lifted else None}


def _number(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def _pair(x: Any) -> list[float] | None:
    if isinstance(x, list) and len(x) == 2:
        low, high = _number(x[0]), _number(x[1])
        if low is not None and high is not None:
            return [low, high]
    return None


def experiment_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per experiment from the latest record of each source (``read_experiment``)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_id.setdefault(r["experiment_id"], []).append(r)
    out = []
    for exp_id in sorted(by_id):
        parts = by_id[exp_id]
        whole = len(parts) == 1
        arms: dict[str, dict[str, Any]] = {}
        for part in parts:
            for a in part["arms"]:
                row = arms.setdefault(a["arm"], {**a, "exposures": 0, "outcomes": 0,
                                                 "responses": 0.0})
                for k in ("exposures", "outcomes", "responses"):
                    row[k] += a[k]
        baseline = parts[0]["baseline"]
        base = arms.get(baseline)
        base_rate = rate(base["responses"], base["outcomes"]) if base else None
        for name, row in arms.items():
            row["response_rate"] = rate(row["responses"], row["outcomes"])
            if not whole:  # recomputed from the sums, without intervals
                row["interval"] = row["lift_interval"] = row["significant"] = None
                row["lift"] = (row["response_rate"] - base_rate if name != baseline
                               and row["response_rate"] is not None and base_rate is not None
                               else None)
        out.append({"experiment_id": exp_id, "use_case": parts[0]["use_case"],
                    "baseline": baseline, "ts": max(p["ts"] for p in parts),
                    "sources": len(parts), "anytime_valid": whole,
                    "alarm": any(p["alarm"] for p in parts),
                    "srm": any(p["srm"] for p in parts), "arms": list(arms.values())})
    return out


def series_view(series: TimeBuckets, oracle: bool = False) -> dict[str, Any]:
    """Per bucket of event time: response rates (with Wilson intervals) overall, per policy and
    per arm; mean predicted probability; each offer's share of decisions; with the simulator,
    the true response rate of the engine's choices, the oracle's and a random choice's."""
    rows = list(series.rows())
    keys = {k for _, sums in rows for k in sums}

    def line(key: tuple) -> dict[str, list]:
        n = [sums[key][0] if key in sums else 0.0 for _, sums in rows]
        y = [sums[key][1] if key in sums else 0.0 for _, sums in rows]
        intervals = [wilson(yi, ni) for yi, ni in zip(y, n)]
        return {"n": [int(v) for v in n], "rate": [rate(yi, ni) for yi, ni in zip(y, n)],
                "low": [i[0] if i else None for i in intervals],
                "high": [i[1] if i else None for i in intervals]}

    def named(kind: str, dimension: str) -> dict[str, dict[str, list]]:
        return {k[2]: line(k) for k in sorted(k for k in keys if k[:2] == (kind, dimension))}

    overall = ("rate", "all", "*")
    shown = sorted(k for k in keys if k[0] == "shown")
    totals = [sum(sums[k][0] for k in shown if k in sums) for _, sums in rows]
    out: dict[str, Any] = {
        "width_ms": series.width_ms, "start_ms": [start for start, _ in rows],
        "response_rate": line(overall),
        "mean_predicted": [rate(sums[overall][2], sums[overall][0]) if overall in sums else None
                           for _, sums in rows],
        "by_policy": named("rate", "policy"), "by_arm": named("rate", "experiment_arm"),
        "exposure_share": {k[1]: [rate(sums[k][0], t) if k in sums else (0.0 if t else None)
                                  for (_, sums), t in zip(rows, totals)] for k in shown},
        "oracle": None,
    }
    if oracle:
        key = ("oracle",)
        out["oracle"] = {name: [rate(sums[key][col], sums[key][0]) if key in sums else None
                                for _, sums in rows]
                         for col, name in ((1, "chosen"), (2, "best"), (3, "random"))}
    return out
