"""The load generator: decision requests (+ interactions) produced at a set rate or flat out, and a
collector thread that reads ``decisions``, measures latency and answers a fraction with outcomes.

Messages are built from pre-encoded byte templates (orjson once, then concatenation), so the
generator spends microseconds per message. Each request id carries what the collector needs,
``<phase>.<seq>.<sent µs>``, so latency needs no shared table between the two threads:

>>> t = RequestTemplate(payload_bytes=300)
>>> raw = t.build(b"c0000042", "m.7.1764000000000000", 1764000000000)
>>> msg = orjson.loads(raw)
>>> msg["customer_id"], msg["request_id"], abs(len(raw) - 300) < 40
('c0000042', 'm.7.1764000000000000', True)
"""

from __future__ import annotations

import os
import re
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from stream_app.kafka.client import PARTITIONER
from stream_app.kafka.security import client_config


def customer_key(idx: int) -> bytes:
    return b"c%07d" % idx


CUSTOMER_KEY = re.compile(rb"c\d{7}")  # the bench customer ids customer_key makes


class RequestTemplate:
    """A decision request whose context is padded so the message is about ``payload_bytes``."""

    def __init__(self, payload_bytes: int, channel: str = "app", use_case: str = "default") -> None:
        tail = {"channel": channel, "use_case": use_case, "context": {"page": "home", "pad": ""}}
        base = len(self._join(b"c0000000", "x.0.0000000000000000", 1_764_000_000_000,
                              orjson.dumps(tail)[1:]))
        tail["context"]["pad"] = "x" * max(0, payload_bytes - base)
        self._tail = orjson.dumps(tail)[1:]

    @staticmethod
    def _join(customer: bytes, request_id: str, ts_ms: int, tail: bytes) -> bytes:
        return b"".join((b'{"request_id":"', request_id.encode(), b'","customer_id":"', customer,
                         b'","ts":', b"%d" % ts_ms, b",", tail))

    def build(self, customer: bytes, request_id: str, ts_ms: int) -> bytes:
        return self._join(customer, request_id, ts_ms, self._tail)


_INTERACTION_TAIL = orjson.dumps({"type": "transaction", "channel": "app", "amount": 12.5,
                                  "category": "groceries", "merchant": "BenchMart"})[1:]


def interaction(customer: bytes, event_id: str, ts_ms: int) -> bytes:
    return b"".join((b'{"event_id":"', event_id.encode(), b'","customer_id":"', customer,
                     b'","ts":', b"%d" % ts_ms, b",", _INTERACTION_TAIL))


def answers(seq: int, fraction: float) -> bool:
    """Whether request ``seq``'s decision gets an outcome (a fixed hash, so runs are repeatable)."""
    return ((seq * 2654435761) & 0xFFFFFFFF) < fraction * 4294967296.0


@dataclass
class PhaseLog:
    """What the collector saw of one phase's decisions (wall clock, milliseconds)."""

    received_at: array = field(default_factory=lambda: array("d"))  # time.time() of consumption
    e2e_ms: array = field(default_factory=lambda: array("d"))  # request produced -> consumed
    to_log_ms: array = field(default_factory=lambda: array("d"))  # -> decision appended (CreateTime)
    engine_ms: array = field(default_factory=lambda: array("d"))  # the worker's own latency_ms
    no_action: int = 0
    outcomes: int = 0


