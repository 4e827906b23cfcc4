"""A replay sandbox: a copy of the engine with its own topics, consumer group, tables and worker.

Every name of a sandbox starts with ``replay-<name>-``: the contract topics
(``replay-<name>-decisions``), the worker's app id and consumer group (``replay-<name>``) and so
its Faust changelog topics (``replay-<name>-arms-changelog``). Its state lives in
``<cache_dir>/replay-<name>``. Production is never written to, and that is enforced here, not
hoped for: a sandbox refuses to exist if any of its names could be a production name, and its
producer (``GuardedProducer``) refuses any topic outside the sandbox.

>>> prod = Settings()
>>> box = Sandbox.create(prod, "t1")
>>> box.settings.topic("decisions"), box.settings.app_id
('replay-t1-decisions', 'replay-t1')
>>> Sandbox.create(prod.with_(topic_prefix="replay-t1-"), "t1")
Traceback (most recent call last):
...
stream_app.tools.sandbox.SandboxViolation: sandbox prefix 'replay-t1-' is the production prefix
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from stream_app.kafka.client import PARTITIONER
from stream_app.kafka.security import client_config
from stream_app.kafka.topics import CONTRACT
from stream_app.settings import Settings
from stream_app.worker.process import spawn_worker, stop_worker

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SandboxViolation(RuntimeError):
    """A sandbox was about to touch something that is not its own."""


@dataclass(frozen=True)
class Sandbox:
    name: str
    production: Settings
    settings: Settings

    @classmethod
    def create(cls, production: Settings, name: str) -> Sandbox:
        if not _NAME.match(name):
            raise SandboxViolation(f"sandbox name {name!r}: letters, digits, '.', '_', '-' only")
        prefix = f"replay-{name}-"
        settings = production.with_(topic_prefix=prefix, app_id=f"replay-{name}",
                                    data_dir=production.cache_dir / f"replay-{name}")
        box = cls(name, production, settings)
        box.check()
        return box

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.settings.topic(s.name) for s in CONTRACT)

    @property
    def production_topics(self) -> frozenset[str]:
        return frozenset(self.production.topic(s.name) for s in CONTRACT)

    def check(self) -> None:
        """Refuse a sandbox whose topics, group or state could be production's."""
        prod = self.production
        if self.prefix == prod.topic_prefix:
            raise SandboxViolation(f"sandbox prefix {self.prefix!r} is the production prefix")
        clash = sorted(t for t in self.production_topics if t.startswith(self.prefix))
        if clash or self.topics & self.production_topics:
            raise SandboxViolation(f"sandbox prefix {self.prefix!r} covers production topics {clash}")
        if self.settings.app_id == prod.app_id or prod.app_id.startswith(self.prefix):
            raise SandboxViolation(f"sandbox app id {self.settings.app_id!r} clashes with "
                                   f"production's {prod.app_id!r}")
        if Path(self.settings.data_dir).resolve() == Path(prod.data_dir).resolve():
            raise SandboxViolation("sandbox state folder is the production state folder")

    def producer(self) -> GuardedProducer:
        return GuardedProducer(self)

    def reset(self) -> list[str]:
        """Delete the topics and state of an earlier sandbox of the same name."""
        import shutil

        from stream_app.kafka.topics import delete_topics_with_prefixes

        self.check()
        gone = delete_topics_with_prefixes(self.settings, (self.prefix,))
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        return gone

    def worker_env(self) -> dict[str, str]:
        """The sandbox worker's environment. Its fleet learner publishes no snapshot while the
        replay runs (only when it stops): when another partition's lessons reach a partition
        depends on wall time, so each partition decides with what it learned itself, and the
        same range gives the same decisions."""
        s = self.settings
        return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": s.bootstrap_servers,
                "STREAM_APP_TOPIC_PREFIX": s.topic_prefix, "STREAM_APP_ID": s.app_id,
                "STREAM_APP_PARTITIONS": str(s.partitions), "STREAM_APP_DATA_DIR": str(s.data_dir),
                "STREAM_APP_MAX_MESSAGE_BYTES": str(s.max_message_bytes),
                "STREAM_APP_SEED": str(s.seed), "STREAM_APP_LEARNER": "embedded",
                "STREAM_APP_SNAPSHOT_INTERVAL_S": str(REPLAY_SNAPSHOT_INTERVAL_S),
                "STREAM_APP_COMMIT_INTERVAL_MS": str(REPLAY_COMMIT_INTERVAL_MS)}


REPLAY_SNAPSHOT_INTERVAL_S = 10 * 365 * 86400.0  # no snapshot while a replay runs
# the lockstep feeder waits for the worker's committed output at every switch of input topic on
# a partition, so a replay's wall time is mostly commit intervals: commit often
REPLAY_COMMIT_INTERVAL_MS = 10.0


class GuardedProducer:
    """A producer that can only write to its sandbox's topics (``SandboxViolation`` otherwise)."""

    def __init__(self, sandbox: Sandbox) -> None:
        from confluent_kafka import Producer

        self.sandbox = sandbox
        self.allowed = sandbox.topics
        # idempotence keeps the order of the messages of a partition even across retries
        self._producer = Producer(client_config({
            "bootstrap.servers": sandbox.settings.bootstrap_servers,
            "enable.idempotence": True, "linger.ms": 0, "acks": "all", "partitioner": PARTITIONER}))
        self.sent: dict[str, int] = {}

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                partition: int | None = None, on_delivery: Any = None) -> None:
        if topic not in self.allowed:
            raise SandboxViolation(f"refusing to write to {topic!r}: not a topic of sandbox "
                                   f"{self.sandbox.prefix!r}")
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent[topic] = self.sent.get(topic, 0) + 1

    def poll(self, timeout: float = 0.0) -> int:
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        return self._producer.flush(timeout)


class WorkerProcess:
    """The sandbox's engine worker as a subprocess (``stream-app worker``), stopped by its pid."""

    def __init__(self, sandbox: Sandbox, log_path: Path) -> None:
        self.sandbox, self.log_path = sandbox, log_path
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = spawn_worker(self.sandbox.worker_env(), self._log)
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        stop_worker(self.process, timeout_s)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def production_configs(production: Settings, timeout_s: float = 30.0) -> list[bytes]:
    """Every JSON value on production's ``engine-config`` topic, oldest first (read, not written)."""
    import orjson

    from stream_app.tools.ranges import RangeError, read_range

    topic = production.topic("engine-config")
    try:
        recs = list(read_range(production.bootstrap_servers, topic, timeout_s=timeout_s))
    except RangeError:
        return []
    recs.sort(key=lambda r: (r["timestamp"] or 0, r["partition"], r["offset"]))
    return [orjson.dumps(r["value"]) for r in recs if r.get("value") is not None]


def wait_until(predicate: Any, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
