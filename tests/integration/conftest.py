"""Integration fixtures: a real Kafka broker (KRaft) started once per session by the project's own
code, and engine workers run as real processes, each test with its own topics and tables."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from stream_app.core.delta import outcome_rows
from stream_app.kafka.broker import LocalBroker, free_port
from stream_app.kafka.client import TopicReader, producer, send
from stream_app.kafka.topics import create_topics
from stream_app.settings import Settings
from stream_app.worker.process import spawn_worker, stop_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory):
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = LocalBroker(home=tmp_path_factory.mktemp("kafka"), jars_cache=Settings().cache_dir,
                         port=free_port(), controller_port=free_port(), heap="512m",
                         jvm_options=Settings.from_env().kafka_jvm_options)
    broker.up()
    try:
        yield broker.bootstrap
    finally:
        broker.down()


@dataclass
class Engine:
    """One isolated engine: its own topic prefix, consumer group, state folder and worker."""

    settings: Settings
    workdir: Path
    process: subprocess.Popen | None = None
    readers: dict[str, TopicReader] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.producer = producer(self.settings.bootstrap_servers)
        for name in ("decisions", "delta-metrics", "dead-letter", "customer-scores"):
            self.readers[name] = TopicReader(self.settings.bootstrap_servers, self.settings.topic(name))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "STREAM_APP_TOPIC_PREFIX": self.settings.topic_prefix,
            "STREAM_APP_ID": self.settings.app_id,
            "STREAM_APP_PARTITIONS": str(self.settings.partitions),
            "STREAM_APP_DATA_DIR": str(self.settings.data_dir),
            "STREAM_APP_MAX_MESSAGE_BYTES": str(self.settings.max_message_bytes),
            "STREAM_APP_SNAPSHOT_INTERVAL_S": str(self.settings.snapshot_interval_s),
            "STREAM_APP_LEARNER": self.settings.learner,
        }

    def start(self) -> None:
        assert self.process is None
        log = open(self.workdir / "worker.log", "ab")
        self.process = spawn_worker(self.env(), log)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_worker(self.process, 60.0)
        self.process = None

    def send(self, topic: str, key: str | bytes | None, value: Any) -> None:
        send(self.producer, self.settings.topic(topic), key, value)
        self.producer.flush(10)

    def send_many(self, topic: str, messages: list[dict]) -> None:
        """Produce messages keyed by their customer id, in order, with one flush at the end."""
        for m in messages:
            send(self.producer, self.settings.topic(topic), m["customer_id"], m)
        self.producer.flush(30)

    def publish_config(self, doc: dict) -> None:
        self.send("engine-config", "engine", doc)

    def collect(self, topic: str, until: Callable[[list[dict]], bool], timeout_s: float = 60.0) -> list[dict]:
        """Read JSON messages from an output topic until ``until(messages)`` holds; a batch of
        outcome deltas (``delta-metrics`` kind ``outcomes``) is read as its outcome records."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for _, value in self.readers[topic].poll(0.2):
                message = orjson.loads(value)
                got.extend(outcome_rows(message) if message.get("kind") == "outcomes"
                           else [message])
            if until(got):
                return got
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker died; see {self.workdir / 'worker.log'}")
        raise AssertionError(f"timed out on {topic}; got {len(got)} messages: {got[-3:]}")

    def decide(self, request: dict, timeout_s: float = 90.0) -> dict:
        self.send("decision-requests", request["customer_id"], request)
        got = self.collect("decisions", lambda ms: any(m["request_id"] == request["request_id"] for m in ms),
                           timeout_s)
        return next(m for m in got if m["request_id"] == request["request_id"])

    def close(self) -> None:
        self.stop()
        for r in self.readers.values():
            r.close()


TWO_OFFERS = {
    "version": "it-v1",
    "offers": [
        {"id": "cashback", "category": "cards", "value": 1.0},
        {"id": "travel", "category": "travel", "value": 1.0, "framing": "urgency"},
    ],
    # the tests look at one customer's repeated decisions: no "same offer within 24 h" rule
    "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": 600,
                   "rules": {"fatigue": {"same_offer_s": 0}}}],
}


@pytest.fixture
def engine(kafka_bootstrap: str, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"it{run}-",
        app_id=f"it-{run}", partitions=2, data_dir=tmp_path / "state", max_message_bytes=4096,
    )
    create_topics(settings)
    eng = Engine(settings, tmp_path)
    eng.publish_config(TWO_OFFERS)
    eng.start()
    try:
        yield eng
    finally:
        eng.close()


def _request(customer: str = "c-1", ts: int = 1_764_000_000_000, **extra: Any) -> dict:
    return {"request_id": f"rq-{uuid.uuid4().hex}", "customer_id": customer, "ts": ts,
            "channel": "app", "use_case": "default", **extra}


@pytest.fixture
def make_request() -> Callable[..., dict]:
    """A factory of schema-valid decision requests with fresh ids."""
    return _request


@pytest.fixture
def two_offers() -> dict:
    return TWO_OFFERS
