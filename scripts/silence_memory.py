"""How much memory a partition's silence timers take per customer (``partition/silence.py``).

Two measurements, each in a process of its own, printed as one JSON line:

- ``schedule``: ``--customers`` silences set directly on a partition's clock
  (``PartitionClock.schedule_silence``, one per customer, due times spread over four weeks);
- ``rebuild``: a partition session rebuilding its timers (``rebuild_clock``) over a ``DictStore``
  of ``--customers`` customers cloned from a few real ones (profiles and arms, no decisions),
  as after a restart; the store itself is built before the measurement starts.

``--kind memory`` keeps the silences in memory (``MemorySilence``), ``--kind disk`` in a RocksDB
under a temporary directory (``RocksSilence``, as the worker does). The figures: growth of the
Python heap (tracemalloc, only with ``--trace``: tracing itself costs memory, so RSS is best
read from a run without it) and of the resident set (``VmRSS``, after a ``malloc_trim``), in
total and per customer, and the index's size on disk.

    python scripts/silence_memory.py schedule --kind disk --customers 1000000
    python scripts/silence_memory.py rebuild --kind memory --customers 200000 --trace
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule, PartitionClock
from stream_app.partition.silence import MemorySilence, RocksSilence
from stream_app.simulator import default_engine_config
from stream_app.worker.memory import process_memory
from stream_app.worker.storage import trim_malloc

T0 = 1_764_000_000_000
FOUR_WEEKS_MS = 28 * 86_400_000


def start(trace: bool) -> tuple[int, int]:
    """The resident set and the Python heap now; tracing starts here (the set-up before it
    untraced)."""
    if trace:
        tracemalloc.start()
    return rss(), heap()


def rss() -> int:
    gc.collect()
    trim_malloc()
    return process_memory()["rss_bytes"]


def heap() -> int:
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


def templates(decider: Decider, n: int = 16) -> list[bytes]:
    """Real customers' values: a few interactions each, at different times (no decision)."""
    store = DictStore()
    session = PartitionSession(0, store, lambda: decider, seed=1,
                               event_time=EventTimeRule(max_future_ms=0))
    for i in range(n * 4):
        cid = f"t{i % n}"
        msg = {"event_id": f"e{i}", "customer_id": cid, "ts": T0 + i * 3_600_000,
               "type": "transaction", "channel": "app", "amount": 12.5 + i,
               "category": "groceries", "merchant": "M"}
        session.process("interactions", [InputRecord(cid.encode(), orjson.dumps(msg))])
    return [store.get("customers", f"t{i}".encode()) for i in range(n)]


def measure_schedule(customers: int, silences, trace: bool) -> dict:
    clock = PartitionClock(silences=silences)
    before_rss, before_heap = start(trace)
    started = time.perf_counter()
    for i in range(customers):
        clock.schedule_silence(f"c{i:08d}", T0 + (i * 7_919) % FOUR_WEEKS_MS)
    seconds = time.perf_counter() - started
    return {"rss_bytes": rss() - before_rss, "heap_bytes": heap() - before_heap,
            "seconds": round(seconds, 2)}


def measure_rebuild(customers: int, silences, trace: bool) -> dict:
    decider = Decider(parse_config(default_engine_config()), seed=1)
    values = templates(decider)
    store = DictStore()
    store.set_many("customers", ((f"c{i:08d}".encode(), values[i % len(values)])
                                 for i in range(customers)))
    session = PartitionSession(0, store, lambda: decider, seed=1, silences=silences,
                               event_time=EventTimeRule(max_future_ms=0))
    before_rss, before_heap = start(trace)
    started = time.perf_counter()
    for _ in session.rebuild_clock():
        pass
    seconds = time.perf_counter() - started
    return {"rss_bytes": rss() - before_rss, "heap_bytes": heap() - before_heap,
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("schedule", "rebuild"))
    parser.add_argument("--kind", choices=("memory", "disk"), default="disk")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--trace", action="store_true", help="measure the Python heap too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "silence"
        silences = MemorySilence() if args.kind == "memory" else RocksSilence(path)
        measure = measure_schedule if args.what == "schedule" else measure_rebuild
        report = {"what": args.what, "kind": args.kind, "customers": args.customers,
                  **measure(args.customers, silences, args.trace)}
        report["rss_bytes_per_customer"] = round(report["rss_bytes"] / args.customers, 1)
        report["heap_bytes_per_customer"] = round(report["heap_bytes"] / args.customers, 1)
        if args.kind == "disk":
            report["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        silences.close()
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
