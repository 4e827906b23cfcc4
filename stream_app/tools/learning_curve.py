"""The learning curve of a simulated run: reward per decision over event time, against the oracle
and a random choice, as numbers (``learning_curve``) and as a PNG (``write_png``).

A trace row is one decision of ``kafka/traffic.py``: ``(request ts, chosen, oracle, random)``,
the true response probabilities of the offer the engine chose, of the best offer for that request
and of a uniform choice among its candidates. Rows are binned by event time; a bin's figures are
means over its decisions, and its ``efficiency`` is the engine's expected reward over the
oracle's (the measure of ``docs/benchmarks/learning.md``).

>>> hour = 3_600_000
>>> trace = [(0, 0.1, 0.4, 0.1), (hour, 0.3, 0.4, 0.2), (7 * hour, 0.4, 0.5, 0.1)]
>>> c = learning_curve(trace, start_ms=0, bin_h=6.0)
>>> c["hours"], c["decisions"], c["engine"], c["efficiency"]
([3.0, 9.0], [2, 1], [0.2, 0.4], [0.5, 0.8])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["learning_curve", "write_png"]

HOUR_MS = 3_600_000


def learning_curve(trace: Sequence[tuple[int, float, float, float]], start_ms: int,
                   bin_h: float) -> dict[str, Any]:
    """Per ``bin_h`` hours of event time from ``start_ms`` (bins without decisions left out):
    bin centre in hours, decisions, mean reward of the engine, the oracle and random, and the
    engine's and random's share of the oracle."""
    rows = np.array(trace, np.float64).reshape(-1, 4)
    b = ((rows[:, 0] - start_ms) // (bin_h * HOUR_MS)).astype(np.int64)
    keep = np.unique(b)
    n = np.array([np.sum(b == k) for k in keep])

    def mean(col: int) -> np.ndarray:
        return np.array([rows[b == k, col].mean() for k in keep])

    engine, oracle, random = mean(1), mean(2), mean(3)
    rounded = lambda v: [round(float(x), 4) for x in v]  # noqa: E731
    return {"hours": rounded((keep + 0.5) * bin_h), "decisions": [int(x) for x in n],
            "engine": rounded(engine), "oracle": rounded(oracle), "random": rounded(random),
            "efficiency": rounded(engine / oracle), "random_efficiency": rounded(random / oracle)}


def write_png(curve: dict[str, Any], path: Path, title: str, halfway_h: float | None = None) -> None:
    """The curve as a PNG: reward per decision (engine, oracle, random) over event time above,
    the engine's and random's share of the oracle below; ``halfway_h`` marks the halves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = np.array(curve["hours"]) / 24.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    top.plot(days, curve["oracle"], color="black", lw=1.5, label="oracle (best offer per request)")
    top.plot(days, curve["engine"], color="tab:blue", lw=2, marker="o", ms=3, label="engine")
    top.plot(days, curve["random"], color="tab:gray", lw=1.5, ls="--", label="random offer")
    top.set_ylabel("reward per decision\n(true response probability)")
    top.set_ylim(0, max(curve["oracle"]) * 1.35)  # room for the legend above the curves
    top.legend(loc="upper center", ncol=3, fontsize=9)
    top.set_title(title, fontsize=10)
    bottom.plot(days, curve["efficiency"], color="tab:blue", lw=2, marker="o", ms=3,
                label="engine / oracle")
    bottom.plot(days, curve["random_efficiency"], color="tab:gray", lw=1.5, ls="--",
                label="random / oracle")
    bottom.axhline(1.0, color="black", lw=1)
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("share of the oracle")
    bottom.set_xlabel("event time (days)")
    bottom.legend(loc="lower right", fontsize=9)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if halfway_h is not None:
            ax.axvline(halfway_h / 24.0, color="tab:red", lw=1, ls=":")
    if halfway_h is not None:
        bottom.text(halfway_h / 24.0, 0.05, " second half", color="tab:red", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
