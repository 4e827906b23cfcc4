"""One frozen settings object; the environment is read here and nowhere else.

>>> s = Settings.from_env({"STREAM_APP_TOPIC_PREFIX": "replay-"})
>>> s.topic("decisions")
'replay-decisions'
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from stream_app.failpoints import Failpoint

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_INTERVAL_S = 1.0  # a worker's consumer tells its group it is alive this often


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``stream-app gateway``, the HTTP decision gateway (``docs/gateway.md``)."""

    host: str = "127.0.0.1"
    port: int = 8080
    probe_port: int = 0  # /health, /ready, /metrics on a port of their own (0: off)
    timeout_ms: float = 500.0  # the longest wait for the engine's decision, then the fallback
    use_case: str = "default"  # of a Rank call that names none
    channel: str = "web"  # of a Rank call that names none
    fallback: str = "baseline"  # Rank on timeout: the first action, or "no_action" (none)
    max_events: int = 200_000  # ranked events kept for their rewards (the oldest go first)
    apprentice: tuple[str, ...] = ()  # use cases in apprentice mode
    apprentice_margin: float = 0.0  # the engine must beat the baseline by this much
    apprentice_explore: float = 0.1  # share of an apprentice's events the engine serves
    apprentice_alpha: float = 0.05  # error level of the switch
    apprentice_min_n: int = 200  # rewards in each share before any switch

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewaySettings:
        d = cls()

        def g(name: str, default: object) -> str:
            return env.get(f"STREAM_APP_GATEWAY_{name}", str(default))

        return cls(
            host=g("HOST", d.host), port=int(g("PORT", d.port)),
            probe_port=int(g("PROBE_PORT", d.probe_port)),
            timeout_ms=float(g("TIMEOUT_MS", d.timeout_ms)),
            use_case=g("USE_CASE", d.use_case), channel=g("CHANNEL", d.channel),
            fallback=g("FALLBACK", d.fallback), max_events=int(g("MAX_EVENTS", d.max_events)),
            apprentice=tuple(u.strip() for u in g("APPRENTICE", "").split(",") if u.strip()),
            apprentice_margin=float(g("APPRENTICE_MARGIN", d.apprentice_margin)),
            apprentice_explore=float(g("APPRENTICE_EXPLORE", d.apprentice_explore)),
            apprentice_alpha=float(g("APPRENTICE_ALPHA", d.apprentice_alpha)),
            apprentice_min_n=int(g("APPRENTICE_MIN_N", d.apprentice_min_n)),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    external_cluster: bool = False  # KAFKA_BOOTSTRAP_SERVERS was set: never start a local broker
    app_id: str = "stream-app"
    topic_prefix: str = ""
    partitions: int = 4
    cache_dir: Path = PROJECT_ROOT / ".cache"  # broker jars, demo state and logs
    data_dir: Path = PROJECT_ROOT / ".cache" / "worker"
    kafka_home: Path = PROJECT_ROOT / ".kafka"
    kafka_version: str = "4.1.1"
    kafka_jvm_options: tuple[str, ...] = ()  # added to the local broker's java command
    config_file: Path = PROJECT_ROOT / "config" / "offers.json"
    max_message_bytes: int = 64 * 1024
    # event time (``partition/clock.py``): records stamped more than max_future_s ahead of the
    # wall clock are dead-lettered (0: no bound); a topic read lag_tolerance_s after Kafka
    # stored its records lags; idle_after_s without a record, a topic or partition is idle
    max_future_s: float = 300.0
    lag_tolerance_s: float = 5.0
    idle_after_s: float = 10.0
    log_level: str = "info"
    seed: int = 0
    # the fleet's learner publishes a snapshot this often (when it learned something): how
    # long a model takes to show what another partition taught it
    snapshot_interval_s: float = 1.0
    # where the fleet's learner runs: "embedded" (in the worker the learning partition is
    # assigned to) or "off" (a process of its own: ``stream-app learner``)
    learner: str = "embedded"
    # micro-batches: an agent hands its partitions the records it took, at most batch_max of
    # them, or what arrived within batch_within_ms when fewer came
    batch_max: int = 256
    batch_within_ms: float = 5.0
    # the worker's producer lingers: decisions (a channel waits for them), everything else
    # (changelogs, delta metrics, scores, dead letters: batched into few produce requests)
    decision_linger_ms: float = 1.0
    output_linger_ms: float = 20.0
    # exactly_once: a worker's outputs, table changelogs and input offsets of each commit
    # interval are one Kafka transaction (``worker/transactions.py``); at_least_once: no
    # transactions, an input may be processed again after a crash (its outputs sent again)
    processing_guarantee: str = "exactly_once"
    # how often a worker commits (exactly once: its transaction; at least once: its offsets,
    # after waiting for its outputs): what a read_committed consumer waits for a decision
    commit_interval_ms: float = 100.0
    # an open transaction of a worker that died is aborted by the broker after this long (at
    # once when a worker with the same transactional id starts)
    transaction_timeout_ms: int = 10_000
    # a worker that dies without leaving its consumer group (killed, its host lost) keeps its
    # partitions this long before the group gives them to the others (heartbeats every second;
    # the broker's group.min.session.timeout.ms is the floor)
    session_timeout_s: float = 10.0
    # names the worker's transactional id (<app id>-<worker id>); default: a hash of the host
    # name and the data directory, stable across restarts of the same worker
    worker_id: str = ""
    # crash tests only: the worker kills itself at a named point of its write path
    # (``stream_app/failpoints.py``); empty: never
    fail_at: str = ""
    # the longest a fetch of the worker's consumer waits at the broker for records (Faust's own
    # 1,500 ms queued a steady input behind empty fetches: ``worker/faust_patches.py``)
    fetch_max_wait_ms: int = 20
    rocksdb_memory_mb: int = 32  # all RocksDB stores' cache + memtables (0: Faust's defaults)
    bulk_restore_min_records: int = 5_000  # gaps this long are restored in bulk (0: never)
    malloc_arenas: int = 2  # glibc malloc arenas of the worker (0: glibc's default, 8 per core)
    memory_report_s: float = 0.0  # log what the worker's memory is made of this often (0: never)
    tracemalloc_frames: int = 0  # > 0: trace Python allocations for the memory report (diagnosis)
    # Python's garbage collector (``worker/collector.py``): freeze what start-up and restored
    # checkpoints leave alive, and the young generation's threshold (0: CPython's 700)
    gc_freeze: bool = True
    gc_threshold: int = 0
    # the worker's /health, /ready and /metrics (``stream_app/observability/``); port 0: off
    probe_host: str = "127.0.0.1"
    probe_port: int = 8470
    gateway: GatewaySettings = GatewaySettings()
    # pseudonymised customer ids on the outputs for analytics (``stream_app/pseudonym.py``): the
    # HMAC key, from STREAM_APP_PSEUDONYMISE_KEY or the file STREAM_APP_PSEUDONYMISE_KEY_FILE
    # names; None: the customer ids themselves. Never in a repr.
    pseudonymise_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        s = cls()
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        return replace(
            s,
            bootstrap_servers=bootstrap or s.bootstrap_servers,
            external_cluster=bool(bootstrap),
            app_id=env.get("STREAM_APP_ID", s.app_id),
            topic_prefix=env.get("STREAM_APP_TOPIC_PREFIX", s.topic_prefix),
            partitions=int(env.get("STREAM_APP_PARTITIONS", s.partitions)),
            data_dir=Path(env.get("STREAM_APP_DATA_DIR", s.data_dir)),
            kafka_home=Path(env.get("STREAM_APP_KAFKA_HOME", s.kafka_home)),
            kafka_version=env.get("STREAM_APP_KAFKA_VERSION", s.kafka_version),
            kafka_jvm_options=tuple(shlex.split(env.get("STREAM_APP_KAFKA_JVM_OPTS", ""))),
            config_file=Path(env.get("STREAM_APP_CONFIG", s.config_file)),
            max_message_bytes=int(env.get("STREAM_APP_MAX_MESSAGE_BYTES", s.max_message_bytes)),
            max_future_s=float(env.get("STREAM_APP_MAX_FUTURE_S", s.max_future_s)),
            lag_tolerance_s=float(env.get("STREAM_APP_LAG_TOLERANCE_S", s.lag_tolerance_s)),
            idle_after_s=float(env.get("STREAM_APP_IDLE_AFTER_S", s.idle_after_s)),
            log_level=env.get("STREAM_APP_LOG_LEVEL", s.log_level),
            seed=int(env.get("STREAM_APP_SEED", s.seed)),
            snapshot_interval_s=float(env.get("STREAM_APP_SNAPSHOT_INTERVAL_S",
                                              s.snapshot_interval_s)),
            learner=env.get("STREAM_APP_LEARNER", s.learner),
            batch_max=int(env.get("STREAM_APP_BATCH_MAX", s.batch_max)),
            batch_within_ms=float(env.get("STREAM_APP_BATCH_WITHIN_MS", s.batch_within_ms)),
            decision_linger_ms=float(env.get("STREAM_APP_DECISION_LINGER_MS",
                                             s.decision_linger_ms)),
            output_linger_ms=float(env.get("STREAM_APP_OUTPUT_LINGER_MS", s.output_linger_ms)),
            fetch_max_wait_ms=int(env.get("STREAM_APP_FETCH_MAX_WAIT_MS", s.fetch_max_wait_ms)),
            processing_guarantee=env.get("STREAM_APP_PROCESSING_GUARANTEE",
                                         s.processing_guarantee),
            commit_interval_ms=float(env.get("STREAM_APP_COMMIT_INTERVAL_MS",
                                             s.commit_interval_ms)),
            transaction_timeout_ms=int(env.get("STREAM_APP_TRANSACTION_TIMEOUT_MS",
                                               s.transaction_timeout_ms)),
            session_timeout_s=float(env.get("STREAM_APP_SESSION_TIMEOUT_S",
                                            s.session_timeout_s)),
            worker_id=env.get("STREAM_APP_WORKER_ID", s.worker_id),
            fail_at=env.get("STREAM_APP_FAIL_AT", s.fail_at),
            rocksdb_memory_mb=int(env.get("STREAM_APP_ROCKSDB_MEMORY_MB", s.rocksdb_memory_mb)),
            bulk_restore_min_records=int(env.get("STREAM_APP_BULK_RESTORE_MIN_RECORDS",
                                                 s.bulk_restore_min_records)),
            malloc_arenas=int(env.get("STREAM_APP_MALLOC_ARENAS", s.malloc_arenas)),
            memory_report_s=float(env.get("STREAM_APP_MEMORY_REPORT_S", s.memory_report_s)),
            tracemalloc_frames=int(env.get("STREAM_APP_TRACEMALLOC_FRAMES", s.tracemalloc_frames)),
            gc_freeze=env.get("STREAM_APP_GC_FREEZE", "1" if s.gc_freeze else "0") != "0",
            gc_threshold=int(env.get("STREAM_APP_GC_THRESHOLD", s.gc_threshold)),
            probe_host=env.get("STREAM_APP_PROBE_HOST", s.probe_host),
            probe_port=int(env.get("STREAM_APP_PROBE_PORT", s.probe_port)),
            gateway=GatewaySettings.from_env(env),
            pseudonymise_key=_pseudonymise_key(env),
        )

    def __post_init__(self) -> None:
        if self.pseudonymise_key is not None and not self.pseudonymise_key:
            raise ValueError("the pseudonymisation key (STREAM_APP_PSEUDONYMISE_KEY or its file) "
                             "is empty")
        if self.learner not in ("embedded", "off"):
            raise ValueError(f"STREAM_APP_LEARNER must be embedded or off, not {self.learner!r}")
        if self.processing_guarantee not in ("exactly_once", "at_least_once"):
            raise ValueError("STREAM_APP_PROCESSING_GUARANTEE must be exactly_once or "
                             f"at_least_once, not {self.processing_guarantee!r}")
        if self.processing_guarantee == "exactly_once" and self.rocksdb_memory_mb <= 0:
            raise ValueError("exactly_once needs the worker's own RocksDB store "
                             "(STREAM_APP_ROCKSDB_MEMORY_MB > 0): it reads the transactional "
                             "changelogs back")
        Failpoint.parse(self.fail_at)  # a readable error for a wrong one
        if self.session_timeout_s < 3 * HEARTBEAT_INTERVAL_S:
            raise ValueError("STREAM_APP_SESSION_TIMEOUT_S must be at least "
                             f"{3 * HEARTBEAT_INTERVAL_S:g} (three heartbeats), not "
                             f"{self.session_timeout_s:g}")
        if self.commit_interval_ms <= 0:
            raise ValueError(f"STREAM_APP_COMMIT_INTERVAL_MS must be > 0, not "
                             f"{self.commit_interval_ms}")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)


def _pseudonymise_key(env: Mapping[str, str]) -> bytes | None:
    """The pseudonymisation key: STREAM_APP_PSEUDONYMISE_KEY, or the contents of the file
    STREAM_APP_PSEUDONYMISE_KEY_FILE names (without its trailing newline); None without either."""
    key, path = env.get("STREAM_APP_PSEUDONYMISE_KEY"), env.get("STREAM_APP_PSEUDONYMISE_KEY_FILE")
    if key is not None and path:
        raise ValueError("set STREAM_APP_PSEUDONYMISE_KEY or STREAM_APP_PSEUDONYMISE_KEY_FILE, "
                         "not both")
    if path:
        try:
            return Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ValueError(f"STREAM_APP_PSEUDONYMISE_KEY_FILE {path}: {exc.strerror}") from None
    return None if key is None else key.encode()
