"""Markdown rendering of benchmark and off-policy results; learning curves as a PNG (matplotlib,
optional).

>>> print(markdown_table([{"agent": "oracle", "efficiency": 1.0, "hours": None}]))
| agent | efficiency | hours |
|---|---:|---:|
| oracle | 1.000 | – |
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

BENCHMARK_COLUMNS = (
    "agent", "seeds", "cumulative_reward", "response_rate", "expected_rate", "regret",
    "efficiency", "reconverge_hours", "never_reconverged",
)  # fmt: skip


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".3f"
) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, missing values as a dash."""
    if not rows:
        return ""
    cols = list(columns or rows[0].keys())
    numeric = [all(r.get(c) is None or isinstance(r.get(c), (int, float)) for r in rows)
               for c in cols]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]  # fmt: skip
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), floatfmt) for c in cols) + " |")
    return "\n".join(lines)


def benchmark_markdown(result: Mapping[str, Any]) -> str:
    """The summary of ``run_benchmark`` as a Markdown section (mean over seeds; ± sd)."""
    cfg = result["config"]
    rows = []
    for row in result["summary"]:
        out = dict(row)
        for key in ("cumulative_reward", "response_rate", "regret", "efficiency"):
            out[key] = f"{row[key]:.3f} ± {row[f'{key}_sd']:.3f}"
        rows.append(out)
    head = (f"Seeds {cfg['seeds']}, {cfg['n_customers']} customers, {cfg['days']} days, "
            f"drift at day(s) {cfg['drift_days']}; re-convergence window {cfg['window_h']} h"
            f", tolerance {cfg['tolerance']}.")  # fmt: skip
    return head + "\n\n" + markdown_table(rows, BENCHMARK_COLUMNS)


def _pm(pair: Sequence[float | None], fmt: str = ".3f") -> str:
    mean, sd = pair
    return "–" if mean is None else f"{mean:{fmt}} ± {sd:{fmt}}"


def learning_markdown(result: Mapping[str, Any]) -> str:
    """``learning.run_learning`` as Markdown: one row per agent, per horizon, mean ± sd."""
    cfg = result["config"]
    labels = [h[0] for h in cfg["horizons"]]
    oracle = next((r for r in result["summary"] if r["agent"] == "oracle"), None)
    rows = []
    for row in result["summary"]:
        out: dict[str, Any] = {"agent": row["agent"]}
        for label in labels:
            out[f"efficiency {label}"] = _pm(row["horizons"][label]["efficiency"])
        out["response rate"] = _pm((row["response_rate"], row["response_rate_sd"]), ".4f")
        if oracle is not None:
            out["of oracle's response rate"] = f"{row['response_rate'] / oracle['response_rate']:.1%}"
        out["regret"] = _pm((row["regret"], row["regret_sd"]), ".0f")
        out["re-converged after (h)"] = row["reconverge_hours"]
        out["never"] = row["never_reconverged"]
        out["no_action"] = f"{row['no_action_rate']:.1%}"
        rows.append(out)
    head = (f"Seeds {cfg['seeds']} (common random numbers), {cfg['n_customers']} customers, "
            f"{cfg['days']} days, drift at day(s) {cfg['drift_days']}. Efficiency = true response "
            f"probability of the chosen offers / the oracle's, over the window; mean ± sd over "
            f"seeds.")  # fmt: skip
    return head + "\n\n" + markdown_table(rows, floatfmt=".1f")


def learning_curves_png(result: Mapping[str, Any], path: str, agents: Sequence[str] | None = None
                        ) -> bool:
    """Efficiency per time bin, mean over seeds with a 95 % band (t interval); False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from scipy import stats
    except ImportError:
        return False
    cfg = result["config"]
    names = list(agents or dict.fromkeys(r["agent"] for r in result["runs"]))
    fig, ax = plt.subplots(figsize=(9, 5))
    for name in names:
        mine = [r["curve"] for r in result["runs"] if r["agent"] == name]
        if not mine:
            continue
        hours = np.array(mine[0]["hours"]) / 24.0
        eff = np.array([c["efficiency"] for c in mine], np.float64)
        mean = np.nanmean(eff, axis=0)
        ax.plot(hours, mean, label=name, lw=1.8 if name.startswith("engine") else 1.2)
        if len(mine) > 1:
            half = stats.t.ppf(0.975, len(mine) - 1) * np.nanstd(eff, axis=0, ddof=1) / np.sqrt(len(mine))
            ax.fill_between(hours, mean - half, mean + half, alpha=0.2)
    for d in cfg["drift_days"]:
        ax.axvline(d, color="grey", ls="--", lw=1)
    ax.axhline(0.9, color="black", ls=":", lw=1)
    ax.set_xlabel("day")
    ax.set_ylabel(f"efficiency (true response rate / oracle's), {cfg['bin_h']:g} h bins")
    ax.set_title(f"Learning curves, {len(cfg['seeds'])} seeds, 95 % bands; drift at day "
                 f"{', '.join(f'{d:g}' for d in cfg['drift_days'])}")
    ax.set_ylim(0.0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
