"""Probes and metrics (``stream_app/observability/``): the probe server's answers, the bounded
dead-letter categories, what the counting helpers add, and the worker's readiness, lag and
store gauges read from Faust objects (fakes for the states a real worker passes through, a
real, unstarted Faust app for the attributes read)."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import aiohttp
import faust
import orjson
import pytest
from faust.types import TP
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from stream_app.kafka.broker import free_port
from stream_app.observability import metrics, serve_probes
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.session import Emitted
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import Settings
from stream_app.worker.output import Output
from stream_app.worker.probes import READ, WorkerProbes, count_batch


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the probe server --------------------------------------------------------------------------
async def _answers(port: int, ready, *, on_scrape=None, registry=None,
                   accept: str = "") -> dict[str, tuple[int, str, bytes]]:
    runner = await serve_probes(port, ready, on_scrape=on_scrape,
                                registry=registry or CollectorRegistry())
    try:
        got = {}
        async with aiohttp.ClientSession() as http:
            for path in ("/health", "/ready", "/metrics"):
                headers = {"Accept": accept} if accept else {}
                async with http.get(f"http://127.0.0.1:{port}{path}", headers=headers) as a:
                    got[path] = (a.status, a.headers["Content-Type"], await a.read())
        return got
    finally:
        await runner.cleanup()


def test_port_zero_serves_nothing():
    assert asyncio.run(serve_probes(0, lambda: {"ready": True})) is None


def test_health_ready_and_metrics_answers():
    registry = CollectorRegistry()
    g = Gauge("probe_test_refreshed", "set by on_scrape", registry=registry)
    got = asyncio.run(_answers(free_port(), lambda: {"ready": True, "partitions": [0, 1]},
                               on_scrape=lambda: g.set(42), registry=registry))
    assert got["/health"][:2] == (200, "application/json")
    assert orjson.loads(got["/health"][2]) == {"status": "alive"}
    assert got["/ready"][0] == 200
    assert orjson.loads(got["/ready"][2]) == {"ready": True, "partitions": [0, 1]}
    status, content_type, body = got["/metrics"]
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "probe_test_refreshed 42.0" in body.decode()  # refreshed before it was rendered


def test_ready_is_503_when_not_ready_or_when_readiness_fails():
    not_ready = asyncio.run(_answers(free_port(), lambda: {"ready": False, "why": "recovering"}))
    assert not_ready["/ready"][0] == 503
    assert orjson.loads(not_ready["/ready"][2]) == {"ready": False, "why": "recovering"}

    def broken() -> dict:
        raise RuntimeError("consumer gone")

    failed = asyncio.run(_answers(free_port(), broken))
    assert failed["/ready"][0] == 503
    assert orjson.loads(failed["/ready"][2]) == {"ready": False,
                                                 "error": "RuntimeError: consumer gone"}
    truthy = asyncio.run(_answers(free_port(), lambda: {"ready": 1}))  # only True is ready
    assert truthy["/ready"][0] == 503


def test_metrics_render_when_the_refresh_fails_and_speak_openmetrics_when_asked():
    registry = CollectorRegistry()
    Gauge("probe_test_kept", "kept", registry=registry).set(7)

    def failing() -> None:
        raise RuntimeError("store closed")

    got = asyncio.run(_answers(free_port(), dict, on_scrape=failing, registry=registry,
                               accept="application/openmetrics-text; version=1.0.0"))
    status, content_type, body = got["/metrics"]
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert "probe_test_kept 7.0" in body.decode() and body.endswith(b"# EOF\n")


def test_a_port_in_use_raises():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            asyncio.run(serve_probes(taken.getsockname()[1], dict))


def test_the_probe_port_setting():
    assert Settings.from_env({}).probe_port == 8470
    assert Settings.from_env({"STREAM_APP_PROBE_PORT": "0"}).probe_port == 0
    assert Settings.from_env({"STREAM_APP_PROBE_HOST": "0.0.0.0"}).probe_host == "0.0.0.0"


# -- dead-letter reasons -----------------------------------------------------------------------
def _rejection(contract: Contract, raw: bytes | None, topic: str = "outcomes") -> str:
    with pytest.raises(InvalidMessage) as refused:
        contract.decode(topic, raw)
    return str(refused.value)


def test_the_reasons_the_engine_writes_fall_in_their_categories():
    contract = Contract.load(max_bytes=200)
    written = {
        _rejection(contract, None): "empty_message",
        _rejection(contract, b"x" * 201): "too_large",
        _rejection(contract, b"{nope"): "not_json",
        _rejection(contract, b"[1, 2]"): "not_json",
        _rejection(contract, b'{"customer_id": 5}'): "schema_violation",
        _rejection(contract, b"{}", topic="no-such-topic"): "unknown_topic",
    }
    for reason, category in written.items():
        assert metrics.dead_letter_reason(reason) == category, reason

    # the partition's own reasons, as its dead letters carry them
    session = PartitionSession(0, DictStore(), lambda: None)
    out = session.process("outcomes", [InputRecord(b"c1", b"{}", 4, None, "outcomes")])
    assert out.dead_letters == len(out.dead_letter_reasons) == 1
    assert metrics.dead_letter_reason(out.dead_letter_reasons[0]) == "no_config"
    for reason, category in [
            ("message key must be the customer_id (co-partitioning)", "wrong_key"),
            ("unknown decision_id 'd-1' for this customer (never made here)", "unknown_decision"),
            ("interaction rejected: amount must be finite", "interaction_rejected"),
            ("internal error: KeyError: 'c-123'", "internal_error"),
            ("config rejected: offer 'x' twice", "config_rejected"),
            ("customer c-123 said no", "other"), ("", "other")]:
        assert metrics.dead_letter_reason(reason) == category


def test_dead_letter_categories_are_a_closed_set():
    categories = {c for _, c in metrics.REASONS} | {"other"}
    ids = [f"unknown decision_id 'd-{i}'" for i in range(50)] + [f"oops {i}" for i in range(50)]
    assert {metrics.dead_letter_reason(r) for r in ids} <= categories
    before = {c: value("stream_app_dead_letters_total", reason=c) for c in categories}
    metrics.count_dead_letters(ids)
    added = {c: value("stream_app_dead_letters_total", reason=c) - before[c] for c in categories}
    assert {c: n for c, n in added.items() if n} == {"unknown_decision": 50, "other": 50}


# -- counting ----------------------------------------------------------------------------------
def test_decisions_are_counted_by_use_case_policy_offer_and_action():
    decisions = [
        {"use_case": "uc-count", "policy": "thompson", "offer_id": "a", "action": "offer",
         "latency_ms": 0.8},
        {"use_case": "uc-count", "policy": "thompson", "offer_id": "a", "action": "offer",
         "latency_ms": 3.0},
        {"use_case": "uc-count", "policy": "ucb", "offer_id": None, "action": "no_action",
         "latency_ms": 30.0},
    ]
    labels = {"use_case": "uc-count", "policy": "thompson", "offer": "a", "action": "offer"}
    none = {"use_case": "uc-count", "policy": "ucb", "offer": "", "action": "no_action"}
    before = (value("stream_app_decisions_total", **labels),
              value("stream_app_decisions_total", **none),
              value("stream_app_decision_latency_seconds_count"),
              value("stream_app_decision_latency_seconds_sum"),
              value("stream_app_decision_latency_seconds_bucket", le="0.001"),
              value("stream_app_decision_latency_seconds_bucket", le="0.005"))
    metrics.count_decisions(decisions)
    after = (value("stream_app_decisions_total", **labels),
             value("stream_app_decisions_total", **none),
             value("stream_app_decision_latency_seconds_count"),
             value("stream_app_decision_latency_seconds_sum"),
             value("stream_app_decision_latency_seconds_bucket", le="0.001"),
             value("stream_app_decision_latency_seconds_bucket", le="0.005"))
    added = [a - b for a, b in zip(after, before)]
    assert added[:3] == [2, 1, 3]
    assert added[3] == pytest.approx(0.0338)
    assert added[4:] == [1, 2]  # 0.8 ms <= 1 ms; 0.8 and 3 ms <= 5 ms


def test_a_batch_counts_its_decisions_dead_letters_duplicates_and_model_version():
    emitted = Emitted(decisions=[{"use_case": "uc-batch", "policy": "p", "offer_id": "o",
                                  "action": "offer", "latency_ms": 1.0,
                                  "model_version": "beta-arms-v3+fleet:17"}],
                      duplicates=2, dead_letters=1,
                      dead_letter_reasons=["not JSON: unexpected character"])
    before = (value("stream_app_decisions_total", use_case="uc-batch", policy="p", offer="o",
                    action="offer"),
              value("stream_app_duplicates_total", topic="t-batch"),
              value("stream_app_dead_letters_total", reason="not_json"))
    count_batch("t-batch", 11, emitted)
    after = (value("stream_app_decisions_total", use_case="uc-batch", policy="p", offer="o",
                   action="offer"),
             value("stream_app_duplicates_total", topic="t-batch"),
             value("stream_app_dead_letters_total", reason="not_json"))
    assert [a - b for a, b in zip(after, before)] == [1, 2, 1]
    assert value("stream_app_model_snapshot_version", partition="11") == 17
    assert value("stream_app_model_version_info", partition="11", version="beta-arms-v3") == 1


def test_records_in_and_out_by_topic():
    before_in = value("stream_app_records_in_total", topic="t-in")
    metrics.count_in("t-in", 5)
    assert value("stream_app_records_in_total", topic="t-in") - before_in == 5

    class Producer:
        def produce(self, *args) -> None:
            pass

        def poll(self, timeout: float) -> int:
            return 0

        def __len__(self) -> int:
            return 0

    output = Output("unused:9092", producer=Producer(), bulk_producer=Producer(),
                    urgent_topics=frozenset({"t-decisions"}))
    before = {t: value("stream_app_records_out_total", topic=t)
              for t in ("t-decisions", "t-changelog")}
    for _ in range(3):
        output.send("t-decisions", b"k", b"v")
    output.send("t-changelog", b"k", b"v", partition=1)
    assert value("stream_app_records_out_total", topic="t-decisions") == before["t-decisions"]
    output.poll()  # counted once per batch, not per record
    asyncio.run(output.flush())
    assert {t: value("stream_app_records_out_total", topic=t) - before[t] for t in before} == \
        {"t-decisions": 3, "t-changelog": 1}


def test_config_version_and_learner_snapshot_age():
    metrics.config_applied("cfg-42")
    assert value("stream_app_config_version_info", version="cfg-42") == 1
    metrics.learner_snapshot_taken(time.time() - 30)
    assert value("stream_app_learner_snapshot_age_seconds") == pytest.approx(30, abs=2)


# -- the worker's readiness and gauges ---------------------------------------------------------
class _Event:
    def __init__(self, done: bool) -> None:
        self.done = done

    def is_set(self) -> bool:
        return self.done


def _fake_worker(*, recovered=True, rebalancing=False, stopping=False, config="v7",
                 assigned=(TP("in", 0), TP("in", 1), TP("other", 2)), highwater=None,
                 committed=None, dbs=None):
    consumer = SimpleNamespace(assignment=lambda: set(assigned),
                               highwater=lambda tp: (highwater or {}).get(tp),
                               _committed_offset=dict(committed or {}))
    tables = {name: SimpleNamespace(name=name, data=SimpleNamespace(_dbs=stores))
              for name, stores in (dbs or {}).items()}
    app = SimpleNamespace(rebalancing=rebalancing, should_stop=stopping, consumer=consumer,
                          tables=SimpleNamespace(recovery=SimpleNamespace(
                              completed=_Event(recovered)), values=tables.values))
    feed = SimpleNamespace(current=None if config is None else SimpleNamespace(version=config),
                           on_change=[])
    return WorkerProbes(app, feed, {"in"})


def test_ready_only_when_config_partitions_and_recovery_are_there():
    details = _fake_worker().ready()
    assert details == {"ready": True, "config_loaded": True, "config_version": "v7",
                       "recovered": True, "rebalancing": False, "stopping": False,
                       "partitions": [0, 1]}
    assert _fake_worker(config=None).ready()["ready"] is False
    assert _fake_worker(recovered=False).ready()["ready"] is False
    assert _fake_worker(rebalancing=True).ready()["ready"] is False
    assert _fake_worker(stopping=True).ready()["ready"] is False
    idle = _fake_worker(assigned=()).ready()  # more workers than partitions: ready, idle
    assert idle["ready"] is True and idle["partitions"] == []


def test_the_config_version_follows_the_feed():
    probes = _fake_worker()
    [on_change] = probes.feed.on_change
    on_change(SimpleNamespace(version="from-feed-3"))
    assert value("stream_app_config_version_info", version="from-feed-3") == 1


def test_lag_is_the_high_watermark_minus_the_committed_offset():
    probes = _fake_worker(highwater={TP("in", 0): 120, TP("in", 1): 7},
                          committed={TP("in", 0): 100})
    probes.refresh()
    assert value("stream_app_consumer_lag", topic="in", partition="0") == 20
    # no commit yet on partition 1: unknown, not zero; topics not read are not reported
    assert REGISTRY.get_sample_value("stream_app_consumer_lag",
                                     {"topic": "in", "partition": "1"}) is None
    assert REGISTRY.get_sample_value("stream_app_consumer_lag",
                                     {"topic": "other", "partition": "2"}) is None
    revoked = _fake_worker(assigned=(TP("in", 1),), highwater={TP("in", 1): 9},
                           committed={TP("in", 1): 9})
    revoked.refresh()  # partition 0 left the worker: its lag is gone
    assert REGISTRY.get_sample_value("stream_app_consumer_lag",
                                     {"topic": "in", "partition": "0"}) is None
    assert value("stream_app_consumer_lag", topic="in", partition="1") == 0


class _Store:
    def __init__(self, live: int, memtables: int, keys: int, offset: bool) -> None:
        self.props = {"rocksdb.estimate-live-data-size": live,
                      "rocksdb.cur-size-all-mem-tables": memtables,
                      "rocksdb.estimate-num-keys": keys}
        self.offset = offset

    def property_int_value(self, name: str) -> int:
        return self.props[name]

    def get(self, key: bytes):
        return b"41" if self.offset and key == b"__faust\x00offset__" else None


class _Closed:
    def property_int_value(self, name: str) -> int:
        raise RuntimeError("closed")


def test_store_sizes_and_customers_per_partition():
    probes = _fake_worker(dbs={"customers": {0: _Store(1000, 24, 11, offset=True),
                                             1: _Store(0, 64, 3, offset=False),
                                             2: _Closed()},
                               "arms": {0: _Store(50, 0, 4, offset=True)}})
    probes.refresh()
    assert value("stream_app_state_bytes", table="customers", partition="0") == 1024
    assert value("stream_app_state_bytes", table="customers", partition="1") == 64
    assert value("stream_app_state_bytes", table="arms", partition="0") == 50
    assert value("stream_app_customers", partition="0") == 10  # Faust's offset key is no customer
    assert value("stream_app_customers", partition="1") == 3
    assert REGISTRY.get_sample_value("stream_app_customers", {"partition": "2"}) is None


def test_what_the_probes_read_still_exists_in_faust(tmp_path):
    import importlib

    for module, cls, attribute in READ:
        owner = getattr(importlib.import_module(module), cls)
        annotated = any(attribute in getattr(k, "__annotations__", {}) for k in owner.__mro__)
        assert hasattr(owner, attribute) or annotated, f"{module}.{cls}.{attribute}"

    app = faust.App("probes-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=False)

    async def unstarted() -> tuple[dict, object]:
        probes = WorkerProbes(app, SimpleNamespace(current=None, on_change=[]), {"in"})
        return probes.ready(), app.consumer._committed_offset

    details, committed = asyncio.run(unstarted())
    assert details["ready"] is False and details["recovered"] is False
    assert details["partitions"] == []  # the consumer is not running
    assert committed == {}
