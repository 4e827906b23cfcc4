"""What the worker patches in Faust still exists, and the consumer gets our fetch wait, not
Faust's hard-coded 1,500 ms."""

import asyncio
import importlib

import faust
import pytest

from stream_app.settings import Settings
from stream_app.worker import faust_patches


def _worker_consumer_wait_ms(tmp_path) -> int:
    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=False)

    async def create() -> int:  # aiokafka builds its consumer inside a running loop
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    return asyncio.run(create())


def test_install_sets_the_fetch_wait_of_every_worker_consumer_faust_creates(tmp_path):
    faust_patches.install_fetch_wait(35)
    assert _worker_consumer_wait_ms(tmp_path / "a") == 35
    faust_patches.install_fetch_wait(Settings().fetch_max_wait_ms)  # a second install replaces the wait
    assert _worker_consumer_wait_ms(tmp_path / "b") == Settings().fetch_max_wait_ms == 20


def test_the_wait_is_read_from_the_environment():
    assert Settings.from_env({"STREAM_APP_FETCH_MAX_WAIT_MS": "50"}).fetch_max_wait_ms == 50
    assert Settings.from_env({}).fetch_max_wait_ms == 20


def test_a_wait_below_one_ms_is_refused():
    with pytest.raises(ValueError, match="fetch_max_wait_ms must be >= 1"):
        faust_patches.install_fetch_wait(0)


@pytest.mark.parametrize("module, cls, attribute", faust_patches.PATCHED,
                         ids=[".".join(p[1:]) for p in faust_patches.PATCHED])
def test_every_patched_faust_attribute_exists_in_the_installed_version(module, cls, attribute):
    owner = getattr(importlib.import_module(module), cls)
    assert hasattr(owner, attribute), f"{module}.{cls}.{attribute} is gone: see faust_patches.py"


def test_the_patches_wrap_what_they_say(tmp_path):
    app = faust.App("patch-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=False)
    calls = []

    async def write_out():
        calls.append("write_out")

    async def before():
        calls.append("checkpoint")

    async def faust_flush():
        calls.append("faust_flush")

    async def faust_stop():
        calls.append("stores_closed")

    app.producer.flush = faust_flush
    app.tables.stop = faust_stop
    faust_patches.flush_before_commit(app, write_out)
    faust_patches.before_tables_stop(app, before)
    asyncio.run(app.producer.flush())
    asyncio.run(app.tables.stop())
    assert calls == ["write_out", "faust_flush", "checkpoint", "stores_closed"]


def _worker_consumer_isolation(tmp_path) -> str:
    app = faust.App("isolation-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=False)

    async def create() -> str:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return consumer._isolation_level  # read by AIOKafkaConsumer.start() for its Fetcher

    return asyncio.run(create())


def test_read_committed_sets_the_isolation_of_every_worker_consumer(tmp_path):
    try:
        faust_patches.install_read_committed(True)
        assert _worker_consumer_isolation(tmp_path / "a") == "read_committed"
    finally:
        faust_patches.install_read_committed(False)
    assert _worker_consumer_isolation(tmp_path / "b") == "read_uncommitted"  # Faust's own


def test_fausts_commits_become_the_workers_and_its_acks_are_pruned(tmp_path):
    from faust.types import TP

    app = faust.App("commit-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=False)
    calls = []

    async def commit() -> bool:
        calls.append("transaction")
        return True

    faust_patches.commit_by(app, commit)
    consumer = app.consumer
    tp = TP("requests", 0)
    consumer._acked[tp].extend([0, 1, 2])
    consumer._committed_offset[tp] = None
    assert asyncio.run(consumer.commit()) is True
    assert calls == ["transaction"]
    assert consumer._acked[tp] == [] and consumer._committed_offset[tp] == 3
