"""Every worker reads the compacted ``engine-config`` topic (no consumer group), so every worker
sees the same configuration version. A configuration that does not validate (schema, unknown
keys, a size past ``max_message_bytes``, or a decision core that cannot run it) is rejected with
a dead letter and the last good one stays in force.

Nothing here can leave a worker without a configuration or stop it answering:

- the last good configuration is kept locally and on ``accepted-configs``
  (``worker/accepted_configs.py``): a restart starts with it in force, even when compaction left
  a bad configuration as the only record of ``engine-config``;
- the feed remembers how far ``engine-config`` was judged, so a bad configuration is
  dead-lettered once, not at every restart (once per worker: a worker without local state, a new
  machine, judges what came after the last accepted configuration again);
- a dead letter always fits a Kafka record (``deadletter.py`` truncates a large one), and an
  error of the feed's own (the broker away, a send refused) is logged and retried: the thread
  never ends before ``stop``;
- ``loaded`` is set once the topic was read to its end *and* a configuration is in force: until
  then the agents wait (nothing is dead-lettered for want of a configuration, no offset moves);
  a worker asked to stop meanwhile leaves at once (``leave_without_config``).

The feed runs in a daemon thread with its own consumer, independent of the Faust event loop:
swapping the ``current`` reference is atomic.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import orjson
import structlog

from stream_app.core.catalogue import ConfigError, EngineConfig, parse_config
from stream_app.deadletter import dead_letter, letter_key
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import Settings
from stream_app.worker.accepted_configs import (
    AcceptedConfig,
    LocalConfigState,
    latest,
    read_accepted,
)

__all__ = ["STATE_FILE", "ConfigFeed"]

log = structlog.get_logger("stream_app.config")

STATE_FILE = "engine-config.json"  # in the worker's data dir
RETRY_S = 1.0  # after an error of the feed's own


class ConfigFeed:
    """The configuration in force (``current``) and the callbacks run when it changes
    (``on_change``; one that raises rejects the configuration).

    Parameters
    ----------
    bootstrap, topic, dead_letter_topic
        The cluster, ``engine-config`` and ``dead-letter`` (full names).
    contract
        Validates a configuration message (schema and size).
    accepted_topic
        ``accepted-configs``: every accepted configuration is published there, and a feed
        without local state starts from its latest (``None``: neither).
    state_path
        The local copy of the last good configuration (``None``: none).
    """

    def __init__(self, bootstrap: str, topic: str, dead_letter_topic: str, contract: Contract,
                 *, accepted_topic: str | None = None, state_path: Path | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.contract = contract
        self.accepted_topic = accepted_topic
        self.current: EngineConfig | None = None
        self.loaded = threading.Event()
        self.on_change: list[Callable[[EngineConfig], None]] = []
        self._state = LocalConfigState(state_path).load() if state_path is not None else None
        self._position = 0  # the next offset of engine-config to judge
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, settings: Settings, contract: Contract) -> ConfigFeed:
        """The worker's feed: its topics, and its local state in the data dir."""
        return cls(settings.bootstrap_servers, settings.topic("engine-config"),
                   settings.topic("dead-letter"), contract,
                   accepted_topic=settings.topic("accepted-configs"),
                   state_path=settings.data_dir / STATE_FILE)

    def apply(self, raw: bytes | None) -> EngineConfig:
        """Parse and validate one config message and put it in force; raises InvalidMessage
        with the reason (the configuration in force is then unchanged)."""
        doc = self.contract.decode("engine-config", raw)
        return self._put_in_force(doc)

    def _put_in_force(self, doc: dict[str, Any]) -> EngineConfig:
        try:
            config = parse_config(doc)
            for callback in self.on_change:
                callback(config)
        except ConfigError as exc:
            raise InvalidMessage(f"config rejected: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever cannot run it rejects it
            raise InvalidMessage(f"config rejected: {type(exc).__name__}: {exc}") from None
        self.current = config
        log.info("config_applied", version=config.version, offers=len(config.offers))
        return config

    def start(self) -> None:
        """Put the last good configuration in force (local state), then follow the topic."""
        self.restore()
        self._thread = threading.Thread(target=self._run, name="config-feed", daemon=True)
        self._thread.start()

    def restore(self) -> None:
        """The local state: the last good configuration in force, and where to read on."""
        state = self._state
        if state is not None:
            self._position = state.position
            if state.accepted is not None:
                self._restore(state.accepted, "local state")

    def leave_without_config(self) -> NoReturn:
        """End the process at once: an agent holds records while no configuration was ever in
        force, and the worker was asked to stop. Faust's stop would wait for those records
        forever (a worker that seemed to ignore SIGTERM); nothing was processed, so nothing is
        lost, and the records stay uncommitted for the next worker."""
        log.warning("stopped_without_config", topic=self.topic, judged_up_to=self._position)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:  # noqa: BLE001 - logged and retried: the feed never ends early
                log.exception("config_feed_failed", retry_in_s=RETRY_S, position=self._position)
                self._stop.wait(RETRY_S)

    def _restore(self, accepted: AcceptedConfig, where: str) -> None:
        try:
            self._put_in_force(accepted.config)
            log.info("config_restored", version=accepted.version, seq=accepted.seq, source=where)
        except InvalidMessage as exc:  # e.g. a rule this version no longer knows
            log.error("config_restore_failed", version=accepted.version, source=where,
                      reason=str(exc))

    def _follow(self) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        from stream_app.kafka.security import client_config

        consumer = Consumer(client_config({
            "bootstrap.servers": self.bootstrap, "group.id": "stream-app-config-feed",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        }))
        producer = Producer(client_config({"bootstrap.servers": self.bootstrap}))
        try:
            meta = None
            while not self._stop.is_set():
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                if meta is not None and meta.partitions and meta.error is None:
                    break
                self._stop.wait(0.5)
            if self._stop.is_set() or meta is None:
                return
            partition = min(meta.partitions)  # engine-config has one partition
            tp = TopicPartition(self.topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if self._position > high:  # not the topic this state judged (a new cluster)
                log.warning("config_state_reset", position=self._position, end=high)
                self._position = 0
            if self._position == 0 and self.current is None and self.accepted_topic:
                self._recover_from_fleet()
            end = high
            consumer.assign([TopicPartition(self.topic, partition, max(low, self._position))])
            self._mark_loaded(end)
            waiting_logged = False
            while not self._stop.is_set():
                messages = consumer.consume(100, 0.5)
                for msg in messages:
                    if msg.error() is None:
                        self._judge(msg, producer)
                if not messages and self._position < end:  # offsets compaction left empty
                    fetched = consumer.position([tp])[0].offset
                    self._position = max(self._position, fetched)
                producer.poll(0)
                self._mark_loaded(end)
                if not self.loaded.is_set() and self._position >= end and not waiting_logged:
                    log.error("no_valid_config", topic=self.topic,
                              hint="publish a valid engine config: the worker waits for one")
                    waiting_logged = True
        finally:
            producer.flush(5)
            consumer.close()

    def _recover_from_fleet(self) -> None:
        """No local state: start from the fleet's last accepted configuration, and judge only
        what was published after it."""
        assert self.accepted_topic is not None
        last = latest(read_accepted(self.bootstrap, self.accepted_topic))
        if last is not None:
            self._restore(last, "accepted-configs")
            if self.current is not None:
                self._position = last.seq + 1

    def _mark_loaded(self, end: int) -> None:
        if not self.loaded.is_set() and self._position >= end and self.current is not None:
            self.loaded.set()

    def _judge(self, msg: Any, producer: Any) -> None:
        """Apply one record of ``engine-config``; dead-letter it when it is refused."""
        offset = msg.offset()
        if offset < self._position:
            return  # judged before
        try:
            config = self.apply(msg.value())
        except InvalidMessage as exc:
            kept = self.current.version if self.current else None
            log.error("config_rejected", reason=str(exc), offset=offset, kept=kept)
            letter = dead_letter(str(exc), topic=msg.topic(), partition=msg.partition(),
                                 offset=offset, timestamp=msg.timestamp()[1], key=msg.key(),
                                 value=msg.value(), failed_at=int(time.time() * 1000))
            try:
                producer.produce(self.dead_letter_topic, key=letter_key(msg.key()),
                                 value=orjson.dumps(letter))
            except Exception as send_error:  # noqa: BLE001 - the log line is the trace left
                log.error("config_dead_letter_failed", offset=offset, error=str(send_error))
            self._judged(offset + 1, None)
            return
        accepted = None
        if config is not None and self.current is config:
            accepted = AcceptedConfig(offset, config.version, orjson.loads(msg.value()),
                                      int(time.time() * 1000))
            if self.accepted_topic:
                producer.produce(self.accepted_topic, key=config.version.encode(),
                                 value=accepted.to_record())
        self._judged(offset + 1, accepted)

    def _judged(self, position: int, accepted: AcceptedConfig | None) -> None:
        """Remember how far the topic was judged (and the configuration accepted), locally."""
        self._position = position
        state = self._state
        if state is None:
            return
        state.position = position
        if accepted is not None:
            state.accepted = accepted
        try:
            state.save()
        except OSError as exc:
            log.error("config_state_not_saved", path=str(state.path), error=str(exc))
