"""``stream-app replay``: push logged inputs through a sandboxed copy of the engine.

Inputs are the engine's input topics (``interactions``, ``decision-requests``, ``outcomes``) as
a topic range of production (``--from-topics``) or JSONL exports (``--jsonl``). The sandbox
(``sandbox.py``) gets fresh topics, the configuration (``--config`` or the latest valid one of
production) and its own worker; the inputs go in, keyed as they were, on the partition they
came from, in event-time order (the message's ``ts``; on equal ``ts`` interactions, then outcomes,
then requests; otherwise as logged).

Event time is in the messages, so windows and timers follow it whatever the wall clock does;
``--speed`` only sets the pace (event seconds per wall second, 0 = as fast as it goes) and
``--compress DURATION`` fits the whole range into that many wall seconds.

**Determinism.** A decision is a function of (config, state, request), and the state of a
partition is changed by every input topic (requests, outcomes, interactions) and by the
attribution timers that event time fires. Each topic is consumed by its own agent, so messages of
different topics could interleave differently on each run. The feeder therefore works in lockstep
per partition: before it sends a message it waits until every earlier message of *another* topic
on the same partition has been processed -- a request when its decision appears, an outcome when
its delta record does, anything else (interactions, a repeated id) behind a *fence*: a message
that is not a contract message, which the worker must dead-letter (DESIGN.md: nothing is dropped
silently) after everything before it on that topic-partition. Fence letters are left out of the
counts and the output. Partitions are independent (their state is partition-local), so the
partition of every message is kept.

The output (``--out``) is the sandbox's ``decisions``, ``delta-metrics`` and ``dead-letter``
as export records (``ranges.py``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_app.kafka.topics import INPUT_TOPICS
from stream_app.settings import Settings
from stream_app.tools.lockstep import (  # noqa: F401 - re-exported
    OUTPUT_TOPICS,
    Acks,
    Feeder,
    InputMessage,
    ReplayError,
    assign_partitions,
    contract_name,
    input_messages,
)
from stream_app.tools.ranges import (
    RangeError,
    TopicRange,
    read_export,
    read_range,
)
from stream_app.tools.sandbox import Sandbox, SandboxViolation, WorkerProcess, production_configs


@dataclass
class ReplayResult:
    name: str
    prefix: str
    fed: dict[str, int]
    skipped_records: int
    requests: int
    decisions: list[dict[str, Any]]
    missing: list[str]  # request ids without a decision
    dead_letters: int
    deltas: int
    unconfirmed: int  # barriers passed on timeout: ordering not guaranteed for those
    event_span_s: float
    wall_s: float
    worker_pid: int
    config_version: str
    kept: bool
    out: str | None = None
    deleted_topics: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        no_action = sum(d.get("action") != "offer" for d in self.decisions)
        return {
            "sandbox": self.prefix, "config_version": self.config_version, "fed": self.fed,
            "records_not_inputs": self.skipped_records, "requests": self.requests,
            "decisions": len(self.decisions), "no_action": no_action,
            "missing_decisions": len(self.missing), "dead_letters": self.dead_letters,
            "delta_metrics": self.deltas, "unconfirmed_barriers": self.unconfirmed,
            "event_span_s": round(self.event_span_s, 1), "wall_s": round(self.wall_s, 2),
            "compression": round(self.event_span_s / self.wall_s, 1) if self.wall_s > 0 else None,
            "worker_pid": self.worker_pid, "topics_kept": self.kept, "out": self.out,
        }


def _valid_config(raw: bytes) -> dict[str, Any]:
    from stream_app.core.catalogue import ConfigError, parse_config
    from stream_app.schemas import Contract, InvalidMessage

    try:
        doc = Contract.load().decode("engine-config", raw)
        parse_config(doc)
    except (InvalidMessage, ConfigError) as exc:
        raise ReplayError(str(exc)) from None
    return doc


def choose_config(production: Settings, path: str | None) -> bytes:
    """The configuration to replay with: the file, or production's latest valid one."""
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ReplayError(f"cannot read {path}: {exc.strerror}") from None
        try:
            _valid_config(raw)
        except ReplayError as exc:
            raise ReplayError(f"{path}: {exc}") from None
        return raw
    for raw in reversed(production_configs(production)):
        try:
            _valid_config(raw)
            return raw
        except ReplayError:
            continue
    raise ReplayError(f"no valid configuration on {production.topic('engine-config')}; "
                      "give one with --config FILE")


def read_inputs_from_topics(production: Settings, rng: TopicRange) -> tuple[list[dict], int]:
    """Export records of the production input topics in the range; and their partition count."""
    from stream_app.tools.ranges import partition_count

    records: list[dict] = []
    partitions = 1
    for name in INPUT_TOPICS:
        topic = production.topic(name)
        partitions = max(partitions, partition_count(production.bootstrap_servers, topic))
        records.extend(read_range(production.bootstrap_servers, topic, rng))
    return records, partitions