class DecisionCollector(threading.Thread):
    """Reads ``decisions`` from its end at start-up (no consumer group) on its own thread."""

    def __init__(self, bootstrap: str, decisions_topic: str, outcomes_topic: str,
                 outcome_fraction: float, linger_ms: float, dead_letter_topic: str) -> None:
        super().__init__(name="bench-decisions", daemon=True)
        self.consumer = Consumer(client_config({
            "bootstrap.servers": bootstrap, "group.id": f"bench-reader-{time.time_ns()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20, "enable.partition.eof": False,
        }))
        self.producer = Producer(client_config({
            "bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "1",
            "partitioner": PARTITIONER, "queue.buffering.max.messages": 1_000_000}))
        self.outcomes_topic = outcomes_topic
        self.fraction = outcome_fraction
        self.phases: dict[str, PhaseLog] = {}
        self.received = 0
        self.foreign = 0  # decisions whose request id is not the generator's
        self.first_seen: dict[str, float] = {}  # request id -> time.time() (probes, restart)
        self.watch: set[str] = set()
        self._halt = threading.Event()
        self.error: BaseException | None = None
        self.decisions_topic = decisions_topic
        self.dead_letters = 0  # anything the worker rejected while the bench ran
        self.dead_reasons: list[str] = []
        self.consumer.assign(self._at_end(decisions_topic) + self._at_end(dead_letter_topic))

    def _at_end(self, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while True:  # a topic created a moment ago may not have a leader yet
            try:
                meta = self.consumer.list_topics(topic, timeout=15).topics[topic]
                tps = [TopicPartition(topic, p, self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=15)[1]) for p in sorted(meta.partitions)]
                if tps:
                    return tps
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def phase(self, tag: str) -> PhaseLog:
        return self.phases.setdefault(tag, PhaseLog())

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                # consume(n, timeout) returns when n messages are there or the timeout is over,
                # so a timeout would add up to its length to every latency measured at a low
                # rate: wait for one message, then take what else is there without waiting
                first = self.consumer.poll(0.05)
                if first is None:
                    self.producer.poll(0)
                    continue
                batch = [first, *self.consumer.consume(2000, 0)]
                now = time.time()
                for msg in batch:
                    if msg.error() is None:
                        self._record(msg, now)
                self.producer.poll(0)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the harness
            self.error = exc
        finally:
            self.producer.flush(10)
            self.consumer.close()

    def _record(self, msg, now: float) -> None:
        if msg.topic() != self.decisions_topic:
            self.dead_letters += 1
            if len(self.dead_reasons) < 5:
                self.dead_reasons.append(str(orjson.loads(msg.value()).get("reason")))
            return
        d = orjson.loads(msg.value())
        rid = d["request_id"]
        self.received += 1
        if rid in self.watch:
            self.first_seen.setdefault(rid, now)
        parts = rid.split(".")
        if len(parts) != 3:
            self.foreign += 1
            return
        tag, seq, sent_us = parts[0], int(parts[1]), int(parts[2])
        log = self.phase(tag)
        sent_ms = sent_us / 1000.0
        log.received_at.append(now)
        log.e2e_ms.append(now * 1000.0 - sent_ms)
        kind, created = msg.timestamp()
        log.to_log_ms.append(created - sent_ms if kind else float("nan"))
        log.engine_ms.append(float(d.get("latency_ms", float("nan"))))
        if d["action"] != "offer":
            log.no_action += 1
        elif answers(seq, self.fraction):
            kind_ = "clicked" if (seq * 40503) & 0xFF < 77 else "dismissed"
            outcome = {"outcome_id": f"o{tag}{seq}", "decision_id": d["decision_id"],
                       "customer_id": d["customer_id"], "ts": int(d["ts"]) + 200, "type": kind_}
            self._produce(d["customer_id"].encode(), orjson.dumps(outcome))
            log.outcomes += 1

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.outcomes_topic, key=key, value=value)
                return
            except BufferError:
                self.producer.poll(0.01)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


@dataclass
class Sent:
    """What the generator did in one phase."""

    tag: str
    target_rate: float  # 0 = flat out
    started: float = 0.0  # time.time()
    ended: float = 0.0
    requests: int = 0
    interactions: int = 0
    window_full_s: float = 0.0  # flat out: time spent waiting because the window was full
    behind_s: float = 0.0  # rate mode: how far the generator ended behind its schedule
    cpu_s: float = 0.0  # the generator process's CPU (all its threads) during the phase
    overloaded: bool = False  # stopped early: more than ``max_backlog`` requests in flight

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 1e-9)

    @property
    def send_rate(self) -> float:
        return self.requests / self.seconds


