"""Exactly once (worker/transactions.py): staged tables never write a store before their
transaction commits, a commit carries exactly the records processed before the cut, sends made
while it commits go to the next transaction, and a failed commit writes nothing locally."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest
from rocksdict import Options, Rdict

from stream_app.worker.output import Output
from stream_app.worker.restore import OFFSET_KEY
from stream_app.worker.tables import Tables
from stream_app.worker.transactions import ExactlyOnce, transactional_id


def delivered(topic: str, partition: int, offset: int) -> SimpleNamespace:
    """A delivery report's message, as librdkafka hands it to ``on_delivery``."""
    return SimpleNamespace(topic=lambda: topic, partition=lambda: partition,
                           offset=lambda: offset)


class TransactionalProducer:
    """librdkafka's transactional producer surface; each transaction's messages are delivered
    (acknowledged) at its commit, as ``commit_transaction`` flushes."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.queued: list[tuple[str, int]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.on_delivery = None
        self.transactions: list[dict] = []
        self.open: dict | None = None
        self.fail_commit = fail_commit
        self.commit_started = threading.Event()
        self.commit_may_finish = threading.Event()
        self.commit_may_finish.set()

    def init_transactions(self, timeout: float) -> None:
        self.initialised = True

    def begin_transaction(self) -> None:
        assert self.open is None, "a transaction is already open"
        self.open = {"messages": [], "offsets": None}

    def produce(self, topic, value, key, partition=None) -> None:
        assert self.open is not None, "produce outside a transaction"
        self.queued.append((topic, 0 if partition is None else partition))
        self.open["messages"].append((topic, key, value, partition))

    def poll(self, timeout: float) -> int:
        served, self.queued = self.queued, []
        for topic, partition in served:
            offset = self.offsets[topic, partition] = self.offsets.get((topic, partition), -1) + 1
            self.on_delivery(None, delivered(topic, partition, offset))
        return len(served)

    def __len__(self) -> int:
        return len(self.queued)

    def send_offsets_to_transaction(self, positions, metadata, timeout) -> None:
        self.open["offsets"] = {(tp.topic, tp.partition): tp.offset for tp in positions}

    def commit_transaction(self, timeout: float) -> None:
        self.commit_started.set()
        self.commit_may_finish.wait(5)
        if self.fail_commit:
            raise RuntimeError("transaction aborted by the broker")
        self.poll(0)  # flushed: every message acknowledged
        self.transactions.append(self.open)
        self.open = None


@pytest.fixture
def store(tmp_path):
    db = Rdict(str(tmp_path / "customers-0"), Options(raw_mode=True))
    yield db
    db.close()


def _engine(store, producer: TransactionalProducer) -> tuple[ExactlyOnce, Tables, Output]:
    output = Output("unused", tracked_topics=frozenset({"customers-cl"}), producer=producer,
                    transactional_id="app-w1")
    producer.on_delivery = output._delivered
    tables = Tables({"customers": ("customers-cl", lambda p: store)}, output, staged=True)
    eos = ExactlyOnce(output, tables, "unused:9092", "app")
    output.begin()
    eos._metadata = object()  # the group metadata librdkafka would give
    return eos, tables, output


def test_staged_rows_reach_the_store_only_after_their_transaction_commits(store) -> None:
    producer = TransactionalProducer()
    eos, tables, output = _engine(store, producer)
    tables.set("customers", 0, b"c1", b"v1")
    tables.flush()  # sent to the changelog, inside the open transaction
    assert producer.open["messages"] == [("customers-cl", b"c1", b"v1", 0)]
    assert store.get(b"c1") is None  # not in RocksDB: the transaction may still abort
    assert tables.get("customers", 0, b"c1") == b"v1"  # but read back
    assert tables.get_many("customers", 0, [b"c0", b"c1"]) == [None, b"v1"]
    eos.positions.advance("requests", 0, 41)
    assert asyncio.run(eos.commit())
    assert producer.transactions[0]["offsets"] == {("requests", 0): 42}
    assert store.get(b"c1") == b"v1"
    # the changelog offset Faust resumes from is past the transaction's commit marker
    assert store[OFFSET_KEY] == b"1"


def test_nothing_to_commit_commits_nothing(store) -> None:
    producer = TransactionalProducer()
    eos, _, _ = _engine(store, producer)
    assert not asyncio.run(eos.commit())
    assert producer.transactions == []


def test_sends_while_a_transaction_commits_go_to_the_next_one(store) -> None:
    producer = TransactionalProducer()
    eos, tables, output = _engine(store, producer)
    output.send("decisions", b"c1", b"d1")
    eos.positions.advance("requests", 0, 0)
    producer.commit_may_finish.clear()

    async def scenario() -> None:
        commit = asyncio.create_task(eos.commit())
        while not producer.commit_started.is_set():
            await asyncio.sleep(0.001)
        # the event loop goes on while the commit runs in a thread: the next record
        output.send("decisions", b"c2", b"d2")
        tables.set("customers", 0, b"c2", b"v2")
        eos.positions.advance("requests", 0, 1)
        producer.commit_may_finish.set()
        assert await commit
        tables.flush()
        assert await eos.commit()

    asyncio.run(scenario())
    first, second = producer.transactions
    assert first["messages"] == [("decisions", b"c1", b"d1", None)]
    assert first["offsets"] == {("requests", 0): 1}
    assert second["messages"] == [("decisions", b"c2", b"d2", None),
                                  ("customers-cl", b"c2", b"v2", 0)]
    assert second["offsets"] == {("requests", 0): 2}
    assert store.get(b"c2") == b"v2"


def test_a_failed_commit_writes_nothing_locally_and_raises(store) -> None:
    producer = TransactionalProducer(fail_commit=True)
    eos, tables, _ = _engine(store, producer)
    tables.set("customers", 0, b"c1", b"v1")
    eos.positions.advance("requests", 0, 5)
    with pytest.raises(RuntimeError, match="aborted"):
        asyncio.run(eos.commit())
    assert store.get(b"c1") is None


def test_exactly_once_needs_a_transactional_output_and_staged_tables(store) -> None:
    output = Output("unused", producer=TransactionalProducer())
    with pytest.raises(ValueError, match="transactional output"):
        ExactlyOnce(output, Tables({}, output), "unused:9092", "app")


def test_the_transactional_id_is_stable_per_worker_and_can_be_named() -> None:
    a = transactional_id("app", "", "/data/w1")
    assert a == transactional_id("app", "", "/data/w1") != transactional_id("app", "", "/data/w2")
    assert transactional_id("app", "worker-3", "/data/w1") == "app-worker-3"
