"""Fleet-wide learning through the real broker: 4 partitions, 2 worker processes and the
fleet's learner in a process of its own, killed (SIGKILL) in the middle of the run.

What is checked: decisions go on while the learner is down; the learner restarts from its
snapshot and the learning records after it (each counted once); the fleet publishes one
experiment record per experiment and report window, and its counts are the per-customer
counts of what was sent (customers enrolled, windows settled, conversions: a goal purchase
for the control group and the treatment alike, or a response to a treated decision).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stream_app.experiments import assign, parse_experiment
from stream_app.kafka.topics import create_topics
from stream_app.partition.keys import partition_of
from stream_app.settings import Settings
from stream_app.worker.process import spawn_worker, stop_worker

from .conftest import TWO_OFFERS, Engine

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000
EXPERIMENT = {"id": "exp-it", "use_case": "default", "control": {"share": 0.5},
              "arms": [{"name": "offer", "treatment": {}}], "window_s": 600,
              "goal": {"type": "transaction"}, "min_n": 2}
CONFIG = {**TWO_OFFERS, "version": "it-fleet",
          "use_cases": [*TWO_OFFERS["use_cases"],
                        {"id": "other", "policy": "thompson", "attribution_window_s": 600}],
          "experiments": [EXPERIMENT]}


def _request(cid: str, ts: int, use_case: str = "default") -> dict:
    return {"request_id": f"rq-{uuid.uuid4().hex}", "customer_id": cid, "ts": ts,
            "channel": "app", "use_case": use_case}


def _purchase(cid: str, ts: int) -> dict:
    return {"event_id": f"e-{uuid.uuid4().hex}", "customer_id": cid, "ts": ts,
            "type": "transaction", "channel": "app", "amount": 25.0, "category": "travel",
            "merchant": "m"}


def test_experiment_counts_are_per_customer_across_partitions_and_survive_the_learner(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # windows close by event time only (the records' own, dated in the past): no idle
    # partition moves with the wall clock, no busy consumer counts as catching up
    monkeypatch.setenv("STREAM_APP_IDLE_AFTER_S", "3600")
    monkeypatch.setenv("STREAM_APP_LAG_TOLERANCE_S", "3600")
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"fl{run}-",
        app_id=f"fl-{run}", partitions=4, data_dir=tmp_path / "a" / "state", learner="off")
    create_topics(settings)
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir()
    first = Engine(settings, tmp_path / "a")
    second = Engine(settings.with_(data_dir=tmp_path / "b" / "state"), tmp_path / "b")
    learner_log = open(tmp_path / "learner.log", "ab")

    def start_learner():
        return spawn_worker(first.env(), learner_log, ("-m", "stream_app.cli", "learner"))

    first.publish_config(CONFIG)
    first.start()
    second.start()
    learner = start_learner()
    try:
        customers = [f"c-fl{i}" for i in range(48)]
        exp = parse_experiment(EXPERIMENT)
        arm = {c: assign(exp, c).arm for c in customers}
        assert set(arm.values()) == {"control", "offer"}
        converted: set[str] = set()

        def wave(group: list[str], t: int) -> None:
            requests = [_request(c, t + i * 100) for i, c in enumerate(group)]
            first.send_many("decision-requests", requests)
            ids = {r["request_id"] for r in requests}
            decisions = [d for d in first.collect(
                "decisions", lambda ms: ids <= {m["request_id"] for m in ms}, timeout_s=120)
                if d["request_id"] in ids]
            # a goal purchase by every third customer, whatever the arm, inside the window
            buyers = [c for i, c in enumerate(group) if i % 3 == 0]
            first.send_many("interactions", [_purchase(c, t + 60_000) for c in buyers])
            converted.update(buyers)
            # treated customers answer every other offer (a response: also a conversion)
            offers = [d for d in decisions if d["action"] == "offer"]
            assert {d["customer_id"] for d in offers} == {c for c in group if arm[c] == "offer"}
            answered = offers[::2]
            first.send_many("outcomes", [{
                "outcome_id": f"o-{d['decision_id']}", "decision_id": d["decision_id"],
                "customer_id": d["customer_id"], "ts": d["ts"] + 30_000, "type": "accepted",
                "value": 5.0} for d in answered])
            converted.update(d["customer_id"] for d in answered)
            # processed before anything moves event time past their windows (the input topics
            # are read independently): the outcomes' deltas and the buyers' first scores
            settled_ids = {d["decision_id"] for d in answered}
            first.collect("delta-metrics", lambda ms: settled_ids <= {
                m.get("decision_id") for m in ms if m.get("kind") == "outcome"}, timeout_s=120)
            first.collect("customer-scores", lambda ms: set(buyers) <= {
                m["customer_id"] for m in ms}, timeout_s=120)

        wave(customers[:24], T0)
        learner.kill()  # SIGKILL, mid-run: whatever it had not published is lost with it
        learner.wait()
        wave(customers[24:], T0 + 5_000)  # decisions go on without the learner
        learner = start_learner()
        # close every window: event time moves on every partition (a use case with no
        # experiment, so nobody else is enrolled)
        tick = {}
        for i in range(400):  # one customer per partition
            cid = f"c-tick{i}"
            tick.setdefault(partition_of(cid, 4), cid)
        assert len(tick) == 4
        # twice: a report window closes once every partition has passed it, and the next one
        # holds whatever the first could not wait for
        for at in (T0 + 3_600_000, T0 + 3_900_000):
            first.send_many("decision-requests", [_request(c, at, "other")
                                                  for c in tick.values()])

        def experiment_records(ms: list[dict]) -> list[dict]:
            return [m for m in ms if m.get("kind") == "experiment"
                    and m["experiment_id"] == "exp-it"]

        def settled(ms: list[dict]) -> bool:
            recs = experiment_records(ms)
            return bool(recs) and sum(a["outcomes"] for a in recs[-1]["arms"]) == 48

        try:
            got = experiment_records(first.collect("delta-metrics", settled, timeout_s=120))
        except AssertionError:
            _dump_learning(settings)
            raise
        final = {a["arm"]: a for a in got[-1]["arms"]}
        for name in ("control", "offer"):
            mine = [c for c in customers if arm[c] == name]
            assert final[name]["exposures"] == len(mine), name
            assert final[name]["outcomes"] == len(mine), name
            assert final[name]["responses"] == len([c for c in mine if c in converted]), name
        assert "partition" not in got[-1]
        # one record per experiment and report window
        windows = [r["ts"] for r in got]
        assert len(windows) == len(set(windows)), windows
    finally:
        stop_worker(learner, 30.0)
        learner_log.close()
        first.close()
        second.close()


def _dump_learning(settings: Settings) -> None:
    """What the learning topic holds, per source and lesson kind (printed when the test fails)."""
    import collections

    import orjson

    from stream_app.kafka.client import read_range

    kinds: collections.Counter = collections.Counter()
    for offset, key, value in read_range(settings.bootstrap_servers,
                                         settings.topic("learning"), 0, 0, 10**9, timeout_s=5):
        doc = orjson.loads(value)
        kinds[(doc["source"], f"epoch {doc['epoch']}")] += 1
        for lesson in doc["lessons"]:
            kinds[(doc["source"], lesson["k"])] += 1
    print("learning topic:", sorted(kinds.items()))
