"""The worker's memory report (worker/memory.py)."""

from __future__ import annotations

import tracemalloc

import pytest

from stream_app.worker import memory, storage


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> storage.Budget:
    b = storage.Budget(8)
    monkeypatch.setattr(storage, "_budget", b)
    return b


def test_process_memory_sees_a_large_allocation_in_malloc() -> None:
    before = memory.process_memory()
    assert before["rss_bytes"] > 0 and before["rss_peak_bytes"] >= before["rss_bytes"]
    if not hasattr(storage._libc(), "mallinfo2"):
        pytest.skip("no glibc mallinfo2 here")
    block = bytearray(64 << 20)  # 64 MB, mmapped by malloc
    after = memory.process_memory()
    assert after["malloc_in_use_bytes"] - before["malloc_in_use_bytes"] >= 60 << 20
    assert after["malloc_mmapped_bytes"] >= 60 << 20
    del block


def test_rocksdb_memory_sums_the_stores_and_reads_the_shared_budget(tmp_path, budget) -> None:
    dbs = [storage._BoundedOptions(use_rocksdict=True).open(tmp_path / f"t{i}.db") for i in range(3)]
    try:
        for n in range(3_000):
            dbs[n % 3][b"c%06d" % n] = b"x" * 200
        report = memory.rocksdb_memory(dbs)
        assert report["rocksdb_stores"] == 3
        assert report["rocksdb_keys"] == 3_000
        assert report["rocksdb_memtables_bytes"] >= 3_000 * 200
        # memtables are charged to the one cache of the budget
        assert report["rocksdb_cache_bytes"] >= report["rocksdb_budget_memtables_bytes"] > 0
    finally:
        for db in dbs:
            db.close()


def test_traced_report_names_the_line_that_grew(budget) -> None:
    was_tracing = tracemalloc.is_tracing()
    report = memory.MemoryReport(tracemalloc_frames=1)
    try:
        first = report()
        assert "python_grown" not in first and first["python_traced_bytes"] > 0
        kept = [bytes(1000) + bytes([i % 256]) for i in range(5_000)]  # ~5 MB on this line
        second = report()
        top = second["python_grown"][0]
        assert top["where"].endswith(f"test_memory.py:{_line_of('kept = [bytes(1000)')}")
        assert top["bytes"] >= 5_000 * 1000 and top["blocks"] >= 5_000
        assert second["python_traced_bytes"] - first["python_traced_bytes"] >= 5_000 * 1000
        del kept
    finally:
        if not was_tracing:
            tracemalloc.stop()


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line and "_line_of" not in line)


class _Marker:
    pass


def test_report_names_the_object_types_that_grew() -> None:
    report = memory.MemoryReport()
    assert "python_types_grown" not in report()
    kept = [_Marker() for _ in range(20_000)]
    grown = {g["type"]: g["objects"] for g in report()["python_types_grown"]}
    assert grown.get("_Marker", 0) >= 20_000
    del kept
