"""Markdown rendering of benchmark and off-policy results (plain text, no plotting).

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
