"""``stream-app demo``: the engine at its best, end to end on one machine, in under 3 minutes.

1. Kafka: the local broker (``stream-app kafka up``) unless ``KAFKA_BOOTSTRAP_SERVERS`` is set.
2. A fresh sandbox: topics ``demo-*``, consumer group and tables ``stream-app-demo``, state in
   ``.cache/demo-state`` (the last demo's are deleted first).
3. ``config/demo.json``, the learning benchmark's best configuration (``engine_best`` of
   ``evaluation/learning.py``: contextual linear Thompson sampling, a 1-day half-life; a unit
   test keeps the two equal), published on ``demo-engine-config``.
4. A worker (``stream-app worker``, log in ``.cache/demo-worker.log``) and the live dashboard
   (``stream-app dashboard``, told the simulator's parameters so it draws the oracle line).
5. The seeded simulator's customers through Kafka (``kafka/traffic.py``): ``--days`` of event
   time, as fast as the worker answers (event time held at most half an attribution window
   ahead of the oldest unanswered request), a progress line every ``--progress`` seconds.
6. What the engine learned: its expected reward against the oracle's and a random choice's in
   the first and the second half of the run, and the learning curve as a PNG
   (``tools/learning_curve.py``) with the summary as JSON, in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream_app.settings import PROJECT_ROOT, Settings
from stream_app.tools.learning_curve import learning_curve, write_png
from stream_app.tools.simulate import efficiency, halves, summary

__all__ = ["DEMO_CONFIG", "cmd_demo"]

DEMO_CONFIG = PROJECT_ROOT / "config" / "demo.json"
RECENT = 500  # decisions the progress line's efficiency is measured over
CURVE_POINTS = 24  # bins of the learning curve over the run


def _sandbox(settings: Settings, partitions: int) -> Settings:
    return settings.with_(topic_prefix="demo-", app_id="stream-app-demo", partitions=partitions,
                          data_dir=settings.cache_dir / "demo-state")


def _forget_group(settings: Settings) -> bool:
    """Delete the last demo's consumer group: its committed offsets point into topics that are
    gone, and a worker would resume from them in the new ones (past their end: it would skip
    what the new demo sent before the worker was up)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    from stream_app.cli import CliError
    from stream_app.kafka.security import client_config

    admin = AdminClient(client_config({"bootstrap.servers": settings.bootstrap_servers}))
    deadline = time.monotonic() + 60  # a broker just started is still loading its coordinator
    while True:
        try:
            admin.delete_consumer_groups([settings.app_id], request_timeout=30)[
                settings.app_id].result()
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return False
            if error.code() == KafkaError.NON_EMPTY_GROUP:
                raise CliError(f"a worker of consumer group {settings.app_id} is still running "
                               "(an earlier demo?): stop it first") from None
            starting = error.code() in (KafkaError.NOT_COORDINATOR,
                                        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                        KafkaError.COORDINATOR_NOT_AVAILABLE)
            if not (starting or error.retriable()) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _lockstep_ms(config: dict[str, Any]) -> int:
    """Half the shortest attribution window: an answer always lands inside its window."""
    windows = [float(u.get("attribution_window_s", 3600.0)) for u in config["use_cases"]]
    return int(min(windows) * 1000 / 2)


def _progress(days: float):
    def show(score: Any, elapsed_s: float) -> None:
        recent = np.array(score.trace[-RECENT:], np.float64).reshape(-1, 4)
        day = (score.event_ms - score.start_ms) / 86_400_000
        line = f"  {elapsed_s:5.0f} s  day {day:4.1f} of {days:g}  {score.decisions:6,} decisions"
        eng, rnd = efficiency(recent), efficiency(recent, 3)
        if eng is not None and rnd is not None:
            line += f"  last {len(recent)}: engine {eng:.0%} of the oracle, random {rnd:.0%}"
        print(line + f"  dead letters {score.dead_letters}", flush=True)
    return show


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen:
    from stream_app.worker.process import spawn_worker

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return spawn_worker(env, log, ("-m", "stream_app.cli", *args))


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cli import CliError, _broker, cmd_config

    if args.customers < 1 or args.days <= 0 or args.seconds <= 0 or args.rate < 0 \
            or args.partitions < 1 or args.progress <= 0:
        raise CliError("--customers, --days, --seconds, --partitions and --progress must be "
                       "positive (--rate 0: as fast as the engine answers)")
    if not 0 <= args.dashboard_port < 65536:
        raise CliError("--dashboard-port must be in 1..65535 (0: no dashboard)")
    config_path = Path(args.config) if args.config else DEMO_CONFIG
    cmd_config(argparse.Namespace(action="check", file=str(config_path)), settings)
    config = orjson.loads(config_path.read_bytes())
    if settings.external_cluster:
        return _run(args, _sandbox(settings, args.partitions), config, config_path)
    status = _broker(settings).up()
    print(f"kafka: {status['bootstrap']} (pid {status['pid']})")
    try:
        return _run(args, _sandbox(settings, args.partitions), config, config_path)
    finally:
        if not args.keep_kafka:
            _broker(settings).down()
            print("kafka stopped (use --keep-kafka to leave it running)")


