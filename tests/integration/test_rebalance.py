"""A second worker joins: partitions move with their state (through the changelogs the first
worker wrote) and outcomes of decisions made by the first worker are joined by the second."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from stream_app.core.delta import outcome_rows
from stream_app.partition.keys import partition_of
from tests.integration.conftest import Engine

pytestmark = pytest.mark.integration


def _events(engine: Engine, name: str) -> list[dict]:
    """The worker's JSON log records of one event name."""
    out = []
    for line in (engine.workdir / "worker.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            record = orjson.loads(line)
            if record.get("event") == name:
                out.append(record)
    return out


def _held(engine: Engine) -> list[int]:
    """The input partitions the worker was last assigned."""
    assigned = _events(engine, "partitions_assigned")
    return assigned[-1]["partitions"] if assigned else []


def _partition_of(customer: str, partitions: int) -> int:
    return partition_of(customer, partitions)  # the producers' partitioner


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _join(engine: Engine, outcomes: list[dict], timeout_s: float = 120) -> dict[str, dict]:
    """Send outcomes; the delta records of those that were joined to their decision."""
    engine.send_many("outcomes", outcomes)
    ids = {o["decision_id"] for o in outcomes}
    joined: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while not ids <= joined.keys() and time.monotonic() < deadline:
        for _, value in engine.readers["delta-metrics"].poll(0.2):
            for m in outcome_rows(orjson.loads(value)):
                if m.get("decision_id") in ids:
                    joined[m["decision_id"]] = m
    return joined


def _outcome(decision: dict) -> dict:
    return {"outcome_id": f"o-{uuid.uuid4().hex}", "decision_id": decision["decision_id"],
            "customer_id": decision["customer_id"], "ts": decision["ts"] + 1000,
            "type": "clicked", "value": 1.0}


@pytest.mark.parametrize("committed_first", [True, False],
                         ids=["partitions-committed", "outcome-partitions-never-committed"])
def test_outcomes_are_joined_after_partitions_move_to_a_new_worker(engine, make_request,
                                                                    tmp_path, committed_first):
    customers = [f"c-move-{i}" for i in range(24)]
    requests = [make_request(c) for c in customers]
    engine.send_many("decision-requests", requests)
    wanted = {r["request_id"] for r in requests}
    decisions = engine.collect("decisions", lambda ms: wanted <= {m["request_id"] for m in ms},
                               timeout_s=90)
    made = [m for m in decisions if m["request_id"] in wanted]
    assert len({m["decision_id"] for m in made}) == len(customers)
    # committed_first: half of the outcomes before the second worker joins (every partition of
    # every input topic then has committed offsets), half after; otherwise every outcome is
    # sent while the second worker recovers, to partitions the group never committed (see the
    # note below)
    by_partition: dict[int, list[dict]] = {0: [], 1: []}
    for d in made:
        by_partition[_partition_of(d["customer_id"], 2)].append(d)
    assert by_partition[0] and by_partition[1]
    if committed_first:
        before = [_outcome(d) for ds in by_partition.values() for d in ds[::2]]
        after = [_outcome(d) for ds in by_partition.values() for d in ds[1::2]]
        assert len(_join(engine, before)) == len(before)
    else:
        after = [_outcome(d) for d in made]
    time.sleep(2.0)  # > broker_commit_interval: the first worker commits what it processed

    assignments = len(_events(engine, "partitions_assigned"))
    (tmp_path / "b").mkdir()
    second = Engine(engine.settings.with_(data_dir=tmp_path / "b" / "state"), tmp_path / "b")
    second.start()
    try:
        # the first worker handed partitions over (flushed); the second took them
        _wait_for(lambda: _events(engine, "partitions_revoked"), 120, "the first worker to revoke")
        _wait_for(lambda: _held(second), 120, "the second worker to be assigned partitions")
        # the first worker's own new assignment is logged once its stores caught up
        _wait_for(lambda: len(_events(engine, "partitions_assigned")) > assignments, 120,
                  "the first worker's new assignment")
        moved = set(_held(second))
        assert moved and not moved & set(_held(engine))
        # some of the decisions now belong to the second worker, which never made them
        assert any(_partition_of(o["customer_id"], 2) in moved for o in after)
        joined = _join(engine, after)
        missing = [(o["customer_id"], _partition_of(o["customer_id"], 2)) for o in after
                   if o["decision_id"] not in joined]
        assert missing == [], f"not joined (customer, partition): {missing}; moved {moved}"
        assert all(m["actual"] == 1.0 for m in joined.values())
        # none was unknown to the worker that got it, and no further rebalance moved them back
        assert _events(second, "dead_letter") == [] and _events(engine, "dead_letter") == []
        assert set(_held(second)) == moved
    finally:
        second.close()


# Found while writing this test (session 5): when a partition of an input topic the group had
# never committed moved to a new worker, messages produced to it while that worker recovered its
# tables were not all consumed (three runs: one outcome of 24 lost, then every outcome of the
# moved partition, twice). Faust drops what is fetched for a partition still recovering and
# then seeks back to the committed offset; aiokafka's seek_to_committed does not move a
# partition with no committed offset (or offset 0), so the fetch position stayed past the
# dropped records. The worker now seeks such partitions to their start (worker/app.py,
# ``seek_to_committed_or_start``, now ``worker/seeking.py``); the
# "outcome-partitions-never-committed" case checks it.
#
# Found in session 7, fixed in session 8 (that case failed in about half of the full CI runs,
# and in 2 of 7 runs of this module with two busy loops beside it): the first worker kept
# partition 1 and had to
# read its own hand-over checkpoint back from models-changelog[1], and never received it: the
# recovery waited for ever and partition 1's outcomes were never read. Most likely those
# records came in a fetch that returned while the flow was stopped, which Faust drops before
# seeking the committed partitions back (the worker logged that seek 14 ms into the recovery;
# Faust makes it at that point only after such a drop), and nothing sought the changelog
# partition back. Two fixes: the worker persists the acknowledged changelog offsets after
# every write-out (``write_out`` in worker/app.py: a kept partition has nothing to recover),
# and a changelog partition being recovered is sought back to what the recovery applied
# (``worker/seeking.py``).
