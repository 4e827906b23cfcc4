"""The benchmark's own corner of Kafka and disk: a broker (started here unless one is given), a
fresh topic prefix, consumer group and data dir, and ONE worker process, each stopped by its pid."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from stream_app.kafka.broker import LocalBroker, free_port
from stream_app.kafka.client import producer, send
from stream_app.kafka.topics import create_topics, delete_topics_with_prefixes
from stream_app.settings import Settings
from stream_app.worker.process import spawn_worker, stop_worker


class Sandbox:
    """``with Sandbox(...) as box:`` -> broker up, topics created; everything stopped on exit."""

    def __init__(self, *, partitions: int, cache_dir: Path, bootstrap_servers: str | None,
                 broker_heap: str, max_message_bytes: int, log_level: str,
                 workdir: Path, rocksdb_memory_mb: int = 32,
                 worker_command: list[str] | None = None) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.cache_dir = cache_dir
        self.workdir = workdir
        self.broker: LocalBroker | None = None
        self.external = bootstrap_servers is not None
        self._bootstrap = bootstrap_servers
        self._broker_heap = broker_heap
        self.log_level = log_level
        self.settings = Settings.from_env({}).with_(
            external_cluster=True, topic_prefix=f"bench-{self.run_id}-",
            app_id=f"bench-{self.run_id}", partitions=partitions,
            data_dir=cache_dir / "bench-state" / self.run_id, cache_dir=cache_dir,
            max_message_bytes=max_message_bytes, rocksdb_memory_mb=rocksdb_memory_mb,
        )
        self.worker: subprocess.Popen | None = None
        self.worker_starts = 0
        self.worker_command = worker_command  # None: the engine worker

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        if self._bootstrap is None:
            home = self.cache_dir / "bench-kafka"
            if LocalBroker(home=home, jars_cache=self.cache_dir).pid() is not None:
                raise RuntimeError(f"a bench broker already runs from {home} (another bench?)")
            shutil.rmtree(home, ignore_errors=True)  # a fresh broker: no topics of old runs
            self.broker = LocalBroker(home=home, jars_cache=self.cache_dir, port=free_port(),
                                      controller_port=free_port(), heap=self._broker_heap,
                                      jvm_options=Settings.from_env().kafka_jvm_options)
            self.broker.up()
            self._bootstrap = self.broker.bootstrap
        self.settings = self.settings.with_(bootstrap_servers=self._bootstrap)
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        create_topics(self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_worker()
        if self.broker is not None:
            self.broker.down()
        else:  # someone else's cluster: leave no sandbox topics behind
            try:
                delete_topics_with_prefixes(self.settings, (self.settings.topic_prefix,
                                                            self.settings.app_id + "-"))
            except Exception:  # noqa: BLE001 - best effort clean-up, the numbers are taken
                pass
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)

    @property
    def bootstrap(self) -> str:
        assert self._bootstrap is not None
        return self._bootstrap

    @property
    def broker_log_dir(self) -> Path | None:
        """The data dir of the broker started here (None: someone else's cluster)."""
        return self.broker.home / "data" if self.broker is not None else None

    @property
    def broker_pid(self) -> int | None:
        return self.broker.pid() if self.broker is not None else None

    @property
    def worker_pid(self) -> int | None:
        return self.worker.pid if self.worker is not None else None

    def publish_config(self, doc: dict) -> None:
        p = producer(self.bootstrap)
        send(p, self.settings.topic("engine-config"), "engine", doc)
        if p.flush(30):
            raise RuntimeError("engine config not delivered within 30 s")

    # -- the worker --------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "STREAM_APP_TOPIC_PREFIX": s.topic_prefix,
            "STREAM_APP_ID": s.app_id,
            "STREAM_APP_PARTITIONS": str(s.partitions),
            "STREAM_APP_DATA_DIR": str(s.data_dir),
            "STREAM_APP_MAX_MESSAGE_BYTES": str(s.max_message_bytes),
            "STREAM_APP_LOG_LEVEL": self.log_level,
            "STREAM_APP_ROCKSDB_MEMORY_MB": str(s.rocksdb_memory_mb),
        }

    def changelog_topic(self, table: str) -> str:
        """The changelog topic Faust keeps for a table of the worker (``<app id>-<table>-changelog``)."""
        return f"{self.settings.app_id}-{table}-changelog"

    def start_worker(self) -> float:
        """Spawn the worker; return the wall time (``time.time()``) it was spawned at."""
        assert self.worker is None, "one worker at a time"
        self.worker_starts += 1
        log = open(self.workdir / "worker.log", "ab")
        log.write(f"\n--- start {self.worker_starts} ---\n".encode())
        log.flush()
        spawned = time.time()
        if self.worker_command is None:
            self.worker = spawn_worker(self.env(), log)
        else:
            self.worker = spawn_worker(self.env(), log, self.worker_command)
        log.close()
        (self.workdir / "worker.pid").write_text(str(self.worker.pid))
        return spawned

    def stop_worker(self, timeout_s: float = 60.0) -> float | None:
        """SIGTERM the worker (by pid) and wait; return how long it took to exit."""
        if self.worker is None:
            return None
        started = time.monotonic()
        stop_worker(self.worker, timeout_s)
        self.worker = None
        return time.monotonic() - started

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def wipe_state(self) -> None:
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
