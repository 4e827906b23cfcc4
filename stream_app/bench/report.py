"""Numbers out of what the generator sent and the collector saw, and the report files: JSON,
a Markdown table, a PNG of latency against offered load.

>>> s = latency_summary([1.0, 2.0, 3.0, 4.0, float("nan")])
>>> s["n"], s["p50"], s["max"]
(4, 2.5, 4.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream_app.bench.load import PhaseLog, Sent
from stream_app.bench.profile import MAIN_THREAD

PERCENTILES = (50, 95, 99)


def latency_summary(values: Iterable[float]) -> dict[str, Any]:
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    p = np.percentile(a, PERCENTILES)
    return {"n": int(a.size), **{f"p{q}": round(float(v), 3) for q, v in zip(PERCENTILES, p)},
            "max": round(float(a.max()), 3), "mean": round(float(a.mean()), 3)}


def phase_summary(sent: Sent, log: PhaseLog, cpu: dict[str, float | None], cpu_wall_s: float,
                  warm_s: float) -> dict[str, Any]:
    """One phase: the steady part starts ``warm_s`` after the first request and ends with the
    last request sent (at a set rate) or the last decision (flat out, where the window keeps the
    engine busy until then); decisions consumed in it, over its length, are the sustained
    throughput. ``cpu`` is CPU seconds per process over ``cpu_wall_s`` (sending + draining)."""
    received = np.frombuffer(log.received_at, dtype=float) if len(log.received_at) else np.zeros(0)
    # flat out, or overloaded at a set rate: the engine works through a queue until the last
    # decision, so that is where its sustained rate is measured
    queued = sent.target_rate == 0 or sent.overloaded
    end = received.max() if queued and received.size else sent.ended
    steady_from = sent.started + min(warm_s, 0.3 * (end - sent.started))
    steady_to = max(end, steady_from + 1e-3)
    mask = (received >= steady_from) & (received <= steady_to)
    steady_s = steady_to - steady_from
    late = received >= steady_from  # latency: every decision after the warm-up, drain included

    def lat(arr) -> dict[str, Any]:
        a = np.frombuffer(arr, dtype=float) if len(arr) else np.zeros(0)
        return latency_summary(a[late] if late.any() else a)

    per_second = []
    if received.size:
        edges = np.arange(sent.started, max(received.max(), sent.ended) + 1.0, 1.0)
        per_second = np.histogram(received, bins=edges)[0].astype(int).tolist()
    decisions = int(received.size)
    cores = {k: (None if v is None else round(v / cpu_wall_s, 3)) for k, v in cpu.items()}
    return {
        "tag": sent.tag,
        "offered_rate": sent.target_rate or "flat out",
        "requests": sent.requests,
        "interactions": sent.interactions,
        "decisions": decisions,
        "missing": sent.requests - decisions,
        "no_action": log.no_action,
        "outcomes": log.outcomes,
        "seconds": round(sent.seconds, 3),
        "send_rate": round(sent.send_rate, 1),
        "throughput": round(float(mask.sum()) / steady_s, 1) if steady_s > 0 else None,
        "steady_seconds": round(steady_s, 3),
        "latency_e2e_ms": lat(log.e2e_ms),
        "latency_to_decision_log_ms": lat(log.to_log_ms),
        "latency_engine_ms": lat(log.engine_ms),
        "decisions_per_second": per_second,
        "overloaded": sent.overloaded,
        "generator": {"behind_schedule_s": round(sent.behind_s, 3),
                      "window_full_s": round(sent.window_full_s, 3)},
        "cpu_seconds": {k: (None if v is None else round(v, 2)) for k, v in cpu.items()},
        "cpu_cores": cores,
        "generator_saturated": generator_saturated(sent, cores.get("generator")),
    }


def generator_saturated(sent: Sent, generator_cores: float | None) -> bool:
    """The generator, not the engine, limited the phase: it fell behind a set rate by more than
    5 %, or it used most of a core (its Python thread is the bound) without waiting on the
    engine."""
    if sent.target_rate > 0 and sent.behind_s > 0.05 * sent.seconds:
        return True
    if sent.target_rate == 0 and sent.seconds > 1.0 and sent.window_full_s < 0.2 * sent.seconds:
        return True
    return bool(generator_cores is not None and generator_cores > 0.9)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _phase_rows(phases: Sequence[dict[str, Any]]) -> list[str]:
    rows = ["| phase | offered req/s | sent req/s | decisions/s (steady) | p50 ms | p95 ms | "
            "p99 ms | max ms | engine p50 / p99 ms | CPU cores worker / broker / generator / "
            "other processes | "
            "notes |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for ph in phases:
        e, g, c = ph["latency_e2e_ms"], ph["latency_engine_ms"], ph["cpu_cores"]
        rows.append(
            f"| {ph['name']} | {_f(ph['offered_rate'])} | {_f(ph['send_rate'])} | "
            f"{_f(ph['throughput'])} | {_f(e['p50'], 2)} | {_f(e['p95'], 2)} | {_f(e['p99'], 2)} | "
            f"{_f(e['max'], 1)} | {_f(g['p50'], 2)} / {_f(g['p99'], 2)} | "
            f"{_f(c.get('worker'), 2)} / {_f(c.get('broker'), 2)} / {_f(c.get('generator'), 2)} / "
            f"{_f(c.get('others'), 2)} | "
            f"{_phase_note(ph)} |")
    return rows


def _phase_note(ph: dict[str, Any]) -> str:
    notes = []
    if ph.get("overloaded"):
        notes.append("overloaded: stopped early")
    if ph["generator_saturated"]:
        notes.append("generator-bound")
    if ph["missing"]:
        notes.append(f"{ph['missing']:,} without decision")
    return ", ".join(notes)


def markdown(report: dict[str, Any]) -> str:
    m, p, st = report["machine"], report["params"], report["state"]
    lines = [f"### {report['name']} — {report['started_at']}", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; "
             f"Python {m['python']}; Kafka {report['kafka']['version']} "
             f"({report['kafka']['where']}); confluent-kafka {m['confluent_kafka']} / librdkafka "
             f"{m['librdkafka']}; faust-streaming {m['faust']}; rocksdict {m['rocksdict']}.", "",
             *([f"**Answered by `{p['worker']}`** (`bench/relay.py`, options "
                f"`{' '.join(p.get('relay_args') or []) or 'defaults'}`): the engine taken out, "
                "the same inputs read and records written; no state, no decision logic.", ""]
               if p.get("worker", "engine") != "engine" else []),
             f"Load: {p['customers']:,} customers"
             + (f" preloaded through the engine, cloned to {p['bulk_customers']:,} (bulk state)"
                if p.get("bulk_customers") else "")
             + f", RocksDB budget {_budget(p.get('rocksdb_memory_mb'))}, {p['offers']} offers, policy `{p['policy']}`, "
             f"{p['partitions']} partitions, ~{p['payload_bytes']} B requests, "
             f"{p['interactions_per_request']} interactions and {p['outcome_fraction']:.0%} "
             f"outcomes per request, attribution window {p['attribution_s']} s, flat-out window "
             f"{p['window']:,} requests in flight, generator linger {p['linger_ms']} ms"
             + (f", processing guarantee `{p['processing_guarantee']}`"
                if p.get("processing_guarantee") else "") + ".", ""]
    lines += _phase_rows(report["phases"])
    rs = report["rss"]
    lines += ["", "| measure | value |", "|---|---|",
              f"| worker start to first decision (cold, empty state) | {_f(report['cold_start_s'], 2)} s |",
              f"| worker peak RSS (VmHWM) | {_f(rs['worker_peak_mb'])} MB |",
              f"| worker RSS after preload / after main run / at end | "
              f"{_f(rs['after_preload_mb'])} / {_f(rs.get('after_main_mb'))} / "
              f"{_f(rs['at_end_mb'])} MB |",
              *([f"| worker RSS after serving again after the local restart | "
                 f"{_f(rs['after_restart_serving_mb'])} MB |"]
                if rs.get("after_restart_serving_mb") is not None else []),
              *([f"| worker RSS over the second half of serving after the restart: mean (min-max) | "
                 f"{_f(h['mean'])} ({_f(h['min'])}-{_f(h['max'])}) MB |"]
                if (h := rs.get("after_restart_serving_second_half_mb")) else []),
              f"| customers with state | {_f(st.get('customers_with_state'))} |",
              f"| data dir on disk (du) | {_f(st.get('disk_bytes'))} B |",
              f"| on disk per customer | {_f(st.get('disk_bytes_per_customer'))} B |",
              f"| per-customer state, logical (key + value of the rows keyed by a customer) | "
              f"{_f(st.get('logical_bytes_per_customer'))} B |",
              f"| max committed lag on decision-requests | {_f(report['lag']['max_committed'])} |",
              f"| max requests in flight | {_f(report['lag']['max_in_flight'])} |"]
    b = report.get("bulk")
    if b:
        lines += [f"| bulk state: rows cloned into the changelogs / time to produce | "
                  f"{_f(b['records'])} rows for {_f(b['customers'])} customers / "
                  f"{_f(b['seconds'], 1)} s |",
                  f"| bulk state: worker start to first decision (catching up the changelogs) | "
                  f"{_f(b['to_serving_s'], 2)} s (RSS then {_f(b['rss_serving_mb'])} MB) |"]
    for r in report.get("restarts", []):
        recovered = (f" ({r['customers_recovered']:,} customers with state after it)"
                     if "customers_recovered" in r else "")
        lines.append(f"| restart ({r['mode']}) with {r['customers_with_state']:,} customers: "
                     f"stop / start-to-serving | {_f(r['stop_s'], 2)} s / "
                     f"{_f(r['to_serving_s'], 2)} s{recovered} |")
    tables = st.get("tables") or {}
    if tables:
        lines += ["", "| table | rows | of them keyed by a customer | logical bytes (key + value) "
                  "| of them in customer rows | bytes on disk |", "|---|---|---|---|---|---|"]
        for name, t in tables.items():
            lines.append(f"| {name} | {t['keys']:,} | {t['customer_keys']:,} | "
                         f"{t['logical_bytes']:,} | {t['customer_bytes']:,} | {t['disk_bytes']:,} |")
    lines += _over_time_lines(report["lag"]["samples"])
    lines += _traffic_lines(report.get("traffic"))
    if "profile" in report:
        lines += _profile_lines(report["profile"]) + _broker_thread_lines(report["broker_threads"])
    if report.get("notes"):
        lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def over_time(samples: Sequence[dict[str, Any]], phase: str = "m",
              every_s: float = 60.0) -> list[dict[str, Any]]:
    """The main phase minute by minute (a soak: does RSS or lag keep growing?): per window of
    ``every_s`` seconds from the phase's first sample, the worker's RSS at its end and at most,
    the committed lag on ``decision-requests`` at its end and at most.

    >>> rows = over_time([{"phase": "m", "t": t, "worker_rss_mb": 100 + t,
    ...                    "committed_lag": 5} for t in range(0, 130, 10)], every_s=60)
    >>> [(r["minute"], r["rss_end_mb"], r["rss_max_mb"]) for r in rows]
    [(1, 150, 150), (2, 210, 210), (3, 220, 220)]
    """
    rows: list[dict[str, Any]] = []
    ours = [x for x in samples if x.get("phase") == phase]
    if not ours:
        return rows
    start = ours[0]["t"]
    window: list[dict[str, Any]] = []
    for x in ours + [None]:  # type: ignore[list-item]
        if x is None or (window and x["t"] - start >= every_s * (len(rows) + 1)):
            rss = [w["worker_rss_mb"] for w in window if w.get("worker_rss_mb") is not None]
            lag = [w["committed_lag"] for w in window if w.get("committed_lag") is not None]
            rows.append({"minute": len(rows) + 1,
                         "rss_end_mb": rss[-1] if rss else None,
                         "rss_max_mb": max(rss) if rss else None,
                         "lag_end": lag[-1] if lag else None,
                         "lag_max": max(lag) if lag else None})
            window = []
        if x is not None:
            window.append(x)
    return rows


def _over_time_lines(samples: Sequence[dict[str, Any]]) -> list[str]:
    rows = over_time(samples)
    if len(rows) < 3:  # a short run: the phase table says it all
        return []
    lines = ["", "The main phase minute by minute (committed lag on decision-requests, in "
             "records):", "", "| minute | RSS at its end MB | RSS max MB | lag at its end | "
             "lag max |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['minute']} | {_f(r['rss_end_mb'])} | {_f(r['rss_max_mb'])} | "
                     f"{_f(r['lag_end'])} | {_f(r['lag_max'])} |")
    return lines


def _traffic_lines(tr: dict[str, Any] | None) -> list[str]:
    """Records per topic over the run and per request sent (what each request costs the broker)."""
    if not tr or not tr.get("requests"):
        return []
    n, per = tr["requests"], tr["records_per_request"]
    lines = ["", f"Records written per topic over the run ({n:,} requests sent; inputs included):",
             "", "| topic | records | per request | bytes on the broker's disk | per record |",
             "|---|---|---|---|---|"]
    for name, row in sorted(tr["topics"].items(), key=lambda kv: -kv[1]["records"]):
        disk = row.get("disk_bytes")
        lines.append(f"| {name} | {row['records']:,} | {per[name]:.2f} | "
                     f"{_f(disk)} | {_f(disk / row['records'] if disk and row['records'] else None)} |")
    lines.append(f"| all | {sum(r['records'] for r in tr['topics'].values()):,} | "
                 f"{tr['total_records_per_request']} | | |")
    if tr.get("worker_records_per_request") is not None:
        bulk = tr.get("bulk_records") or 0
        lines += ["", f"Records written by the worker per request (inputs and the config not "
                      f"counted{f', nor the {bulk:,} rows the bench cloned' if bulk else ''}): "
                      f"**{tr['worker_records_per_request']:.2f}**."]
    return lines


def _profile_lines(pr: dict[str, Any]) -> list[str]:
    if not pr["taken"]:
        return ["", f"profile: not taken ({pr['reason']})"]
    lines = ["", "#### Where the worker's time goes (py-spy, main run)", "",
             f"`{pr['command']}`, {pr['seconds']:g} s from {pr['from_s']:g} s into the main run "
             f"(raw stacks: `{pr['raw']}`): {pr['samples']:,} samples of running threads (py-spy "
             f"leaves out idle ones; {_f(pr['sampling_errors'])} stacks it could not read)."]
    if not pr["samples"]:
        return lines
    main = [t for t in pr["threads"] if t["thread"] == MAIN_THREAD]
    if main:  # one sample per running thread and tick
        others = ", ".join(f"{t['thread']} {t['share']:.1f} %" for t in pr["threads"]
                           if t["thread"] != MAIN_THREAD) or "none"
        running = main[0]["samples"] / (pr["rate_hz"] * pr["seconds"])
        lines[-1] += (f" The main thread (the event loop) has {main[0]['share']:.1f} % of them: "
                      f"py-spy found it running at ~{running:.0%} of its ticks. Other threads: "
                      f"{others}.")
    lines += ["", "Inclusive: the share of samples with the function on the stack, once per "
              "sample (callers and callees overlap, so the column adds up to more than 100 %). "
              "Self: the share with it as the leaf (all functions add up to 100 %)."]
    for kind, functions in (("inclusive", pr["functions"]), ("self", pr["leaf_functions"])):
        rows = pr[kind]
        lines += ["", f"| function ({kind}, top {len(rows)} of {functions:,}) | samples | "
                  f"{kind} % |", "|---|---|---|"]
        lines += [f"| `{r['function']}` | {r['samples']:,} | {r['share']:.1f} |" for r in rows]
        if kind == "self" and functions > len(rows):
            rest = pr["samples"] - sum(r["samples"] for r in rows)
            lines.append(f"| the other {functions - len(rows):,} functions | {rest:,} | "
                         f"{100 * rest / pr['samples']:.1f} |")
    return lines


def _broker_thread_lines(bt: dict[str, Any], other_below: float = 1.0) -> list[str]:
    """Groups under ``other_below`` % of the broker's CPU are one row (all are in the JSON)."""
    if not bt["measured"]:
        return ["", f"broker threads: not measured ({bt['reason']})"]
    lines = ["", "#### Broker CPU by thread group (main run)", "",
             f"CPU (user + system) of each thread of the broker JVM, from `/proc/<pid>/task/*/stat`"
             f" at both ends of the profile's window ({bt['seconds']:g} s); thread names: "
             f"{bt['names']}.", "",
             "| thread group | threads | CPU s | cores | share % |", "|---|---|---|---|---|"]
    shown = [g for g in bt["groups"] if g["share"] >= other_below]
    rest = [g for g in bt["groups"] if g["share"] < other_below]
    lines += [f"| {g['group']} | {g['threads']} | {g['cpu_seconds']:.2f} | {g['cores']:.3f} | "
              f"{g['share']:.1f} |" for g in shown]
    if rest:
        cpu = sum(g["cpu_seconds"] for g in rest)
        lines.append(f"| other ({len(rest)} group{'s' if len(rest) > 1 else ''} under "
                     f"{other_below:g} %) | "
                     f"{sum(g['threads'] for g in rest)} | {cpu:.2f} | {cpu / bt['seconds']:.3f} | "
                     f"{sum(g['share'] for g in rest):.1f} |")
    lines += [f"| all threads | {bt['threads']} | {bt['cpu_seconds']:.2f} | {bt['cores']:.3f} | "
              f"100 |", "",
              f"The whole broker process over the same window: {_f(bt['process_cpu_seconds'], 2)} "
              f"CPU s ({_f(bt['process_cores'], 3)} cores); {bt['threads_started']} threads "
              f"started and {bt['threads_ended']} ended in it (what an ended thread used is in "
              f"the process's figure only)."]
    return lines


