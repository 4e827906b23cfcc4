"""The worker's RocksDB stores share one memory budget (worker/storage.py)."""

from __future__ import annotations

import os
import time

import pytest

from stream_app.worker import storage


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> storage.Budget:
    b = storage.Budget(8)  # 8 MB: 4 MB of memtables, 1 MB per store's write buffer
    monkeypatch.setattr(storage, "_budget", b)
    return b


def _open(path) -> object:
    return storage._BoundedOptions(use_rocksdict=True).open(path)


def test_stores_share_one_cache_and_memtable_budget(tmp_path, budget) -> None:
    dbs = [_open(tmp_path / f"t{i}.db") for i in range(8)]
    try:
        value = os.urandom(512)
        charged = 0
        for n in range(40_000):  # ~21 MB written over 8 stores: 5x the memtable budget
            dbs[n % 8][b"c%07d" % n] = value
            if n % 1000 == 999:
                charged = max(charged, budget.usage()["memtable_bytes"])
        # every store's memtables are charged to the one write-buffer manager (and its cache)
        assert charged > 0
        # ... which made them flush: once the flushes in progress are done (they lag on a busy
        # machine) the memtables fit the budget (give or take the write buffer that was being
        # filled when the last flush was triggered), instead of holding the ~21 MB written
        deadline = time.monotonic() + 10.0
        limit = budget.memtable_bytes + 2 * budget.write_buffer_bytes
        while budget.usage()["memtable_bytes"] > limit:
            assert time.monotonic() < deadline, budget.usage()
            time.sleep(0.05)
        assert budget.usage()["cache_bytes"] <= 1.25 * budget.cache_bytes
        for n in (0, 12_345, 39_999):  # and every row is still there
            assert dbs[n % 8][b"c%07d" % n] == value
    finally:
        for db in dbs:
            db.close()


def test_a_reopened_store_still_uses_the_shared_cache(tmp_path, budget) -> None:
    """A restarted worker opens existing stores: they must stay under the budget (rocksdict
    used to reopen them with the options saved on disk, i.e. a private default cache each)."""
    db = _open(tmp_path / "t.db")
    value = os.urandom(400)
    for n in range(20_000):  # ~8 MB: flushed to SST files
        db[b"c%06d" % n] = value
    db.close()
    db = _open(tmp_path / "t.db")
    try:
        db.flush()
        before = budget.usage()["cache_bytes"]
        for n in range(0, 20_000, 3):  # reads of SST blocks go through the block cache
            assert db[b"c%06d" % n] == value
        assert budget.usage()["cache_bytes"] - before > 2 << 20
        for n in range(3_000):  # and new writes are charged to the shared write-buffer manager
            db[b"n%06d" % n] = value
        assert budget.usage()["memtable_bytes"] > 0
    finally:
        db.close()


def test_budget_is_set_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_budget", storage.Budget())
    assert storage.configure(32).memory_mb == 32
    storage.budget().shared()  # in use from now on
    assert storage.configure(32) is storage.budget()
    with pytest.raises(RuntimeError):
        storage.configure(16)
    with pytest.raises(ValueError):
        storage.configure(4)


def test_bounded_store_is_a_faust_store_url() -> None:
    import faust.stores

    assert faust.stores.by_url(storage.STORE_URL) is storage.BoundedStore


def test_malloc_arenas_are_capped_on_glibc() -> None:
    import platform

    assert storage.limit_malloc_arenas(0) is False  # 0: leave glibc's default
    if platform.libc_ver()[0] == "glibc":
        assert storage.limit_malloc_arenas(2) is True
        assert storage.trim_malloc() is True
