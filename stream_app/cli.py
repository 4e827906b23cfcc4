"""``stream-app``: the command line. Every subcommand has ``--help``; errors are one readable line."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import orjson

from stream_app.settings import Settings


class CliError(Exception):
    pass


def _broker(settings: Settings):
    from stream_app.kafka.broker import LocalBroker

    return LocalBroker(home=settings.kafka_home, jars_cache=settings.cache_dir,
                       version=settings.kafka_version, jvm_options=settings.kafka_jvm_options)


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    if settings.external_cluster:
        print(f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}): "
              f"using that cluster, 'kafka {args.action}' does nothing")
        return 0
    broker = _broker(settings)
    if args.action == "up":
        status = broker.up()
        print(f"kafka up: {status['bootstrap']} (pid {status['pid']}, data in {status['home']})")
    elif args.action == "down":
        print("kafka stopped" if broker.down() else "kafka was not running")
    else:
        status = broker.status()
        print(orjson.dumps(status).decode())
        return 0 if status["serving"] else 3
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.kafka.topics import create_topics, list_topics

    if args.partitions:
        settings = settings.with_(partitions=args.partitions)
    if args.action == "create":
        for name, what in create_topics(settings).items():
            print(f"{name}: {what}")
    else:
        for name, parts in list_topics(settings).items():
            print(f"{name}\t{parts} partitions")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.core.catalogue import ConfigError, parse_config
    from stream_app.core.decision import Decider
    from stream_app.kafka.client import producer, send
    from stream_app.schemas import Contract, InvalidMessage

    if args.action in ("history", "rollback"):
        return _config_history(args, settings)
    path = Path(args.file or settings.config_file)
    try:
        raw = path.read_bytes()
        doc = Contract.load(max_bytes=settings.max_message_bytes).decode("engine-config", raw)
        Decider(parse_config(doc))  # what a worker does with it: rules, policies, experiments
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except (InvalidMessage, ConfigError) as exc:
        raise CliError(f"{path}: {exc}") from None
    if args.action == "check":
        print(f"{path}: valid (version {doc['version']})")
        return 0
    p = producer(settings.bootstrap_servers)
    send(p, settings.topic("engine-config"), "engine", raw)
    if p.flush(30):
        raise CliError("config not delivered to Kafka within 30 s")
    print(f"published config version {doc['version']} to {settings.topic('engine-config')}")
    return 0


def _config_history(args: argparse.Namespace, settings: Settings) -> int:
    """``config history``: the accepted configs in the order they were published;
    ``config rollback``: publish the one before the config in force (or ``--to VERSION``)."""
    from stream_app.kafka.client import producer
    from stream_app.worker.accepted_configs import RollbackError, read_accepted, rollback_target

    history = read_accepted(settings.bootstrap_servers, settings.topic("accepted-configs"))
    if args.action == "history":
        if not history:
            print(f"no accepted config on {settings.topic('accepted-configs')}")
        for accepted in history:
            print(f"seq {accepted.seq}\tversion {accepted.version}\taccepted_at "
                  f"{accepted.accepted_at}")
        return 0
    try:
        target = rollback_target(history, getattr(args, "to", None))
    except RollbackError as exc:
        raise CliError(str(exc)) from None
    p = producer(settings.bootstrap_servers)
    p.produce(settings.topic("engine-config"), orjson.dumps(target.config), b"engine")
    if p.flush(30):
        raise CliError("config not delivered to Kafka within 30 s")
    print(f"rolled back from {history[-1].version} to {target.version} (accepted as seq "
          f"{target.seq}): published to {settings.topic('engine-config')}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.worker.app import run_worker

    run_worker(settings)
    return 0


def cmd_learner(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.worker.app import run_worker

    run_worker(settings, role="learner")
    return 0


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    """Ask the engine to erase a customer (``partition/erasure.py``): one record on
    ``erasure-requests``; with ``--wait``, print the partition's audit record once it comes."""
    import time
    import uuid

    from stream_app.kafka.client import TopicReader, producer, send
    from stream_app.kafka.topics import list_topics
    from stream_app.schemas import Contract, InvalidMessage

    request = {"request_id": args.request_id or f"er-{uuid.uuid4().hex}",
               "customer_id": args.customer_id, "ts": int(time.time() * 1000)}
    for name in ("reason", "requested_by"):
        if getattr(args, name):
            request[name] = getattr(args, name)
    try:
        Contract.load().validate("erasure-requests", request)
    except InvalidMessage as exc:
        raise CliError(str(exc)) from None
    topic, audit = settings.topic("erasure-requests"), settings.topic("erasure-audit")
    missing = {topic, audit} - set(list_topics(settings))
    if missing:  # produced to, a missing topic would be made with one partition: not co-partitioned
        raise CliError(f"no topic {', '.join(sorted(missing))}: run 'stream-app topics create'")
    reader = TopicReader(settings.bootstrap_servers, audit) if args.wait else None  # from now
    try:
        p = producer(settings.bootstrap_servers)
        send(p, topic, args.customer_id, request)
        if p.flush(30):
            raise CliError("erasure request not delivered to Kafka within 30 s")
        print(f"erasure {request['request_id']} of customer {args.customer_id!r} sent to {topic}")
        if reader is None:
            return 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            for record in reader.read_json(0.5):
                if record.get("request_id") == request["request_id"]:
                    print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
                    return 0
        raise CliError(f"no audit record on {audit} within {args.timeout:g} s: is a worker "
                       "running?")
    finally:
        if reader is not None:
            reader.close()


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools.demo import cmd_demo as run

    return run(args, settings)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Benchmark one worker against real Kafka; writes <out>/<name>.json, .md and .png."""
    import signal

    from stream_app.bench import BenchError, BenchParams, parse_steps, run_bench

    # SIGTERM (kill, a CI timeout) unwinds like Ctrl-C: the sandbox then stops the worker and
    # the broker it started, instead of leaving them running
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        params = BenchParams(
            customers=args.customers, bulk_customers=args.bulk_customers,
            rocksdb_memory_mb=args.rocksdb_memory_mb, offers=args.offers, partitions=args.partitions,
            payload_bytes=args.payload_bytes, policy=args.policy, rate=args.rate,
            seconds=args.seconds, outcome_fraction=args.outcome_fraction,
            interactions_per_request=args.interactions_per_request,
            load_steps=parse_steps(args.load_steps), step_seconds=args.step_seconds,
            attribution_s=args.attribution_s, window=args.window, linger_ms=args.linger_ms,
            max_backlog=args.max_backlog,
            restart=not args.no_restart, restart_from_changelog=args.restart_from_changelog,
            serve_after_restart_s=args.serve_after_restart, worker_log_level=args.worker_log_level,
            out=Path(args.out), name=args.name, cache_dir=settings.cache_dir, profile=args.profile,
            bootstrap_servers=settings.bootstrap_servers if settings.external_cluster else None,
            worker=args.worker, relay_args=tuple(shlex.split(args.relay_args)),
        )
        report = run_bench(params)
    except (ValueError, BenchError) as exc:
        raise CliError(str(exc)) from None
    from stream_app.bench.report import markdown

    print(markdown(report))
    print(f"written: {', '.join(report['files'].values())}")
    return 0


def cmd_chaos(args: argparse.Namespace, settings: Settings) -> int:
    """SIGKILL the worker at random under traffic, then check exactly-once from the topics."""
    import uuid

    from stream_app.tools.chaos import ChaosPlan, run_chaos

    run = uuid.uuid4().hex[:8]
    workdir = settings.cache_dir / "chaos" / run
    workdir.mkdir(parents=True, exist_ok=True)
    settings = settings.with_(topic_prefix=f"chaos-{run}-", app_id=f"chaos-{run}",
                              data_dir=workdir / "state", partitions=args.partitions)
    plan = ChaosPlan(seconds=args.seconds, kills=args.kills, wipe_at=args.wipe_at,
                     customers=args.customers, rate=args.rate, seed=args.seed)
    failed = 0
    for i in range(args.runs):
        report = run_chaos(settings.with_(topic_prefix=f"chaos-{run}-{i}-",
                                          app_id=f"chaos-{run}-{i}",
                                          data_dir=workdir / f"state-{i}"),
                           plan, workdir)
        print(f"run {i + 1}/{args.runs}: {'ok' if report.ok else 'FAILED'}: {report.summary()}")
        for example in report.examples:
            print(f"  {example}")
        failed += not report.ok
    print(f"worker log: {workdir / 'worker.log'}")
    return 1 if failed else 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools.simulate import cmd_simulate as run

    return run(args, settings)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools.export import cmd_export as run

    return run(args, settings)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools.replay import cmd_replay as run

    return run(args, settings)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools.evaluate import cmd_evaluate as run

    return run(args, settings)


def cmd_learn_bench(args: argparse.Namespace, settings: Settings) -> int:
    """The engine's learning quality on the simulator; writes <out>/<name>.md, .json and .png."""
    from stream_app.evaluation.learning import DEFAULT_AGENTS, run_learning
    from stream_app.evaluation.report import learning_curves_png, learning_markdown

    agents = args.agents.split(",") if args.agents else list(DEFAULT_AGENTS)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        drift = [float(d) for d in args.drift_days.split(",")] if args.drift_days else []
    except ValueError:
        raise CliError("--seeds and --drift-days are comma-separated numbers") from None
    result = run_learning(seeds=seeds, n_customers=args.customers, days=args.days,
                          drift_days=drift, agents=agents, processes=args.processes,
                          light=not args.full_models, partitions=args.partitions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = learning_markdown(result)
    (out / f"{args.name}.md").write_text(table + "\n")
    (out / f"{args.name}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    png = out / f"{args.name}.png"
    print(table)
    print(f"written: {out / args.name}.md, .json" + (", .png" if learning_curves_png(
        result, str(png)) else " (no matplotlib: no plot)"))
    return 0


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the live dashboard of the output topics until Ctrl-C."""
    from stream_app.dashboard.oracle import SimulatorOracle
    from stream_app.dashboard.server import run_dashboard

    oracle = None
    if args.sim_seed is not None:
        try:
            oracle = SimulatorOracle(seed=args.sim_seed, customers=args.sim_customers,
                                     days=args.sim_days, drift_at_days=args.sim_drift_at_days)
        except ValueError as exc:
            raise CliError(f"simulator parameters: {exc}") from None
    if not 0 < args.port < 65536 or args.refresh <= 0:
        raise CliError("--port must be in 1..65535 and --refresh a positive number of seconds")
    try:
        run_dashboard(settings, host=args.host, port=args.port, oracle=oracle,
                      from_start=not args.from_now, refresh_s=args.refresh)
    except OSError as exc:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP decision gateway until Ctrl-C / SIGTERM."""
    from dataclasses import replace

    from stream_app.gateway.app import run_gateway

    gateway = replace(settings.gateway, host=args.host or settings.gateway.host,
                      port=args.port or settings.gateway.port)
    if not 0 < gateway.port < 65536:
        raise CliError("--port must be in 1..65535")
    try:
        run_gateway(settings.with_(gateway=gateway))
    except OSError as exc:
        raise CliError(f"cannot serve on {gateway.host}:{gateway.port}: "
                       f"{exc.strerror or exc}") from None
    except (ValueError, RuntimeError) as exc:  # a setting out of range; Kafka unreachable
        raise CliError(str(exc)) from None
    return 0


def cmd_gateway_bench(args: argparse.Namespace, settings: Settings) -> int:
    """The gateway's added latency at a set rate (a broker, a worker and a gateway of its own)."""
    from stream_app.bench.gateway import GatewayBenchParams, markdown, run_gateway_bench

    if args.rate <= 0 or args.seconds <= 0:
        raise CliError("--rate and --seconds must be positive")
    report = run_gateway_bench(GatewayBenchParams(
        rate=args.rate, seconds=args.seconds, customers=args.customers, partitions=args.partitions,
        timeout_ms=args.timeout_ms, cache_dir=settings.cache_dir, worker=args.worker,
        bootstrap_servers=settings.bootstrap_servers if settings.external_cluster else None))
    print(markdown(report))
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"written: {args.out}")
    return 0


def _range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-offset", type=int, help="first offset (inclusive, per partition)")
    p.add_argument("--to-offset", type=int, help="end offset (exclusive, per partition)")
    p.add_argument("--from-time", help="first Kafka timestamp (inclusive): ISO 8601 or epoch ms")
    p.add_argument("--to-time", help="end Kafka timestamp (exclusive): ISO 8601 or epoch ms")
    p.add_argument("--partition", type=int, help="one partition only (default: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("kafka", help="run a local single-node Kafka (KRaft) broker")
    k.add_argument("action", choices=["up", "down", "status"])
    k.set_defaults(func=cmd_kafka)
    t = sub.add_parser("topics", help="create or list the contract topics")
    t.add_argument("action", choices=["create", "list"])
    t.add_argument("--partitions", type=int, default=0, help="partitions of the co-partitioned topics")
    t.set_defaults(func=cmd_topics)
    c = sub.add_parser("config", help="check or publish an engine configuration (JSON file); "
                       "list the accepted ones (history) or publish an earlier one (rollback)")
    c.add_argument("action", choices=["check", "publish", "history", "rollback"])
    c.add_argument("file", nargs="?", help="default: config/offers.json or $STREAM_APP_CONFIG")
    c.add_argument("--to", metavar="VERSION", help="rollback: this accepted version (default: "
                   "the one accepted before the config in force)")
    c.set_defaults(func=cmd_config)
    w = sub.add_parser("worker", help="run the engine worker (Faust, RocksDB tables)")
    w.set_defaults(func=cmd_worker)
    le = sub.add_parser("learner", help="run the fleet's learner in a process of its own "
                        "(set STREAM_APP_LEARNER=off on the workers)")
    le.set_defaults(func=cmd_learner)
    er = sub.add_parser("erase", help="erase every trace of a customer the engine keeps (tables, "
                        "timers, compacted outputs); the partition writes what it removed to "
                        "erasure-audit")
    er.add_argument("customer_id")
    er.add_argument("--reason", help="why (e.g. a ticket number), kept in the audit record")
    er.add_argument("--requested-by", help="who asked, kept in the audit record")
    er.add_argument("--request-id", help="names the request (default: a fresh one)")
    er.add_argument("--wait", action="store_true", help="wait for the audit record and print it")
    er.add_argument("--timeout", type=float, default=60.0, help="--wait: at most this many "
                    "seconds (default 60)")
    er.set_defaults(func=cmd_erase)
    d = sub.add_parser("demo", help="bring everything up, run simulated customers against the "
                       "engine's best configuration, plot what it learned")
    d.add_argument("--customers", type=int, default=1500)
    d.add_argument("--days", type=float, default=5.0, help="event time the simulation spans")
    d.add_argument("--seconds", type=float, default=150.0,
                   help="at most this long sending traffic (wall time)")
    d.add_argument("--rate", type=float, default=0.0,
                   help="messages per second (0: as fast as the engine answers)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--partitions", type=int, default=1, help="partitions of the demo's topics")
    d.add_argument("--config", help="engine configuration (default: config/demo.json, the "
                   "learning benchmark's best)")
    d.add_argument("--dashboard-port", type=int, default=8050,
                   help="serve the live dashboard on this port while the demo runs (0: off)")
    d.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    d.add_argument("--out", default="out/demo", help="folder of the plot and the JSON summary")
    d.add_argument("--keep-kafka", action="store_true", help="leave the broker running afterwards")
    d.set_defaults(func=cmd_demo)
    b = sub.add_parser("bench", help="benchmark one worker against real Kafka (throughput, "
                       "latency, lag, RSS, state size, restart)")
    b.add_argument("--customers", type=int, default=10_000, help="customers with state (<= 1M)")
    b.add_argument("--bulk-customers", type=int, default=0,
                   help="after the preload, give this many customers state (<= 1M) by cloning "
                   "the preloaded customers' rows into the tables' changelogs (bench/bulk.py)")
    b.add_argument("--rocksdb-memory-mb", type=int, default=32,
                   help="the worker's RocksDB memory budget (0: Faust's per-store defaults)")
    b.add_argument("--offers", type=int, default=20, help="offers in the catalogue (<= 100)")
    b.add_argument("--partitions", type=int, default=4)
    b.add_argument("--payload-bytes", type=int, default=256, help="decision request size")
    b.add_argument("--policy", default="thompson")
    b.add_argument("--rate", type=float, default=2000.0, help="req/s of the main run; 0 = flat out")
    b.add_argument("--seconds", type=float, default=30.0, help="length of the main run")
    b.add_argument("--outcome-fraction", type=float, default=0.10)
    b.add_argument("--interactions-per-request", type=float, default=0.5)
    b.add_argument("--load-steps", default="", help="offered loads of a latency sweep, e.g. "
                   "500,1000,2000,0 (0 = flat out)")
    b.add_argument("--step-seconds", type=float, default=10.0)
    b.add_argument("--attribution-s", type=float, default=10.0, help="attribution window")
    b.add_argument("--window", type=int, default=2000, help="flat out: requests in flight")
    b.add_argument("--linger-ms", type=float, default=1.0, help="generator producer linger")
    b.add_argument("--max-backlog", type=int, default=10_000,
                   help="at a set rate, end a phase early past this many requests in flight")
    b.add_argument("--no-restart", action="store_true", help="skip the restart measurement")
    b.add_argument("--restart-from-changelog", action="store_true",
                   help="also restart with the data dir wiped (recovery from changelogs)")
    b.add_argument("--serve-after-restart", type=float, default=0.0, metavar="S",
                   help="after the local restart, serve at --rate for S seconds and take the "
                   "RSS (a worker that restarted onto its state, without the bulk load's traces)")
    b.add_argument("--worker-log-level", default="warning",
                   help="the worker's log level (its log is in .cache/bench-runs/<name>-<time>/)")
    b.add_argument("--profile", action="store_true",
                   help="during the main run, record the worker with py-spy and the broker's CPU "
                   "per thread (report: where the worker's time goes, broker CPU by thread group)")
    b.add_argument("--worker", default="engine", choices=("engine", "relay", "faust-relay"),
                   help="what answers: the engine, or the engine taken out (bench/relay.py: the "
                   "same inputs read and records written, librdkafka's or Faust's consumer)")
    b.add_argument("--relay-args", default="", metavar="OPTIONS",
                   help="the relay's fan-out, e.g. '--per-request 8 --record-bytes 160' "
                   "(python -m stream_app.bench.relay --help)")
    b.add_argument("--out", default="docs/benchmarks", help="folder of the report files")
    b.add_argument("--name", default="bench", help="file stem of the report files")
    b.set_defaults(func=cmd_bench)
    ch = sub.add_parser("chaos", help="traffic with outcomes while the worker is SIGKILLed at "
                        "random (one restart from a wiped data dir), then check from the topics "
                        "that nothing was lost or counted twice (needs the broker up)")
    ch.add_argument("--runs", type=int, default=1)
    ch.add_argument("--kills", type=int, default=10)
    ch.add_argument("--wipe-at", type=int, default=5, help="the restart that wipes the data "
                    "dir first (0: none)")
    ch.add_argument("--seconds", type=float, default=90.0)
    ch.add_argument("--customers", type=int, default=200)
    ch.add_argument("--rate", type=float, default=40.0, help="requests per second")
    ch.add_argument("--partitions", type=int, default=4)
    ch.add_argument("--seed", type=int, default=1)
    ch.set_defaults(func=cmd_chaos)
    s = sub.add_parser("simulate", help="run the seeded simulator against a running engine "
                       "(topics of the current settings) and score it against the oracle")
    s.add_argument("--customers", type=int, default=500)
    s.add_argument("--rate", type=float, default=300.0, help="messages per second")
    s.add_argument("--seconds", type=float, default=60.0, help="how long to send traffic")
    s.add_argument("--days", type=float, default=3.0, help="event time the simulation spans")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--drift-at-days", type=float, nargs="*", default=[],
                   help="event times (days after the start) at which preferences change")
    s.add_argument("--lockstep-s", type=float, default=60.0,
                   help="event time may run this far ahead of an unanswered request (keep it "
                   "under the attribution window)")
    s.add_argument("--out", help="also write the JSON summary to this file")
    s.set_defaults(func=cmd_simulate)
    e = sub.add_parser("export", help="write a topic range to JSONL (no consumer group, no commits)")
    e.add_argument("topic", help="contract name (gets the topic prefix) or a full topic name")
    e.add_argument("--out", help="JSONL file (default: stdout)")
    _range_options(e)
    e.set_defaults(func=cmd_export)
    r = sub.add_parser("replay", help="push a topic range or JSONL exports through a sandboxed "
                       "copy of the engine (own topics, group, state; production untouched)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-topics", action="store_true",
                     help="read the production input topics (range options below)")
    src.add_argument("--jsonl", nargs="+", metavar="FILE", help="export files (stream-app export)")
    _range_options(r)
    r.add_argument("--config", help="engine config file (default: production's latest valid one)")
    r.add_argument("--name", help="sandbox name: topics replay-<name>-*, state .cache/replay-<name>")
    r.add_argument("--speed", type=float, default=0.0,
                   help="event seconds per wall second (default 0: as fast as it goes)")
    r.add_argument("--compress", type=float, metavar="SECONDS",
                   help="fit the whole range into this many wall seconds")
    r.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the worker")
    r.add_argument("--out", help="JSONL of the sandbox's decisions, delta-metrics, dead letters")
    r.add_argument("--keep", action="store_true", help="keep the sandbox topics afterwards")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=cmd_replay)
    v = sub.add_parser("evaluate", help="off-policy evaluation (IPS, SNIPS, DR, replay) of a "
                       "policy or config on logged decisions")
    v.add_argument("--logs", nargs="+", required=True, metavar="FILE", help="JSONL logs")
    v.add_argument("--format", choices=["auto", "engine", "bandit"], default="auto")
    v.add_argument("--policy", help="uniform, static, by_context, or an engine policy name")
    v.add_argument("--params", help="the policy's parameters as a JSON object")
    v.add_argument("--config", help="engine config file: evaluate its use cases' policies")
    v.add_argument("--reward", choices=["response", "value"], default="response",
                   help="engine logs: 1 per response, or the outcome's value")
    v.add_argument("--level", type=float, default=0.95, help="confidence level")
    v.add_argument("--ci", choices=["normal", "bootstrap"], default="normal")
    v.add_argument("--draws", type=int, default=50, help="Monte Carlo draws per row (engine policies)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    v.set_defaults(func=cmd_evaluate)
    lb = sub.add_parser("learn-bench", help="learning quality of the engine on the simulator "
                        "with drift, against the oracle, static, random and River's Thompson")
    lb.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated simulator seeds")
    lb.add_argument("--customers", type=int, default=1000)
    lb.add_argument("--days", type=float, default=14.0)
    lb.add_argument("--drift-days", default="7", help="comma-separated days of the drifts")
    lb.add_argument("--agents", default="", help="comma-separated agents (default: baselines, "
                    "engine_default, engine_segment_arms, engine_best, engine_rules_on)")
    lb.add_argument("--processes", type=int, default=1, help="runs in parallel")
    lb.add_argument("--partitions", type=int, default=1, help="partitions the engine's "
                    "customers are split over (the fleet's learner in-process)")
    lb.add_argument("--full-models", action="store_true", help="the worker's River models "
                    "(slower; decisions are the same)")
    lb.add_argument("--out", default="docs/benchmarks", help="folder of the report files")
    lb.add_argument("--name", default="learning-results", help="file stem of the report files")
    lb.set_defaults(func=cmd_learn_bench)
    db = sub.add_parser("dashboard", help="serve a live dashboard of the output topics "
                        "(decisions, delta-metrics, dead-letter) in the browser")
    db.add_argument("--host", default="127.0.0.1")
    db.add_argument("--port", type=int, default=8050)
    db.add_argument("--from-now", action="store_true",
                    help="read only what is published from now on (default: the whole topics)")
    db.add_argument("--refresh", type=float, default=1.0, help="seconds between page updates")
    db.add_argument("--sim-seed", type=int, help="the traffic comes from the simulator with this "
                    "seed (demo / simulate): show the learning curve against the oracle")
    db.add_argument("--sim-customers", type=int, default=500, help="the simulator's customers")
    db.add_argument("--sim-days", type=float, default=3.0, help="the simulator's days")
    db.add_argument("--sim-drift-at-days", type=float, nargs="*", default=[],
                    help="the simulator's drift times (days after the start)")
    db.set_defaults(func=cmd_dashboard)
    gw = sub.add_parser("gateway", help="serve the HTTP decision gateway: /v1/decide, "
                        "/v1/outcomes and Personalizer's Rank / Reward (docs/gateway.md)")
    gw.add_argument("--host", help="address to bind (default $STREAM_APP_GATEWAY_HOST, 127.0.0.1)")
    gw.add_argument("--port", type=int, help="port (default $STREAM_APP_GATEWAY_PORT, 8080)")
    gw.set_defaults(func=cmd_gateway)
    gb = sub.add_parser("gateway-bench", help="the gateway's added latency (p50 / p99) at a set "
                        "rate, with a broker, a worker and a gateway of its own")
    gb.add_argument("--rate", type=float, default=500.0, help="requests per second")
    gb.add_argument("--seconds", type=float, default=20.0, help="length of the measured run")
    gb.add_argument("--customers", type=int, default=10_000)
    gb.add_argument("--partitions", type=int, default=4)
    gb.add_argument("--timeout-ms", type=float, default=2000.0,
                    help="the gateway's timeout (a fallback answer is counted, not measured)")
    gb.add_argument("--worker", default="engine", choices=("engine", "relay"),
                    help="what answers: the engine, or the relay (the engine taken out: the "
                    "gateway's share at rates the engine cannot sustain here)")
    gb.add_argument("--out", help="also write the JSON report to this file")
    gb.set_defaults(func=cmd_gateway_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from stream_app.logs import configure

    from stream_app.kafka.security import ClientSecurity

    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        ClientSecurity.from_env()  # TLS / SASL of the Kafka clients, which read it themselves
    except ValueError as exc:  # a bad setting (a number, a combination): one readable line
        print(f"stream-app: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    if args.command in ("worker", "learner"):
        sys.argv = [sys.argv[0]]  # Faust's worker reads argv; ours are already parsed
    try:
        return args.func(args, settings)
    except CliError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one readable line at the CLI, not a traceback
        name = type(exc).__name__
        if name in ("BrokerError", "KafkaException", "KafkaAuthenticationError"):
            print(f"stream-app: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
