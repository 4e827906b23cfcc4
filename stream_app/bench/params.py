"""What a benchmark run is asked to do, and the engine configuration it publishes.

>>> p = BenchParams(offers=3, policy="ucb")
>>> doc = engine_config(p)
>>> [o["id"] for o in doc["offers"]], doc["use_cases"][0]["policy"]
(['bench-o000', 'bench-o001', 'bench-o002'], 'ucb')
>>> parse_steps("500, 1000,0")
(500.0, 1000.0, 0.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stream_app.settings import PROJECT_ROOT

MAX_CUSTOMERS = 1_000_000
MAX_OFFERS = 100
WORKERS = ("engine", "relay", "faust-relay")
_CATEGORIES = ("groceries", "travel", "dining", "electronics", "credit", "insurance")
_FRAMINGS = ("neutral", "urgency", "scarcity")
_DIGITAL = ["app", "web", "email", "sms", "whatsapp"]


@dataclass(frozen=True)
class BenchParams:
    customers: int = 10_000  # distinct customers preloaded with state, then drawn uniformly
    bulk_customers: int = 0  # > customers: clone the preloaded state up to this many (bulk.py)
    offers: int = 20
    partitions: int = 4
    payload_bytes: int = 256  # approximate size of one decision request (context padding)
    policy: str = "thompson"
    rate: float = 2_000.0  # requests / s of the main run; 0 = flat out (closed loop, see window)
    seconds: float = 30.0  # length of the main run
    outcome_fraction: float = 0.10  # outcomes sent, as a fraction of requests (answering decisions)
    interactions_per_request: float = 0.5
    load_steps: tuple[float, ...] = ()  # offered loads (req/s; 0 = flat out) of the latency sweep
    step_seconds: float = 10.0
    attribution_s: float = 10.0  # attribution window: decisions settle (ignored) this soon
    window: int = 2_000  # flat out: most requests in flight (sent, no decision yet)
    linger_ms: float = 1.0  # the load generator's producer batching
    max_backlog: int = 10_000  # at a set rate: end the phase early past this many in flight
    restart: bool = True  # measure restart-to-serving after the runs
    restart_from_changelog: bool = False  # also: wipe the data dir and recover from changelogs
    serve_after_restart_s: float = 0.0  # > 0: serve at ``rate`` this long after the local restart
    out: Path = PROJECT_ROOT / "docs" / "benchmarks"
    name: str = "bench"  # file stem of the JSON / Markdown / PNG written to ``out``
    bootstrap_servers: str | None = None  # None: start an own local broker
    cache_dir: Path = PROJECT_ROOT / ".cache"
    broker_heap: str = "1g"
    seed: int = 7
    worker_log_level: str = "warning"
    drain_timeout_s: float = 120.0
    rocksdb_memory_mb: int = 32  # the worker's RocksDB budget (worker/storage.py; 0: Faust's)
    profile: bool = False  # py-spy the worker and read the broker's threads in the main run
    # what answers the requests: the engine (``stream-app worker``), or the engine taken out
    # (``bench/relay.py``: the same inputs read and the same records written, with librdkafka's
    # or with Faust's consumer) to measure what the transport alone allows
    worker: str = "engine"
    relay_args: tuple[str, ...] = ()  # the relay's fan-out options (``relay.py --help``)

    @property
    def population(self) -> int:
        """Customers with state after the preload (and the bulk state, if any)."""
        return max(self.customers, self.bulk_customers)

    def __post_init__(self) -> None:
        if not 1 <= self.customers <= MAX_CUSTOMERS:
            raise ValueError(f"customers must be within 1..{MAX_CUSTOMERS:,}")
        if self.bulk_customers and not self.customers < self.bulk_customers <= MAX_CUSTOMERS:
            raise ValueError(f"bulk_customers must be within customers+1..{MAX_CUSTOMERS:,}")
        if self.rocksdb_memory_mb < 0:
            raise ValueError("rocksdb_memory_mb must be >= 0 (0 = Faust's RocksDB defaults)")
        if not 1 <= self.offers <= MAX_OFFERS:
            raise ValueError(f"offers must be within 1..{MAX_OFFERS}")
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")
        if self.rate < 0 or any(s < 0 for s in self.load_steps):
            raise ValueError("rates must be >= 0 (0 = flat out)")
        if not 0.0 <= self.outcome_fraction <= 1.0:
            raise ValueError("outcome_fraction must be within 0..1")
        if self.worker not in WORKERS:
            raise ValueError(f"worker must be one of {', '.join(WORKERS)}, not {self.worker!r}")
        if self.relay_args and self.worker == "engine":
            raise ValueError("relay options are for --worker relay / faust-relay")
        if self.seconds <= 0 or self.step_seconds <= 0:
            raise ValueError("seconds must be > 0")

    def worker_command(self) -> list[str] | None:
        """The command of the process that answers (None: the engine worker)."""
        if self.worker == "engine":
            return None
        consumer = "faust" if self.worker == "faust-relay" else "librdkafka"
        return ["-m", "stream_app.bench.relay", "--consumer", consumer, *self.relay_args]

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for k, v in doc.items():
            if isinstance(v, Path):
                doc[k] = str(v)
        doc["load_steps"] = list(self.load_steps)
        doc["relay_args"] = list(self.relay_args)
        return doc


def parse_steps(text: str) -> tuple[float, ...]:
    """``"500,1000,0"`` -> offered loads; empty text -> no sweep."""
    return tuple(float(s) for s in text.replace(" ", "").split(",") if s)


def engine_config(p: BenchParams) -> dict[str, Any]:
    """An engine-config document with ``p.offers`` offers, one use case under ``p.policy``."""
    offers = [
        {
            "id": f"bench-o{i:03d}",
            "category": _CATEGORIES[i % len(_CATEGORIES)],
            "channels": _DIGITAL,
            "value": 1.0 + (i % 5),
            "framing": _FRAMINGS[i % len(_FRAMINGS)],
        }
        for i in range(p.offers)
    ]
    return {
        "version": f"bench-{p.offers}x-{p.policy}",
        "offers": offers,
        "use_cases": [{"id": "default", "policy": p.policy,
                       "attribution_window_s": float(p.attribution_s)}],
    }