def _run(args: argparse.Namespace, settings: Settings, config: dict[str, Any],
         config_path: Path) -> int:
    """The demo on a broker that is up: sandbox, config, worker, dashboard, traffic, results."""
    from stream_app.cli import cmd_config
    from stream_app.kafka.topics import create_topics, delete_topics_with_prefixes
    from stream_app.kafka.traffic import run_traffic
    from stream_app.worker.process import stop_worker

    forgot = _forget_group(settings)
    gone = delete_topics_with_prefixes(settings, ("demo-", "stream-app-demo-"))
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    if gone or forgot:
        print(f"demo sandbox reset: {len(gone)} topics and the consumer group of the last demo "
              "deleted")
    created = create_topics(settings)
    print(f"topics: {sum(v == 'created' for v in created.values())} created "
          f"({settings.partitions} partition(s) each), "
          f"{sum(v == 'exists' for v in created.values())} existed")
    cmd_config(argparse.Namespace(action="publish", file=str(config_path)), settings)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "STREAM_APP_TOPIC_PREFIX": settings.topic_prefix, "STREAM_APP_ID": settings.app_id,
           "STREAM_APP_PARTITIONS": str(settings.partitions),
           "STREAM_APP_DATA_DIR": str(settings.data_dir),
           # the simulation has dates of its own, which may lie ahead of the machine's clock
           "STREAM_APP_MAX_FUTURE_S": "0"}
    processes: list[tuple[str, subprocess.Popen]] = []
    try:
        log_path = settings.cache_dir / "demo-worker.log"
        processes.append(("worker", _start(env, log_path, "worker")))
        print(f"worker: pid {processes[0][1].pid}, log {log_path}")
        # ---- the live dashboard: the learning curve against the oracle while the demo runs ----
        if args.dashboard_port and not _port_free(args.dashboard_port):
            print(f"dashboard: port {args.dashboard_port} is in use, no dashboard this time "
                  "(--dashboard-port N: another port)")
        elif args.dashboard_port:
            dash_log = settings.cache_dir / "demo-dashboard.log"
            dashboard = _start(env, dash_log, "dashboard", "--port", str(args.dashboard_port),
                               "--refresh", "2", "--sim-seed", str(args.seed),
                               "--sim-customers", str(args.customers),
                               "--sim-days", str(args.days))
            processes.append(("dashboard", dashboard))
            print(f"dashboard: http://127.0.0.1:{args.dashboard_port}/ while the demo runs "
                  f"(pid {dashboard.pid}, log {dash_log})")
        print(f"simulated customers: {args.customers}, {args.days:g} days of event time, seed "
              f"{args.seed}, config {config['version']} ({config_path.name}); at most "
              f"{args.seconds:g} s", flush=True)
        started = time.monotonic()
        score = run_traffic(settings, customers=args.customers, seconds=args.seconds,
                            rate=args.rate, seed=args.seed, days=args.days,
                            lockstep_ms=_lockstep_ms(config), progress=_progress(args.days),
                            progress_every_s=args.progress)
    finally:
        for name, process in reversed(processes):
            if process.poll() is not None:
                print(f"{name} exited early (code {process.returncode}): see its log")
            stop_worker(process, 30.0)
    wall_s = time.monotonic() - started
    out = summary(score, customers=args.customers, days=args.days, seed=args.seed,
                  config_version=config["version"], wall_s=round(wall_s, 1))
    _print_summary(out, score)
    _write_results(Path(args.out), out, score, args)
    return 0 if score.decisions > 0 else 1


def _print_summary(out: dict[str, Any], score: Any) -> None:
    print("\n== what the engine decided and learned ==")
    print(f"{out['event_days']:g} days of event time in {out['wall_s']:g} s: "
          f"requests sent {out['requests']}, decisions received {out['decisions']} "
          f"(no_action {out['no_action']}, unanswered {out['unanswered']}), outcomes answered "
          f"{out['outcomes']} (responses {out['responses']}), outcome deltas "
          f"{out['outcome_deltas']}, dead letters {out['dead_letters']}")
    if out["latency_ms_p50"] is not None:
        print(f"engine latency per decision: p50 {out['latency_ms_p50']:.2f} ms, "
              f"p99 {out['latency_ms_p99']:.2f} ms")
    day = 86_400_000
    for name, part in zip(("first half", "second half"), halves(score)):
        if not len(part):
            continue
        eng, rnd = efficiency(part), efficiency(part, 3)
        print(f"{name:>11} (days {(part[0, 0] - score.start_ms) / day:.1f}-"
              f"{(part[-1, 0] - score.start_ms) / day:.1f}, {len(part):,} decisions): "
              f"engine {eng:.0%} of the oracle's expected reward, random {rnd:.0%} "
              f"(reward per decision: engine {part[:, 1].mean():.3f}, oracle "
              f"{part[:, 2].mean():.3f}, random {part[:, 3].mean():.3f})")


def _write_results(out_dir: Path, out: dict[str, Any], score: Any,
                   args: argparse.Namespace) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    bin_h = max(1.0, round(args.days * 24 / CURVE_POINTS))
    curve = learning_curve(score.trace, score.start_ms, bin_h) if score.trace else None
    (out_dir / "summary.json").write_bytes(
        orjson.dumps({**out, "curve": curve}, option=orjson.OPT_INDENT_2))
    if curve is None:
        return
    first, _ = halves(score)
    halfway_h = (first[-1, 0] - score.start_ms) / 3_600_000 if len(first) else None
    png = out_dir / "learning-curve.png"
    if importlib.util.find_spec("matplotlib") is None:
        print(f"no plot: matplotlib is not installed (bash scripts/setup.sh installs it); "
              f"the curve is in {out_dir / 'summary.json'}")
        return
    write_png(curve, png, halfway_h=halfway_h, title=(
        f"stream-app demo: {args.customers} simulated customers, seed {args.seed}, config "
        f"{out['config_version']}\nsecond half: engine {out['efficiency_second_half']:.0%} "
        f"of the oracle's expected reward, random {out['random_efficiency_second_half']:.0%}"))
    print(f"learning curve: {png} ({bin_h:g} h bins; summary in {out_dir / 'summary.json'})")