def _budget(mb: int | None) -> str:
    if mb is None:
        return "not recorded"
    return "Faust's per-store defaults" if mb == 0 else f"{mb} MB shared"


def plot(report: dict[str, Any], path: Path) -> bool:
    """Latency percentiles (and throughput) against offered load; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = [ph for ph in report["phases"] if ph["tag"].startswith(("s", "m"))
              and ph["latency_e2e_ms"]["n"]]
    if not points:
        return False
    points.sort(key=lambda ph: ph["send_rate"])
    x = [ph["send_rate"] for ph in points]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("max", "x:")):
        ax.plot(x, [ph["latency_e2e_ms"][q] for ph in points], style, label=q)
    for ph in points:
        if ph["offered_rate"] == "flat out":
            ax.annotate("flat out", (ph["send_rate"], ph["latency_e2e_ms"]["p50"]),
                        textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests / s actually sent)")
    ax.set_ylabel("end-to-end decision latency (ms)")
    ax.set_title("latency vs offered load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    bx.plot(x, [ph["throughput"] for ph in points], "o-", label="decisions / s consumed")
    bx.plot(x, x, ":", color="grey", label="= offered")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("offered load (requests / s)")
    bx.set_ylabel("sustained decisions / s")
    bx.set_title("throughput vs offered load")
    bx.grid(True, alpha=0.3)
    bx.legend()
    p = report["params"]
    fig.suptitle(f"{p['customers']:,} customers, {p['offers']} offers, {p['policy']}, "
                 f"{p['partitions']} partitions — one worker, {report['machine']['cores']} cores",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