class LoadGenerator:
    """Produces requests and interactions with one batching confluent-kafka producer."""

    def __init__(self, bootstrap: str, requests_topic: str, interactions_topic: str,
                 collector: DecisionCollector, *, payload_bytes: int,
                 interactions_per_request: float, linger_ms: float) -> None:
        self.producer = Producer(client_config({
            "bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "1",
            "partitioner": PARTITIONER,
            "batch.num.messages": 10_000, "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }))
        self.requests_topic = requests_topic
        self.interactions_topic = interactions_topic
        self.collector = collector
        self.template = RequestTemplate(payload_bytes)
        self.ipr = interactions_per_request
        self.sent_total = 0
        self._seq = 0
        self._interaction_credit = 0.0

    @property
    def outstanding(self) -> int:
        return self.sent_total - self.collector.received

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value)
                return
            except BufferError:
                self.producer.poll(0.005)

    def send_request(self, tag: str, customer: bytes) -> str:
        """Produce one request now; return its request id."""
        self._seq += 1
        now = time.time()
        rid = f"{tag}.{self._seq}.{int(now * 1_000_000)}"
        ts = int(now * 1000)
        self._interaction_credit += self.ipr
        while self._interaction_credit >= 1.0:
            self._interaction_credit -= 1.0
            self._produce(self.interactions_topic, customer, interaction(customer, f"e{rid}", ts))
        self._produce(self.requests_topic, customer, self.template.build(customer, rid, ts))
        self.sent_total += 1
        return rid

    def drive(self, tag: str, customers: Iterator[int], *, rate: float, seconds: float,
              window: int, max_requests: int | None = None, max_backlog: int = 1 << 62) -> Sent:
        """Send requests for ``customers`` at ``rate`` per s (0: keep ``window`` in flight) for
        ``seconds`` or until ``max_requests`` are out. At a set rate the phase ends early once
        more than ``max_backlog`` requests wait for their decision (the engine cannot keep up;
        going on would only grow a queue that takes minutes to drain)."""
        sent = Sent(tag, rate)
        cpu0 = sum(os.times()[:2])
        sent.started = start = time.time()
        mono0 = time.monotonic()
        limit = max_requests if max_requests is not None else 1 << 62
        waiting_since: float | None = None
        while sent.requests < limit:
            elapsed = time.monotonic() - mono0
            if elapsed >= seconds:
                break
            if rate > 0:
                due = int(rate * elapsed) + 1 - sent.requests
                if self.outstanding > max_backlog:
                    sent.overloaded = True
                    break
            else:
                due = window - self.outstanding
            if due <= 0:
                if rate <= 0 and waiting_since is None:
                    waiting_since = time.monotonic()
                self.producer.poll(0)
                time.sleep(0.0005)
                continue
            if waiting_since is not None:
                sent.window_full_s += time.monotonic() - waiting_since
                waiting_since = None
            for _ in range(min(due, 1000, limit - sent.requests)):
                try:
                    idx = next(customers)
                except StopIteration:
                    limit = sent.requests
                    break
                self.send_request(tag, customer_key(idx))
                sent.requests += 1
            self.producer.poll(0)
        sent.ended = time.time()
        if rate > 0 and not sent.overloaded:
            on_time = rate * min(sent.ended - start, seconds)
            sent.behind_s = max(0.0, (on_time - sent.requests) / rate)
        sent.interactions = int(sent.requests * self.ipr)
        self.producer.flush(30)
        sent.cpu_s = sum(os.times()[:2]) - cpu0
        return sent

    def close(self) -> None:
        self.producer.flush(30)


def uniform_customers(n: int, seed: int) -> Iterator[int]:
    """An endless uniform draw of customer indexes in ``[0, n)``."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.integers(0, n, size=65_536).tolist()


def each_customer_once(n: int, seed: int) -> Iterator[int]:
    yield from np.random.default_rng(seed).permutation(n).tolist()
