"""The worker's table writes, grouped per batch (worker/tables.py), and its producer
(worker/output.py), against real RocksDB stores and a recording stand-in for librdkafka."""

from __future__ import annotations

import asyncio

import pytest
from faust.stores import rocksdb as faust_rocksdb
from rocksdict import Options, Rdict

from stream_app.worker.output import DeliveryError, Output
from stream_app.worker.restore import OFFSET_KEY
from stream_app.worker.tables import Tables


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeProducer:
    """librdkafka's Producer surface: produce, poll (serves delivery reports), len."""

    def __init__(self, fail_topics: frozenset[str] = frozenset()) -> None:
        self.messages: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.queued: list[tuple[str, int | None]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.fail_topics = fail_topics
        self.on_delivery = None

    def produce(self, topic, value, key, partition=None) -> None:
        self.messages.append((topic, key, value, partition))
        self.queued.append((topic, partition))

    def poll(self, timeout: float) -> int:
        served, self.queued = self.queued, []
        for topic, partition in served:
            p = 0 if partition is None else partition
            offset = self.offsets[topic, p] = self.offsets.get((topic, p), -1) + 1
            err = "refused" if topic in self.fail_topics else None
            self.on_delivery(err, FakeMessage(topic, p, offset))
        return len(served)

    def __len__(self) -> int:
        return len(self.queued)


def _output(producer: FakeProducer, tracked: frozenset[str]) -> Output:
    out = Output("unused", tracked_topics=tracked, producer=producer)
    producer.on_delivery = out._delivered
    return out


@pytest.fixture
def stores(tmp_path):
    opened: dict[tuple[str, int], Rdict] = {}

    def store_of(table: str):
        def db(partition: int) -> Rdict:
            if (table, partition) not in opened:
                opened[table, partition] = Rdict(str(tmp_path / f"{table}-{partition}"),
                                                 Options(raw_mode=True))
            return opened[table, partition]
        return db

    yield store_of, opened
    for db in opened.values():
        db.close()


def _tables(store_of, producer: FakeProducer) -> tuple[Tables, Output]:
    out = _output(producer, frozenset({"arms-cl", "pending-cl"}))
    return Tables({"arms": ("arms-cl", store_of("arms")),
                   "pending": ("pending-cl", store_of("pending"))}, out), out


def test_offset_key_is_fausts() -> None:
    assert OFFSET_KEY == faust_rocksdb.Store.offset_key


def test_writes_are_held_until_flush_and_read_back(stores) -> None:
    store_of, opened = stores
    producer = FakeProducer()
    tables, _ = _tables(store_of, producer)
    tables.set("arms", 1, b"c1", b"a")
    assert tables.get("arms", 1, b"c1") == b"a"  # the batch sees its own write
    assert tables.get("arms", 0, b"c1") is None  # ... on its partition only
    assert store_of("arms")(1).get(b"c1") is None  # not yet in RocksDB
    assert producer.messages == []  # nor in the changelog
    assert tables.flush() == 1
    assert store_of("arms")(1).get(b"c1") == b"a"
    assert producer.messages == [("arms-cl", b"c1", b"a", 1)]


def test_a_key_written_many_times_in_a_batch_is_written_once(stores) -> None:
    store_of, _ = stores
    producer = FakeProducer()
    tables, _ = _tables(store_of, producer)
    for i in range(100):  # e.g. the population arms, written by every settled decision
        tables.set("arms", 2, b"\x00population", b"v%d" % i)
    tables.set("arms", 2, b"c7", b"x")
    assert tables.flush() == 2
    assert sorted(producer.messages) == [("arms-cl", b"\x00population", b"v99", 2),
                                         ("arms-cl", b"c7", b"x", 2)]
    assert store_of("arms")(2).get(b"\x00population") == b"v99"


def test_delete_is_a_tombstone_and_hides_the_stored_row(stores) -> None:
    store_of, _ = stores
    producer = FakeProducer()
    tables, _ = _tables(store_of, producer)
    tables.set("pending", 0, b"d1", b"open")
    tables.set("pending", 0, b"d2", b"open")
    tables.flush()
    tables.delete("pending", 0, b"d1")
    assert tables.get("pending", 0, b"d1") is None
    assert dict(tables.items("pending", 0)) == {b"d2": b"open"}
    tables.flush()
    assert store_of("pending")(0).get(b"d1") is None
    assert producer.messages[-1] == ("pending-cl", b"d1", None, 0)


def test_items_merge_the_store_and_the_batch_without_the_offset_key(stores) -> None:
    store_of, _ = stores
    producer = FakeProducer()
    tables, out = _tables(store_of, producer)
    tables.set("pending", 3, b"a", b"1")
    tables.flush()
    out.poll()  # delivered: the next flush records the persisted offset
    tables.set("pending", 3, b"a", b"2")
    tables.set("pending", 3, b"b", b"3")
    assert store_of("pending")(3).get(OFFSET_KEY) is None
    assert dict(tables.items("pending", 3)) == {b"a": b"2", b"b": b"3"}
    tables.flush()
    assert store_of("pending")(3).get(OFFSET_KEY) == b"0"  # where Faust's recovery resumes
    assert dict(tables.items("pending", 3)) == {b"a": b"2", b"b": b"3"}


def test_persisted_offset_is_the_last_acknowledged_record_per_partition(stores) -> None:
    store_of, _ = stores
    producer = FakeProducer()
    tables, out = _tables(store_of, producer)
    for i in range(5):
        tables.set("arms", 0, b"k%d" % i, b"v")
        tables.set("arms", 1, b"k%d" % i, b"v")
    tables.set("pending", 1, b"p", b"v")
    tables.flush()
    # not acknowledged yet: the stores do not claim records the broker may not have
    assert store_of("arms")(0).get(OFFSET_KEY) is None
    out.poll()
    tables.flush()  # nothing new to write, only the offsets
    assert store_of("arms")(0).get(OFFSET_KEY) == b"4"
    assert store_of("arms")(1).get(OFFSET_KEY) == b"4"
    assert store_of("pending")(1).get(OFFSET_KEY) == b"0"


def test_persist_acked_records_the_offsets_and_leaves_held_writes_held(stores) -> None:
    # the worker's write-out before a commit, a hand-over and a stop: flush, wait for the
    # acknowledgements, persist them, so a recovery never reads back what this worker wrote
    store_of, _ = stores
    producer = FakeProducer()
    tables, out = _tables(store_of, producer)
    tables.set("arms", 1, b"checkpoint", b"v1")
    tables.set("arms", 1, b"pointer", b"v2")
    tables.flush()
    asyncio.run(out.flush())
    tables.set("pending", 1, b"later", b"x")  # written while the flush waited
    tables.persist_acked()
    assert store_of("arms")(1).get(OFFSET_KEY) == b"1"
    assert store_of("pending")(1).get(b"later") is None  # still held, not sent
    assert len(producer.messages) == 2
    assert tables.get("pending", 1, b"later") == b"x"
    tables.persist_acked()  # nothing new acknowledged: nothing changes
    assert store_of("arms")(1).get(OFFSET_KEY) == b"1"
    assert tables.flush() == 1


def test_flush_waits_for_every_message_and_raises_on_a_refused_one() -> None:
    producer = FakeProducer(fail_topics=frozenset({"bad"}))
    out = _output(producer, frozenset())
    out.send("decisions", b"c1", b"{}")
    asyncio.run(out.flush())
    assert len(producer) == 0 and out.sent == 1
    out.send("bad", b"c1", b"{}")
    with pytest.raises(DeliveryError, match="refused"):
        asyncio.run(out.flush())


def test_a_refusal_served_by_poll_is_still_raised_by_the_flush_before_commit() -> None:
    producer = FakeProducer(fail_topics=frozenset({"bad"}))
    out = _output(producer, frozenset())
    out.send("bad", b"c1", b"{}")
    out.poll()  # the worker's per-tick poll serves the report
    with pytest.raises(DeliveryError, match="refused"):
        asyncio.run(out.flush())


def test_a_full_producer_queue_is_drained_not_dropped() -> None:
    producer = FakeProducer()
    real_produce = producer.produce
    calls = {"n": 0}

    def produce(topic, value, key, partition=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise BufferError("queue full")
        real_produce(topic, value, key, partition)

    producer.produce = produce  # type: ignore[method-assign]
    out = _output(producer, frozenset())
    out.send("decisions", b"c1", b"v")
    assert producer.messages == [("decisions", b"c1", b"v", None)]


def test_decisions_take_the_low_latency_lane_and_the_flush_waits_for_both_lanes() -> None:
    urgent, bulk = FakeProducer(), FakeProducer(fail_topics=frozenset({"bad"}))
    out = Output("unused", urgent_topics=frozenset({"decisions"}),
                 tracked_topics=frozenset({"arms-changelog"}), producer=urgent,
                 bulk_producer=bulk)
    urgent.on_delivery = bulk.on_delivery = out._delivered
    out.send("decisions", b"c1", b"{}")
    out.send("arms-changelog", b"c1", b"v", 0)
    out.send("delta-metrics", b"c1", b"{}")
    assert [m[0] for m in urgent.messages] == ["decisions"]
    assert [m[0] for m in bulk.messages] == ["arms-changelog", "delta-metrics"]
    asyncio.run(out.flush())
    assert len(urgent) == len(bulk) == 0 and out.take_acked() == {("arms-changelog", 0): 0}
    out.send("bad", b"c1", b"{}")  # a refusal on the bulk lane fails the flush too
    with pytest.raises(DeliveryError, match="refused"):
        asyncio.run(out.flush())


def test_get_many_reads_held_writes_and_the_store_in_the_order_asked(stores) -> None:
    store_of, _ = stores
    producer = FakeProducer()
    tables, _ = _tables(store_of, producer)
    tables.set("arms", 1, b"a", b"stored-a")
    tables.set("arms", 1, b"b", b"stored-b")
    tables.flush()
    assert tables.get_many("arms", 1, [b"b", b"x", b"a"]) == [b"stored-b", None, b"stored-a"]
    tables.set("arms", 1, b"a", b"held-a")  # held writes win over the store
    tables.delete("arms", 1, b"b")          # and a held delete hides the stored row
    assert tables.get_many("arms", 1, [b"b", b"x", b"a"]) == [None, None, b"held-a"]
    assert tables.partition(1).get_many("arms", [b"a"]) == [b"held-a"]