def run_replay(production: Settings, records: Iterable[dict[str, Any]], config: bytes, *,
               name: str, partitions: int | None = None, speed: float = 0.0,
               compress_s: float | None = None, keep: bool = False,
               timeout_s: float = 120.0, out: Path | None = None) -> ReplayResult:
    """Replay export records through a fresh sandbox ``replay-<name>-`` and collect what it did."""
    messages, skipped = input_messages(records)
    if partitions is None:
        known = [m.source_partition for m in messages if m.source_partition is not None]
        partitions = max(known) + 1 if known and len(known) == len(messages) else production.partitions
    box = Sandbox.create(production.with_(partitions=partitions), name)
    assign_partitions(messages, partitions)
    doc = _valid_config(config)
    from stream_app.kafka.topics import create_topics

    box.reset()
    create_topics(box.settings)
    producer = box.producer()
    producer.produce(box.settings.topic("engine-config"), b"engine", config)
    if producer.flush(30):
        raise ReplayError("config not delivered to the sandbox within 30 s")
    acks = Acks(box)
    worker = WorkerProcess(box, production.cache_dir / f"replay-{name}.worker.log")
    pid = worker.start()
    started = time.monotonic()
    try:
        feeder = Feeder(producer, acks, worker, barrier_timeout_s=timeout_s)
        span = (messages[-1].ts - messages[0].ts) / 1000.0 if messages else 0.0
        if compress_s:
            speed = span / compress_s if compress_s > 0 else 0.0
        first = messages[0].ts if messages else 0
        for i, m in enumerate(messages):
            if speed > 0:
                ahead = (m.ts - first) / 1000.0 / speed - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            feeder.send(m)
            if i % 100 == 0:
                producer.poll(0)
                acks.drain(0.0)
        missing = feeder.finish(messages, timeout_s)
        time.sleep(0.5)
        acks.drain(0.2)
        wall = time.monotonic() - started
        decisions = [acks.decided[m.ident] for m in messages
                     if m.topic == "decision-requests" and m.ident in acks.decided]
        letters = [m for m in acks.letters if not feeder.is_fence_letter(m)]
        if out is not None:
            _write_outputs(box, out, feeder.is_fence_letter)
    finally:
        worker.stop()
        acks.close()
    fed: dict[str, int] = {t: 0 for t in INPUT_TOPICS}
    for m in messages:
        fed[m.topic] += 1
    result = ReplayResult(
        name=name, prefix=box.prefix, fed=fed, skipped_records=skipped,
        requests=fed["decision-requests"], decisions=decisions, missing=missing,
        dead_letters=len(letters), deltas=acks.counts["delta-metrics"],
        unconfirmed=feeder.unconfirmed, event_span_s=span, wall_s=wall, worker_pid=pid,
        config_version=str(doc.get("version")), kept=keep, out=str(out) if out else None)
    if not keep:
        result.deleted_topics = box.reset()
    return result


def _write_outputs(box: Sandbox, out: Path, is_fence_letter: Any) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out, "wb") as fh:
        for name in OUTPUT_TOPICS:
            for rec in read_range(box.settings.bootstrap_servers, box.settings.topic(name)):
                if name == "dead-letter" and is_fence_letter(rec.get("value") or {}):
                    continue
                fh.write(orjson.dumps(rec) + b"\n")
                n += 1
    return n


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cli import CliError

    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    try:
        partitions = None
        if args.from_topics:
            records, partitions = read_inputs_from_topics(settings, TopicRange.from_args(args))
        else:
            records = [rec for path in args.jsonl for rec in read_export(path)]
        config = choose_config(settings, args.config)
        result = run_replay(settings, records, config, name=name, partitions=partitions,
                            speed=args.speed, compress_s=args.compress,
                            keep=args.keep, timeout_s=args.timeout,
                            out=Path(args.out) if args.out else None)
    except (RangeError, ReplayError, SandboxViolation) as exc:
        raise CliError(str(exc)) from None
    summary = result.summary()
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        fed = ", ".join(f"{k} {v}" for k, v in summary["fed"].items())
        print(f"replayed through sandbox {summary['sandbox']} (config {summary['config_version']}, "
              f"worker pid {summary['worker_pid']})")
        print(f"fed: {fed}; {summary['records_not_inputs']} records were not inputs")
        print(f"decisions {summary['decisions']} of {summary['requests']} requests "
              f"(no_action {summary['no_action']}, missing {summary['missing_decisions']}), "
              f"delta-metrics records {summary['delta_metrics']}, dead letters {summary['dead_letters']}")
        print(f"{summary['event_span_s']} s of event time in {summary['wall_s']} s "
              f"(x{summary['compression']})"
              + (f"; {summary['unconfirmed_barriers']} messages passed a barrier on time-out, "
                 "their order is not guaranteed" if summary["unconfirmed_barriers"] else ""))
        print(f"outputs written to {summary['out']}" if summary["out"] else
              "no --out given: outputs not written")
        print("sandbox topics kept" if args.keep else
              f"sandbox deleted ({len(result.deleted_topics)} topics)")
    return 0 if not result.missing else 1
