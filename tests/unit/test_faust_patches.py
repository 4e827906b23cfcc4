"""The worker's consumer gets our fetch wait, not Faust's hard-coded 1,500 ms."""

import asyncio

import faust
import pytest

from stream_app.settings import Settings
from stream_app.worker import fetching


def _worker_consumer_wait_ms(tmp_path) -> int:
    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=False)

    async def create() -> int:  # aiokafka builds its consumer inside a running loop
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    return asyncio.run(create())


def test_install_sets_the_fetch_wait_of_every_worker_consumer_faust_creates(tmp_path):
    fetching.install(35)
    assert _worker_consumer_wait_ms(tmp_path / "a") == 35
    fetching.install(Settings().fetch_max_wait_ms)  # a second install replaces the wait
    assert _worker_consumer_wait_ms(tmp_path / "b") == Settings().fetch_max_wait_ms == 20


def test_the_wait_is_read_from_the_environment():
    assert Settings.from_env({"STREAM_APP_FETCH_MAX_WAIT_MS": "50"}).fetch_max_wait_ms == 50
    assert Settings.from_env({}).fetch_max_wait_ms == 20


def test_a_wait_below_one_ms_is_refused():
    with pytest.raises(ValueError, match="fetch_max_wait_ms must be >= 1"):
        fetching.install(0)
