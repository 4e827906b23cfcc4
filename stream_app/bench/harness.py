"""One benchmark run, start to finish: sandbox, config, worker, preload, main run, load sweep,
state size, restart-to-serving; then the report files.

Phases (each a tag in the request ids): ``w`` first decision of the fresh worker, ``p`` preload
(one request per customer, flat out), ``m`` the main run (``rate`` for ``seconds``), ``s<i>`` the
load sweep, ``r`` / ``c`` the first request after a restart from local state / from changelogs,
``b`` the first request after the bulk state was written (``bulk_customers``, see ``bulk.py``).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream_app.bench.bulk import read_templates, seed_changelogs
from stream_app.bench.load import (
    DecisionCollector,
    LoadGenerator,
    Sent,
    customer_key,
    each_customer_once,
    uniform_customers,
)
from stream_app.bench.params import BenchParams, engine_config
from stream_app.bench.profile import MainRunProfile
from stream_app.bench.probes import (
    LagSampler,
    cpu_seconds,
    du_bytes,
    machine,
    machine_cpu_seconds,
    own_cpu_seconds,
    peak_rss_bytes,
    rss_bytes,
    table_sizes,
    topic_traffic,
)
from stream_app.bench.report import markdown, phase_summary, plot, write_json
from stream_app.bench.sandbox import Sandbox
from stream_app.kafka.topics import INPUT_TOPICS
from stream_app.settings import Settings


class BenchError(RuntimeError):
    """The run could not measure what it was asked to; the message says why."""


class Harness:
    def __init__(self, params: BenchParams, progress: Callable[[str], None] | None = None) -> None:
        self.p = params
        self.say = progress or (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
        self.current_phase = "setup"
        self.bulk_records = 0  # rows the bench cloned into the changelogs (not the worker's)
        self.notes: list[str] = []

    # -- helpers -----------------------------------------------------------------------------
    def _cpu(self) -> dict[str, float | None]:
        return {"worker": cpu_seconds(self.box.worker_pid),
                "broker": cpu_seconds(self.box.broker_pid),
                "generator": own_cpu_seconds(), "machine": machine_cpu_seconds()}

    def _check(self) -> None:
        if self.collector.error is not None:
            raise BenchError(f"decision reader failed: {self.collector.error!r}")
        if not self.box.worker_alive():
            raise BenchError(f"the worker exited; see {self.box.workdir / 'worker.log'}\n"
                             + self._worker_log_tail())

    def _worker_log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.box.workdir / "worker.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _drain(self, sent: Sent) -> None:
        """Wait until every request of the phase has its decision (or progress stops)."""
        log = self.collector.phase(sent.tag)
        deadline = time.monotonic() + self.p.drain_timeout_s
        last, last_move = -1, time.monotonic()
        while len(log.received_at) < sent.requests and time.monotonic() < deadline:
            self._check()
            n = len(log.received_at)
            if n != last:
                last, last_move = n, time.monotonic()
            elif time.monotonic() - last_move > 30:
                break
            time.sleep(0.05)
        missing = sent.requests - len(log.received_at)
        if missing:
            self.notes.append(f"phase {sent.tag}: {missing:,} requests got no decision "
                              f"within the drain timeout")

    def _run_phase(self, name: str, tag: str, customers, *, rate: float, seconds: float,
                   max_requests: int | None = None) -> dict[str, Any]:
        self.current_phase = tag
        what = "flat out" if rate == 0 else f"{rate:,.0f} req/s"
        self.say(f"{name}: {what}" + (f", {max_requests:,} requests" if max_requests else
                                      f" for {seconds:g} s"))
        cpu0, wall0 = self._cpu(), time.monotonic()
        sent = self.gen.drive(tag, customers, rate=rate, seconds=seconds, window=self.p.window,
                              max_requests=max_requests, max_backlog=self.p.max_backlog)
        self._check()
        self._drain(sent)
        cpu1, wall = self._cpu(), time.monotonic() - wall0
        cpu = {k: (None if cpu0[k] is None or cpu1[k] is None else cpu1[k] - cpu0[k])
               for k in cpu0}
        if cpu["machine"] is not None:  # other processes on the machine (not the bench's)
            cpu["others"] = max(0.0, cpu.pop("machine") - sum(
                v for k, v in cpu.items() if k in ("worker", "broker", "generator") and v))
        summary = phase_summary(sent, self.collector.phase(tag), cpu, wall, warm_s=5.0)
        summary["name"] = name
        e = summary["latency_e2e_ms"]
        self.say(f"{name}: sent {summary['send_rate']:,.0f}/s, decisions {summary['throughput']:,.0f}/s"
                 f" steady, e2e p50 {e['p50']} p99 {e['p99']} max {e['max']} ms")
        return summary

    def _first_decision(self, tag: str, customer: int, since: float, timeout_s: float) -> float:
        """Send one new request now and return seconds from ``since`` to its decision."""
        rid = self.gen.send_request(tag, customer_key(customer))
        self.collector.watch.add(rid)
        self.gen.producer.flush(10)
        deadline = time.monotonic() + timeout_s
        while rid not in self.collector.first_seen:
            self._check()
            if self.collector.dead_letters and tag == "w":
                raise BenchError("the worker dead-lettered the first request: "
                                 + "; ".join(self.collector.dead_reasons))
            if time.monotonic() > deadline:
                raise BenchError(f"no decision within {timeout_s:.0f} s of the worker starting\n"
                                 + self._worker_log_tail())
            time.sleep(0.01)
        return self.collector.first_seen[rid] - since

    def _traffic(self) -> dict[str, Any]:
        """Records (and broker disk bytes) per topic of the sandbox over the whole run, and per
        request sent: the fan-out each request costs the broker."""
        s = self.box.settings
        topics = topic_traffic(self.box.bootstrap, (s.topic_prefix, s.app_id + "-"),
                               self.box.broker_log_dir)
        requests = self.gen.sent_total
        rows = {name.removeprefix(s.topic_prefix): row for name, row in topics.items()}
        per = {name: round(row["records"] / requests, 3) for name, row in rows.items()} \
            if requests else {}
        # what the worker wrote: every topic but its inputs (and the config the bench
        # published), less the rows the bench itself cloned into the changelogs (bulk state)
        inputs = {*INPUT_TOPICS, "engine-config"}
        written = sum(row["records"] for name, row in rows.items() if name not in inputs)
        written -= self.bulk_records
        return {"requests": requests, "topics": rows, "records_per_request": per,
                "total_records_per_request": round(sum(per.values()), 2) if per else None,
                "bulk_records": self.bulk_records,
                "worker_records_per_request": round(written / requests, 3) if requests else None}

    def _profile(self) -> MainRunProfile:
        """py-spy on the worker and the broker's threads over the main run's steady part: from
        the warm-up its throughput figure leaves out too (``phase_summary``) to a second before
        the run ends."""
        after = min(5.0, 0.3 * self.p.seconds)
        profile = MainRunProfile(self.box.worker_pid, self.box.broker_pid, self.box.workdir,
                                 after_s=after, seconds=int(self.p.seconds - after - 1.0))
        profile.start()
        self.say(f"profile: the worker's stacks and the broker's threads for "
                 f"{profile.seconds} s from {after:g} s into the main run")
        return profile

    def _state(self, customers: int) -> dict[str, Any]:
        data_dir = self.box.settings.data_dir
        disk = du_bytes(data_dir)
        tables = table_sizes(data_dir)
        with_state = tables.pop("_customers", {}).get("keys", 0)
        out: dict[str, Any] = {"disk_bytes": disk, "tables": tables,
                               "customers_with_state": with_state or None}
        if with_state:
            per_customer_logical = sum(t["customer_bytes"] for t in tables.values())
            out["disk_bytes_per_customer"] = round(disk / with_state, 1)
            out["logical_bytes_per_customer"] = round(per_customer_logical / with_state, 1)
        out["customers_driven"] = customers
        return out

    def _settle(self, draw) -> None:
        """Let the decisions sent so far settle by expiry, so every customer has arms on disk
        (event time moves per partition: tick every partition through customers spread over all)."""
        settle_until = time.time() + self.p.attribution_s + 1.0
        self.current_phase = "settle"
        while time.time() < settle_until:
            for _ in range(4 * self.p.partitions):
                self.gen.send_request("x", customer_key(next(draw)))
            self.gen.producer.poll(0)
            time.sleep(0.25)
        time.sleep(2.0)  # the worker commits offsets every second

    def _bulk(self) -> dict[str, Any]:
        """Stop the worker, clone its customers' rows up to ``bulk_customers`` into the tables'
        changelogs, start it again: time to its first decision = catching up on that state."""
        p, box = self.p, self.box
        self.current_phase = "b"
        stop_s = box.stop_worker()
        templates = read_templates(box.settings.data_dir)
        self.say(f"bulk state: {', '.join(f'{len(v):,} {k} rows' for k, v in templates.items())} "
                 f"as templates for customers {p.customers:,}..{p.bulk_customers - 1:,}")
        seeded = seed_changelogs(box.bootstrap, box.changelog_topic, templates, p.customers,
                                 p.bulk_customers, self.say)
        self.bulk_records = seeded["records"]
        self.say(f"bulk state: {seeded['records']:,} rows in the changelogs in "
                 f"{seeded['seconds']:.1f} s; starting the worker")
        spawned = box.start_worker()
        to_serving = self._first_decision("b", p.bulk_customers - 1, spawned, timeout_s=3600)
        self.say(f"bulk state: serving {to_serving:.2f} s after spawn (changelog caught up)")
        return {"templates": {k: len(v) for k, v in templates.items()}, **seeded,
                "stop_s": round(stop_s or 0.0, 3), "to_serving_s": round(to_serving, 3),
                "rss_serving_mb": _mb(rss_bytes(box.worker_pid))}

    def _restart(self, mode: str, tag: str, *, wipe: bool = False) -> dict[str, Any]:
        self.current_phase = tag
        stop_s = self.box.stop_worker()
        state = self._state(self.p.population)
        if wipe:  # (before 2026-11-23 a string compare never matched: the data dir was kept)
            self.box.wipe_state()
        self.say(f"restart ({mode}): worker stopped in {stop_s:.1f} s; "
                 f"{state['customers_with_state'] or 0:,} customers with state, "
                 f"{state['disk_bytes']:,} B on disk")
        spawned = self.box.start_worker()
        to_serving = self._first_decision(tag, 0, spawned, timeout_s=1800)
        self.say(f"restart ({mode}): serving again {to_serving:.2f} s after spawn")
        return {"mode": mode, "stop_s": round(stop_s or 0.0, 3), "to_serving_s": round(to_serving, 3),
                "customers_with_state": state["customers_with_state"] or 0, "state": state}

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        p = self.p
        started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        workdir = p.cache_dir / "bench-runs" / f"{p.name}-{int(time.time())}"
        self.box = Sandbox(partitions=p.partitions, cache_dir=p.cache_dir,
                           bootstrap_servers=p.bootstrap_servers, broker_heap=p.broker_heap,
                           max_message_bytes=max(64 * 1024, 4 * p.payload_bytes),
                           log_level=p.worker_log_level, workdir=workdir,
                           rocksdb_memory_mb=p.rocksdb_memory_mb,
                           worker_command=p.worker_command())
        report: dict[str, Any] = {"name": p.name, "started_at": started_at,
                                  "command": _command_line(),
                                  "params": {**p.as_json(), "processing_guarantee":
                                             Settings.from_env().processing_guarantee},
                                  "machine": machine()}
        with self.box as box:
            report["kafka"] = {"where": "external cluster" if box.external else "own local broker",
                               "version": box.broker.version if box.broker else "unknown",
                               "bootstrap": box.bootstrap}
            self.say(f"sandbox {box.settings.topic_prefix}* on {box.bootstrap}, "
                     f"state in {box.settings.data_dir}")
            box.publish_config(engine_config(p))
            s = box.settings
            self.collector = DecisionCollector(box.bootstrap, s.topic("decisions"),
                                               s.topic("outcomes"), p.outcome_fraction,
                                               p.linger_ms, s.topic("dead-letter"))
            self.collector.start()
            self.gen = LoadGenerator(box.bootstrap, s.topic("decision-requests"),
                                     s.topic("interactions"), self.collector,
                                     payload_bytes=p.payload_bytes,
                                     interactions_per_request=p.interactions_per_request,
                                     linger_ms=p.linger_ms)
            lag = self.lag = LagSampler(box.bootstrap, s.app_id, s.topic("decision-requests"), s.partitions,
                             lambda: box.worker_pid, lambda: self.gen.outstanding,
                             lambda: self.current_phase)
            lag.start()
            try:
                report.update(self._measure(report))
                report["traffic"] = self._traffic()
            finally:
                lag.stop()
                self.collector.stop()
                report["lag"] = {
                    "samples": lag.samples,
                    "max_committed": max((x["committed_lag"] or 0 for x in lag.samples), default=None),
                    "max_in_flight": max((x["in_flight"] for x in lag.samples), default=None),
                }
        report["dead_letters"] = {"count": self.collector.dead_letters,
                                  "first_reasons": self.collector.dead_reasons}
        if self.collector.dead_letters:
            self.notes.append(f"the worker dead-lettered {self.collector.dead_letters:,} messages "
                              f"during the run: {'; '.join(self.collector.dead_reasons[:2])}")
        report["notes"] = self.notes + _saturation_notes(report.get("phases", []))
        return report

    def _measure(self, report: dict[str, Any]) -> dict[str, Any]:
        p, box = self.p, self.box
        out: dict[str, Any] = {"phases": [], "restarts": []}
        spawned = box.start_worker()
        self.current_phase = "w"
        out["cold_start_s"] = round(self._first_decision("w", 0, spawned, timeout_s=300), 3)
        self.say(f"worker pid {box.worker_pid} serving {out['cold_start_s']:.2f} s after spawn")
        out["phases"].append(self._run_phase(
            f"preload {p.customers:,} customers", "p", each_customer_once(p.customers, p.seed),
            rate=0, seconds=float("inf"), max_requests=p.customers))
        rss_preload = rss_bytes(box.worker_pid)
        if p.bulk_customers:
            self._settle(uniform_customers(p.customers, p.seed + 2))  # arms for the templates
            out["bulk"] = self._bulk()
        draw = uniform_customers(p.population, p.seed + 1)
        main_name = "main (flat out)" if p.rate == 0 else f"main {p.rate:,.0f} req/s"
        profile = self._profile() if p.profile else None
        try:
            out["phases"].append(self._run_phase(main_name, "m", draw, rate=p.rate,
                                                 seconds=p.seconds))
        finally:  # py-spy is stopped even when the phase fails
            if profile is not None:
                out["profile"], out["broker_threads"] = profile.finish()
                if out["profile"]["taken"]:
                    self.notes.append("--profile: py-spy sampled the worker during the main run "
                                      "(--nonblocking; its CPU is under other processes), so "
                                      "that phase's figures include its cost")
        rss_main = rss_bytes(box.worker_pid)
        for i, step in enumerate(p.load_steps):
            name = f"sweep {'flat out' if step == 0 else f'{step:,.0f} req/s'}"
            out["phases"].append(self._run_phase(name, f"s{i}", draw, rate=step,
                                                 seconds=p.step_seconds))
        self._settle(draw)
        out["rss"] = {"worker_peak_mb": _mb(peak_rss_bytes(box.worker_pid)),
                      "after_preload_mb": _mb(rss_preload), "after_main_mb": _mb(rss_main),
                      "at_end_mb": _mb(rss_bytes(box.worker_pid))}
        if p.restart:
            out["restarts"].append(self._restart("local RocksDB kept", "r"))
            out["state"] = out["restarts"][-1]["state"]
            if p.serve_after_restart_s:  # memory of a worker that restarted onto its state
                out["phases"].append(self._run_phase(
                    f"after restart {p.rate:,.0f} req/s", "a", draw, rate=p.rate,
                    seconds=p.serve_after_restart_s))
                out["rss"]["after_restart_serving_mb"] = _mb(rss_bytes(box.worker_pid))
                out["rss"]["after_restart_serving_second_half_mb"] = second_half_rss(
                    self.lag.samples, "a")
            if p.restart_from_changelog:
                out["restarts"].append(self._restart("data dir wiped, from changelog", "c",
                                                  wipe=True))
                # did the recovery bring the state back? (the worker serves only after it)
                box.stop_worker()
                recovered = self._state(p.population)["customers_with_state"] or 0
                out["restarts"][-1]["customers_recovered"] = recovered
                self.say(f"restart (from changelog): {recovered:,} customers with state after it")
        else:
            box.stop_worker()
            out["state"] = self._state(p.population)
        return out


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def second_half_rss(samples: list[dict[str, Any]], phase: str) -> dict[str, float] | None:
    """The worker's RSS over the second half of a phase, from the per-second samples: a single
    reading at the end lands anywhere on the saw-tooth of caches filling and malloc trims.

    >>> second_half_rss([{"phase": "a", "worker_rss_mb": m} for m in (100, 200, 210, 190)], "a")
    {'mean': 200.0, 'min': 190, 'max': 210, 'samples': 2}
    """
    rss = [x["worker_rss_mb"] for x in samples
           if x.get("phase") == phase and x.get("worker_rss_mb") is not None]
    half = rss[len(rss) // 2:] if len(rss) > 1 else rss
    if not half:
        return None
    return {"mean": round(sum(half) / len(half), 1), "min": min(half), "max": max(half),
            "samples": len(half)}


def _command_line() -> str:
    argv = sys.argv[:]
    if argv and argv[0].endswith(("stream-app", "cli.py")):
        argv[0] = "stream-app"
    return " ".join(shlex.quote(a) for a in argv)


def _saturation_notes(phases: list[dict[str, Any]]) -> list[str]:
    notes = []
    for ph in phases:
        if ph["generator_saturated"]:
            notes.append(f"{ph['name']}: the load generator may have been the bound (behind "
                         f"schedule {ph['generator']['behind_schedule_s']} s, window full "
                         f"{ph['generator']['window_full_s']} s, generator CPU "
                         f"{ph['cpu_cores']['generator']} cores)")
    return notes


def run_bench(params: BenchParams, progress: Callable[[str], None] | None = None,
              write: bool = True) -> dict[str, Any]:
    """Run the benchmark; write ``<out>/<name>.json``, ``.md`` and ``.png``; return the report."""
    report = Harness(params, progress).run()
    if write:
        out = Path(params.out)
        out.mkdir(parents=True, exist_ok=True)
        report["files"] = {"json": str(out / f"{params.name}.json"),
                           "markdown": str(out / f"{params.name}.md")}
        if plot(report, out / f"{params.name}.png"):
            report["files"]["png"] = str(out / f"{params.name}.png")
        else:
            report["notes"].append("no plot: matplotlib is not installed (pip install -e '.[bench]')")
        write_json(report, out / f"{params.name}.json")
        (out / f"{params.name}.md").write_text(markdown(report))
    return report
