"""The worker with the engine taken out: what the transport alone lets one process do here.

``stream-app bench --worker relay`` (or ``faust-relay``) runs the whole benchmark, the same load
generator, decision reader, phases and report, against this process instead of the engine. It
reads the worker's three input topics and, for every message, writes what the worker writes:

- per decision request, a decision of the worker's size (``decision_bytes``) to ``decisions``,
  at the worker's latency lane (``Output``, 1 ms linger), and ``per_request`` records of
  ``record_bytes`` to a compacted topic in the request's partition (the worker's changelog
  records and delta records, through the 20 ms lane);
- per interaction ``per_interaction`` such records, per outcome ``per_outcome``.

It decodes every input (orjson: any engine must) and does nothing else: no state, no tables, no
decision logic. The fan-out defaults are the worker's own, measured (the bench report's
``traffic`` section, ``docs/benchmarks/engine/engine-flat-learner-apart.md``). Offsets are
committed once a second after everything produced is acknowledged, as the worker does (at
least once).

Two consumers: ``librdkafka`` (confluent-kafka: a batch of records per call, fetched on
librdkafka's threads) and ``faust`` (faust-streaming's aiokafka consumer and agents, as the worker
runs them). The difference between the two is what Faust costs; the gap between either and the
engine is what the engine costs; the librdkafka relay's ceiling is what any Python engine with
this fan-out could reach on this machine, its broker included.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.kafka.security import client_config, faust_credentials
from stream_app.kafka.topics import TopicSpec, ensure_topics
from stream_app.settings import Settings
from stream_app.worker.output import Output

__all__ = ["Fanout", "Relay", "main"]

RELAY_TOPIC = "relay-changelog"


@dataclass(frozen=True, slots=True)
class Fanout:
    """Records written per input record.

    Defaults are the engine's own, from the traffic section of the 100,000-customer flat-out
    bench (docs/benchmarks/engine/engine-flat-learner-apart.md): 2.04 side records per request
    in all (customers changelog 1.68, scores 0.26, learning 0.06, delta metrics 0.04), split
    here as 1 per request, 2 per interaction (1.0 per request) and 1 per outcome (0.1 per
    request) = 2.1; side records average ~580 B (a customer value is ~585 B); a decision is
    ~1.85 KB.
    """

    per_request: int = 1
    per_interaction: int = 2
    per_outcome: int = 1
    record_bytes: int = 580
    decision_bytes: int = 1850

    def __post_init__(self) -> None:
        if min(self.per_request, self.per_interaction, self.per_outcome) < 0:
            raise ValueError("records per input must be >= 0")
        if self.record_bytes < 1 or self.decision_bytes < 100:
            raise ValueError("record_bytes must be >= 1 and decision_bytes >= 100")


class Relay:
    """Input record -> the records the worker would write for it (no engine in between)."""

    def __init__(self, settings: Settings, fanout: Fanout, output: Output) -> None:
        self.fanout, self.output = fanout, output
        self.requests = settings.topic("decision-requests")
        self.interactions = settings.topic("interactions")
        self.decisions = settings.topic("decisions")
        self.side = settings.topic(RELAY_TOPIC)
        self._side_value = b"x" * fanout.record_bytes
        self._suffixes = [b":%d" % i for i in range(max(fanout.per_request,
                                                        fanout.per_interaction,
                                                        fanout.per_outcome))]
        # the decision's fixed fields take ~190 B of JSON; the rest is padding to the worker's size
        self._pad = "p" * max(0, fanout.decision_bytes - 190)
        self.handled = 0
        self.rejected = 0

    def handle(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        started = time.perf_counter()
        try:
            msg = orjson.loads(value) if value is not None else None
            customer = msg["customer_id"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            self.rejected += 1  # not the generator's: nothing to relay
            return
        key = key if key is not None else customer.encode()
        f = self.fanout
        if topic == self.requests:
            rid = msg["request_id"]
            decision = {"decision_id": "d-" + rid, "request_id": rid, "customer_id": customer,
                        "ts": msg["ts"], "action": "offer", "offer_id": "bench-o000",
                        "model_version": "relay", "pad": self._pad,
                        "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)}
            self.output.send(self.decisions, key, orjson.dumps(decision))
            n = f.per_request
        elif topic == self.interactions:
            n = f.per_interaction
        else:
            n = f.per_outcome
        send, side, value_ = self.output.send, self.side, self._side_value
        for suffix in self._suffixes[:n]:
            send(side, key + suffix, value_, partition)
        self.handled += 1


def _output(settings: Settings) -> Output:
    return Output(settings.bootstrap_servers, linger_ms=settings.decision_linger_ms,
                  bulk_linger_ms=settings.output_linger_ms,
                  urgent_topics=frozenset({settings.topic("decisions")}))


def create_relay_topic(settings: Settings) -> None:
    """The compacted topic the relay's side records go to (like the worker's changelogs)."""
    ensure_topics(settings, [(settings.topic(RELAY_TOPIC), TopicSpec(RELAY_TOPIC, compacted=True))])


def run_librdkafka(settings: Settings, fanout: Fanout) -> None:
    """confluent-kafka consumer: poll one record (no wait added at low rates), then take what
    else has arrived, up to 1,000; commit every second once the outputs are acknowledged."""
    from confluent_kafka import Consumer

    stopping = [False]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.__setitem__(0, True))
    output = _output(settings)
    relay = Relay(settings, fanout, output)
    consumer = Consumer(client_config({"bootstrap.servers": settings.bootstrap_servers,
                                       "group.id": settings.app_id, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False, "fetch.wait.max.ms": 100}))
    consumer.subscribe([settings.topic(t) for t in ("decision-requests", "interactions",
                                                    "outcomes")])
    committed_at = time.monotonic()
    try:
        while not stopping[0]:
            first = consumer.poll(0.05)
            batch = [] if first is None else [first, *consumer.consume(999, 0)]
            for m in batch:
                if m.error() is None:
                    relay.handle(m.topic(), m.partition(), m.key(), m.value())
            output.poll()
            if batch and time.monotonic() - committed_at >= 1.0:
                output.flush_blocking()
                consumer.commit(asynchronous=False)
                committed_at = time.monotonic()
        output.flush_blocking()
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    print(f"relay: {relay.handled} records relayed, {relay.rejected} not the generator's",
          flush=True)


def run_faust(settings: Settings, fanout: Fanout) -> None:
    """faust-streaming's consumer and agents, as ``worker/app.py`` runs them (uvloop, the same
    commit settings and fetch wait, the outputs flushed before every commit), with the relay as
    the handler."""
    import faust
    import mode.loop

    from stream_app.worker import faust_patches

    try:
        mode.loop.use("uvloop")
    except ImportError:
        pass
    faust_patches.install_fetch_wait(settings.fetch_max_wait_ms)  # as the worker's
    app = faust.App(settings.app_id, broker=f"kafka://{settings.bootstrap_servers}",
                    broker_credentials=faust_credentials(),
                    topic_partitions=settings.partitions, web_enabled=False,
                    key_serializer="raw", value_serializer="raw", datadir=str(settings.data_dir),
                    consumer_auto_offset_reset="earliest", broker_commit_every=500,
                    broker_commit_interval=1.0, broker_session_timeout=10.0,
                    broker_heartbeat_interval=1.0)
    output = _output(settings)
    relay = Relay(settings, fanout, output)
    faust_flush = app.producer.flush

    async def flush_before_commit() -> None:
        await output.flush()
        await faust_flush()

    app.producer.flush = flush_before_commit  # type: ignore[method-assign]
    poll_due = [False]

    def poll_tick() -> None:
        poll_due[0] = False
        output.poll()

    def agent_for(name: str) -> None:
        topic = app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                m = event.message
                relay.handle(m.topic, m.partition, m.key, m.value)
                if not poll_due[0]:
                    poll_due[0] = True
                    asyncio.get_running_loop().call_soon(poll_tick)

        agent.__name__ = agent.__qualname__ = f"relay_{name.replace('-', '_')}"
        app.agent(topic, name=f"relay-{name}")(agent)

    for name in ("decision-requests", "interactions", "outcomes"):
        agent_for(name)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.spinner = None
    sys.argv = [sys.argv[0]]  # Faust's worker reads argv
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stream_app.bench.relay", description=__doc__
                                 .split("\n\n")[0])
    ap.add_argument("--consumer", choices=("librdkafka", "faust"), default="librdkafka")
    defaults = Fanout()
    for field in ("per_request", "per_interaction", "per_outcome", "record_bytes",
                  "decision_bytes"):
        ap.add_argument(f"--{field.replace('_', '-')}", type=int,
                        default=getattr(defaults, field))
    args = ap.parse_args(argv)
    try:
        fanout = Fanout(args.per_request, args.per_interaction, args.per_outcome,
                        args.record_bytes, args.decision_bytes)
    except ValueError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    create_relay_topic(settings)
    (run_faust if args.consumer == "faust" else run_librdkafka)(settings, fanout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
