"""A worker killed in its write path (README, "Crashes: exactly once"), at the points where a
kill did harm: the worker kills itself at a failpoint (``stream_app/failpoints.py``), after it
processed a record and before, while or after it committed it. One test per kind of harm:

- an outcome's delta was lost: the settlement reached the local store before the delta reached
  its topic and before the offset was committed, and the redelivered outcome was then taken for
  a duplicate;
- the local RocksDB store ran ahead of the changelog, so a worker restarted from the changelog
  alone (a new machine, a rebalance) disagreed with the one that had kept its disk;
- a redelivered request that got ``no_action`` (it leaves no open decision behind) was decided
  a second time.

And one for the expiry that writes no state of its own (``partition/state.py``): wherever the
worker dies around the batch that settles a decision as ignored, the decision has one delta
and its customer learns it once (the partition's settled-through mark is what carries it)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter, defaultdict

import numpy as np
import orjson
import pytest

from stream_app.core.catalogue import offer_key
from stream_app.core.customer import CustomerState
from stream_app.core.delta import outcome_rows
from stream_app.partition.keys import partition_of
from stream_app.partition.session import TABLES
from stream_app.tools.chaos import local_rows, read_topic
from stream_app.failpoints import POINTS

pytestmark = pytest.mark.integration

ONE_OFFER = {
    "version": "crash-v1",
    "offers": [{"id": "cashback", "category": "cards", "value": 1.0, "channels": ["app"]}],
    "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": 3600,
                   "rules": {"fatigue": {"same_offer_s": 0}}}],
}
CUSTOMER = "c-crash"


@pytest.fixture(autouse=True)
def short_session(monkeypatch) -> None:
    """One worker, restarted after each kill: the group gives the killed one's partitions to
    the restarted one after 6 s (the broker's usual floor) instead of the default 10 s."""
    monkeypatch.setenv("STREAM_APP_SESSION_TIMEOUT_S", "6")


@pytest.fixture
def decided(engine, make_request) -> dict:
    """A committed offer to the customer, from a worker then stopped cleanly."""
    engine.publish_config(ONE_OFFER)
    decision = engine.decide(make_request(customer=CUSTOMER, ts=_now()))
    assert decision["offer_id"] == "cashback"
    engine.stop()
    return decision


def _crash(engine, monkeypatch, failpoint: str, topic: str, message: dict) -> None:
    """Start the worker with ``failpoint``, send it ``message`` and wait until it killed
    itself there."""
    monkeypatch.setenv("STREAM_APP_FAIL_AT", failpoint)
    engine.start()
    engine.send(topic, message["customer_id"], message)
    try:
        engine.process.wait(60)
    except Exception:
        raise AssertionError(f"the worker did not reach {failpoint}") from None
    engine.process = None
    monkeypatch.delenv("STREAM_APP_FAIL_AT")


def _restart(engine, make_request, topic: str, until) -> None:
    """Restart, run until ``until(messages of topic)`` and the worker serves (its stores are
    caught up), stop cleanly (every store written)."""
    engine.start()
    engine.collect(topic, until)
    engine.decide(make_request(customer="c-other", ts=_now()))
    engine.stop()


@pytest.mark.parametrize("point", POINTS)
def test_an_outcome_has_its_delta_once_wherever_the_worker_dies(engine, decided, monkeypatch,
                                                                make_request, point) -> None:
    outcome = {"outcome_id": f"oc-{uuid.uuid4().hex}", "decision_id": decided["decision_id"],
               "customer_id": CUSTOMER, "ts": _now(), "type": "clicked"}
    _crash(engine, monkeypatch, f"{point}:outcomes", "outcomes", outcome)
    _restart(engine, make_request, "delta-metrics",
             lambda ms: any(m.get("outcome_id") == outcome["outcome_id"] for m in ms))

    deltas = [r for m in _topic(engine, "delta-metrics") for r in outcome_rows(m)
              if r.get("outcome_id") == outcome["outcome_id"]]
    assert [d["decision_id"] for d in deltas] == [decided["decision_id"]]
    changelog = _changelog(engine, "customers")
    state = CustomerState.decode(changelog[CUSTOMER.encode()], CUSTOMER)
    succ, fail = state.arms.evidence(np.array([offer_key("cashback")], np.uint32), 0, None)
    assert (succ[0], fail[0]) == (1.0, 0.0)  # learned once
    assert _local(engine, "customers") == _live(changelog)


def test_the_local_store_is_never_ahead_of_the_changelog(engine, decided, monkeypatch,
                                                         make_request) -> None:
    request = make_request(customer=CUSTOMER, ts=_now())
    _crash(engine, monkeypatch, "processed:decision-requests", "decision-requests", request)
    # where it died: on disk is what the committed changelog holds, table by table
    for table in TABLES:
        assert _local(engine, table) == _live(_changelog(engine, table)), table
    _restart(engine, make_request, "decisions",
             lambda ms: any(m["request_id"] == request["request_id"] for m in ms))
    # a worker restarted from the changelog alone ends where the one that kept its disk did
    kept = _local(engine, "customers")[CUSTOMER.encode()]
    shutil.rmtree(engine.settings.data_dir)
    engine.start()
    engine.decide(make_request(customer="c-another", ts=_now()))  # recovered and serving
    engine.stop()
    assert _local(engine, "customers")[CUSTOMER.encode()] == kept
    for table in TABLES:
        assert _local(engine, table) == _live(_changelog(engine, table)), table


def test_a_redelivered_no_action_request_is_decided_once(engine, decided, monkeypatch,
                                                         make_request) -> None:
    nothing = make_request(customer=CUSTOMER, ts=_now(), channel="sms")  # no offer fits
    # its decision sent, its offset not committed
    _crash(engine, monkeypatch, "committing:decision-requests", "decision-requests", nothing)
    _restart(engine, make_request, "decisions",
             lambda ms: any(m["request_id"] == nothing["request_id"] for m in ms))

    ids: dict[str, set[str]] = defaultdict(set)
    records: Counter[str] = Counter()
    for m in _topic(engine, "decisions"):
        ids[m["request_id"]].add(m["decision_id"])
        records[m["request_id"]] += 1
    assert len(ids[nothing["request_id"]]) == 1  # one decision
    assert records[nothing["request_id"]] == 1  # sent once (read_committed)


SHORT_WINDOW = {**ONE_OFFER, "version": "crash-v2", "use_cases": [
    {**ONE_OFFER["use_cases"][0], "attribution_window_s": 2}]}


# a kill while committing aborts the transaction like one after processing: two points tell
# the cases apart (nothing of the lapse committed, or all of it without the local stores)
@pytest.mark.parametrize("point", ["processed", "committed"])
def test_a_lapsed_decision_has_its_delta_once_wherever_the_worker_dies(
        engine, monkeypatch, make_request, point) -> None:
    # an expiry writes no state of its own (partition/state.py): its delta, its lesson and the
    # partition's settled-through mark are what the transaction holds
    engine.publish_config(SHORT_WINDOW)
    decided = engine.decide(make_request(customer=CUSTOMER, ts=_now()))
    engine.stop()
    time.sleep(2.5)  # its window is over in wall time
    # another customer of its partition interacts: event time moves past the window, the
    # timer fires in that batch
    n = engine.settings.partitions
    mover = next(c for c in (f"c-mover-{i}" for i in range(100))
                 if partition_of(c, n) == partition_of(CUSTOMER, n))
    touch = {"event_id": f"ev-{uuid.uuid4().hex}", "customer_id": mover, "ts": _now(),
             "type": "login"}
    _crash(engine, monkeypatch, f"{point}:interactions", "interactions", touch)

    def ignored(ms: list[dict]) -> list[dict]:
        rows = [r for m in ms for r in (outcome_rows(m) if m.get("kind") == "outcomes" else [m])]
        return [r for r in rows if r.get("decision_id") == decided["decision_id"]]

    engine.start()
    engine.collect("delta-metrics", lambda ms: bool(ignored(ms)))
    # the customer read and written again: the lapse is in their stored state, once
    engine.decide(make_request(customer=CUSTOMER, ts=_now()))
    engine.stop()
    assert [r["outcome_type"] for r in ignored(_topic(engine, "delta-metrics"))] == ["ignored"]
    changelog = _changelog(engine, "customers")
    state = CustomerState.decode(changelog[CUSTOMER.encode()], CUSTOMER)
    succ, fail = state.arms.evidence(np.array([offer_key("cashback")], np.uint32), 0, None)
    assert (succ[0], fail[0]) == (0.0, 1.0)  # the ignored offer learned once
    assert state.decision(decided["decision_id"]) is None or \
        state.decision(decided["decision_id"]).settled_by == "timer"
    assert _local(engine, "customers") == _live(changelog)


def _now() -> int:
    return int(time.time() * 1000)


def _topic(engine, name: str) -> list[dict]:
    """Every message of an output topic, read_committed."""
    return [orjson.loads(v) for _, v in read_topic(engine.settings.bootstrap_servers,
                                                   engine.settings.topic(name))
            if v is not None]


def _changelog(engine, table: str) -> dict[bytes, bytes | None]:
    return dict(read_topic(engine.settings.bootstrap_servers,
                           f"{engine.settings.app_id}-{table}-changelog"))


def _live(changelog: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    return {k: v for k, v in changelog.items() if v is not None}


def _local(engine, table: str) -> dict[bytes, bytes]:
    return local_rows(engine.settings.data_dir, table) or {}
