"""The replay feeder: input messages in event-time order, in lockstep per partition.

See ``replay.py`` for why. An ``InputMessage`` is one message to feed; ``Acks`` reads what the
sandbox worker visibly did (decisions, outcome deltas, dead letters); ``Feeder`` sends, and before
a message of one topic waits for the earlier messages of the other topics on its partition, using
a *fence* (a message the worker must dead-letter) for those that announce nothing themselves.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.core.delta import outcome_rows
from stream_app.kafka.topics import INPUT_TOPICS
from stream_app.partition.keys import partition_of
from stream_app.tools.ranges import raw_key, raw_value
from stream_app.tools.sandbox import GuardedProducer, Sandbox, WorkerProcess

RANK = {"interactions": 0, "outcomes": 1, "decision-requests": 2}  # order on equal event time
OUTPUT_TOPICS = ("decisions", "delta-metrics", "dead-letter")
FENCE_KEY = b"replay-fence"


class ReplayError(RuntimeError):
    """The replay cannot go on (bad input, worker died, timed out); one readable line."""


@dataclass
class InputMessage:
    topic: str  # contract name: interactions / decision-requests / outcomes
    key: bytes | None
    value: bytes | None
    ts: int  # event time: the message's ``ts``, else its Kafka timestamp
    source_partition: int | None
    ident: str | None  # request_id or outcome_id: what the worker's answer is recognised by
    seq: int = 0
    partition: int = 0  # in the sandbox
    offset: int | None = None  # in the sandbox, once delivered


def contract_name(topic: str) -> str | None:
    """The input topic a (prefixed) topic name is, or None."""
    return next((name for name in INPUT_TOPICS if topic.endswith(name)), None)


def input_messages(records: Iterable[dict[str, Any]]) -> tuple[list[InputMessage], int]:
    """Input messages from export records, in feeding order; also how many records were not inputs."""
    out, skipped = [], 0
    for rec in records:
        name = contract_name(rec.get("topic", ""))
        if name is None:
            skipped += 1
            continue
        value = raw_value(rec)
        parsed = rec.get("value") if isinstance(rec.get("value"), dict) else {}
        ts = parsed.get("ts")
        if not isinstance(ts, int) or isinstance(ts, bool):
            ts = int(rec.get("timestamp") or 0)
        ident_field = {"decision-requests": "request_id", "outcomes": "outcome_id"}.get(name)
        ident = parsed.get(ident_field) if ident_field else None
        part = rec.get("partition")
        out.append(InputMessage(name, raw_key(rec), value, ts,
                                part if isinstance(part, int) and part >= 0 else None,
                                ident if isinstance(ident, str) else None, seq=len(out)))
    out.sort(key=lambda m: (m.ts, RANK[m.topic], m.seq))
    return out, skipped


def assign_partitions(messages: list[InputMessage], partitions: int) -> None:
    """Keep the source partitions when they all fit, else hash the key like a producer (murmur2)."""
    keep = all(m.source_partition is not None and m.source_partition < partitions for m in messages)
    for m in messages:
        if keep:
            m.partition = m.source_partition  # type: ignore[assignment]
        else:
            m.partition = partition_of(m.key or b"", partitions)


class Acks:
    """What the sandbox worker has visibly done with the messages fed to it."""

    def __init__(self, sandbox: Sandbox) -> None:
        from stream_app.kafka.client import TopicReader

        s = sandbox.settings
        self.sandbox = sandbox
        self.readers = {name: TopicReader(s.bootstrap_servers, s.topic(name), from_start=True)
                        for name in OUTPUT_TOPICS}
        self.decided: dict[str, dict[str, Any]] = {}
        self.outcomes: set[str] = set()
        self.dead: set[tuple[str, int, int]] = set()
        self.letters: list[dict[str, Any]] = []
        self.counts = {name: 0 for name in OUTPUT_TOPICS}

    def drain(self, timeout_s: float = 0.0) -> None:
        for name, reader in self.readers.items():
            for _, raw in reader.poll(timeout_s if name == "decisions" else 0.0):
                self.counts[name] += 1
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if name == "decisions":
                    self.decided.setdefault(msg.get("request_id"), msg)
                elif name == "delta-metrics":
                    for row in outcome_rows(msg):
                        if row.get("outcome_id"):
                            self.outcomes.add(row["outcome_id"])
                else:
                    self.letters.append(msg)
                    src = msg.get("source") or {}
                    self.dead.add((src.get("topic"), src.get("partition"), src.get("offset")))

    def done(self, m: InputMessage) -> bool:
        if m.ident is not None:
            if m.topic == "decision-requests" and m.ident in self.decided:
                return True
            if m.topic == "outcomes" and m.ident in self.outcomes:
                return True
        return m.offset is not None and (
            (self.sandbox.settings.topic(m.topic), m.partition, m.offset) in self.dead)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


class Feeder:
    """Sends input messages in lockstep per partition (see the module docstring)."""

    def __init__(self, producer: GuardedProducer, acks: Acks, worker: WorkerProcess,
                 barrier_timeout_s: float) -> None:
        self.producer, self.acks, self.worker = producer, acks, worker
        self.barrier_timeout_s = barrier_timeout_s
        self.outstanding: dict[int, list[InputMessage]] = defaultdict(list)
        self.fences: list[InputMessage] = []
        self.unconfirmed = 0
        self.topic_of = {name: acks.sandbox.settings.topic(name) for name in INPUT_TOPICS}

    def _delivered(self, m: InputMessage):
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                raise ReplayError(f"could not deliver to {msg.topic()}: {err}")
            m.offset = msg.offset()
        return callback

    def _produce(self, m: InputMessage) -> None:
        self.producer.produce(self.topic_of[m.topic], m.key, m.value, partition=m.partition,
                              on_delivery=self._delivered(m))

    def _fence(self, topic: str, partition: int) -> InputMessage:
        """A message the worker must dead-letter (it is no contract message): when its letter
        appears, everything before it on that topic-partition has been processed."""
        fence = InputMessage(topic, FENCE_KEY, orjson.dumps({"replay_fence": len(self.fences)}),
                             0, None, None, partition=partition)
        self.fences.append(fence)
        self._produce(fence)
        return fence

    def _wait(self, partition: int, blockers: list[InputMessage]) -> None:
        # messages that announce themselves (decisions, outcome deltas) are awaited as such; the
        # others (interactions, anything without an id) behind a fence
        fenced = {b.topic: self._fence(b.topic, partition) for b in blockers if b.ident is None}
        self.producer.flush(30)
        started = time.monotonic()
        while True:
            self.acks.drain(0.02)
            pending = [b for b in blockers if not (b.topic in fenced and self.acks.done(fenced[b.topic]))
                       and not self.acks.done(b)]
            if not pending:
                return
            if not self.worker.alive():
                raise ReplayError(f"the sandbox worker stopped; see {self.worker.log_path}")
            waited = time.monotonic() - started
            if waited > self.barrier_timeout_s:
                self.unconfirmed += len(pending)
                return
            if waited > 2.0:  # e.g. a repeated request id: answered by nothing, so fence it
                for b in pending:
                    if b.topic not in fenced:
                        fenced[b.topic] = self._fence(b.topic, partition)
                self.producer.flush(30)

    def send(self, m: InputMessage) -> None:
        queue = self.outstanding[m.partition]
        blockers = [b for b in queue if b.topic != m.topic]
        if blockers:
            self._wait(m.partition, blockers)
            queue[:] = [b for b in queue if b.topic == m.topic]
        self._produce(m)
        queue.append(m)

    def finish(self, messages: list[InputMessage], timeout_s: float) -> list[str]:
        """Wait until every request has been answered; the request ids that were not."""
        self.producer.flush(30)
        requests = [m for m in messages if m.topic == "decision-requests"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.acks.drain(0.1)
            if all(m.ident in self.acks.decided for m in requests if m.ident is not None):
                break
            if not self.worker.alive():
                raise ReplayError(f"the sandbox worker stopped; see {self.worker.log_path}")
        return [m.ident or f"offset {m.offset}" for m in requests
                if m.ident is None or m.ident not in self.acks.decided]

    def is_fence_letter(self, letter: dict[str, Any]) -> bool:
        src = letter.get("source") or {}
        return any((self.topic_of[f.topic], f.partition, f.offset) ==
                   (src.get("topic"), src.get("partition"), src.get("offset")) for f in self.fences)
