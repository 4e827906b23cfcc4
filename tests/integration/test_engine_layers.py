"""Through the real broker: shadow challengers judged on delta-metrics, and profiles, segments,
scores and models that survive a worker restart."""

from __future__ import annotations

import re
import time
import uuid

import jsonschema
import orjson
import pytest

from stream_app.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


def _schema(topic: str) -> dict:
    return orjson.loads((PROJECT_ROOT / "schemas" / f"{topic}.v1.json").read_bytes())


def _request(customer: str, ts: int) -> dict:
    return {"request_id": f"rq-{uuid.uuid4().hex}", "customer_id": customer, "ts": ts,
            "channel": "app", "use_case": "default"}


def _use_config(engine, doc: dict, make_request) -> None:
    engine.publish_config(doc)
    for _ in range(60):
        if engine.decide(make_request(customer="c-probe"))["config_version"] == doc["version"]:
            return
    raise AssertionError("the new config never took effect")


def test_a_shadow_challenger_gets_off_policy_estimates_on_delta_metrics(engine, two_offers,
                                                                        make_request):
    doc = {**two_offers, "version": "it-shadow"}
    doc["use_cases"] = [{**doc["use_cases"][0], "challengers": ["ucb"]}]
    _use_config(engine, doc, make_request)

    customers = [f"c-sh{i}" for i in range(16)]
    requests = [_request(customers[i % 16], T0 + i * 500) for i in range(64)]
    engine.send_many("decision-requests", requests)
    ids = {r["request_id"] for r in requests}
    decisions = [m for m in engine.collect(
        "decisions", lambda ms: ids <= {m["request_id"] for m in ms}) if m["request_id"] in ids]
    assert all(d["shadow"] is not None and 0 <= d["shadow"]["ucb"] <= 1 for d in decisions)
    engine.send_many("outcomes", [
        {"outcome_id": f"o-{d['decision_id']}", "decision_id": d["decision_id"],
         "customer_id": d["customer_id"], "ts": d["ts"] + 1_000,
         "type": "clicked" if d["offer_id"] == "travel" else "dismissed"} for d in decisions])
    decided = {d["decision_id"] for d in decisions}
    engine.collect("delta-metrics", lambda ms: decided <= {m.get("decision_id") for m in ms})
    # then move event time on every customer's partition past the roll-up window (topics are
    # consumed independently, so only now is every outcome known to have been learned from)
    engine.send_many("decision-requests", [_request(c, T0 + 300_000) for c in customers])

    def shadow_records(ms: list[dict]) -> list[dict]:
        return [m for m in ms if m.get("kind") == "shadow"]

    # the fleet's learner publishes one record per challenger per report window, for the
    # outcomes of every partition
    got = engine.collect("delta-metrics",
                         lambda ms: any(r["n"] >= len(decisions) for r in shadow_records(ms)))
    records = shadow_records(got)
    for r in records:
        jsonschema.validate(r, _schema("delta-metrics"))
        assert r["champion"]["policy"] == "thompson" and r["challenger"]["policy"] == "ucb"
        assert r["use_case"] == "default" and r["anytime_valid"] is True
        assert set(r["challenger"]) >= {"ips", "snips", "ess"}
        assert r["promotion"]["due"] is False  # 64 decisions: far too few to promote anything
        assert "partition" not in r
    assert records[-1]["n"] == len(decisions)


def test_profiles_segments_scores_and_models_survive_a_restart(engine, make_request):
    customers = [f"c-p{i}" for i in range(140)]
    events = []
    for round_ in range(22):  # the segmenter starts once 125 customers had 10 events
        for i, cid in enumerate(customers):
            ts = T0 + (round_ * 140 + i) * 60_000
            event = {"event_id": f"e-{round_}-{i}", "customer_id": cid, "ts": ts,
                     "type": "transaction" if round_ % 2 else "login", "channel": "app"}
            if round_ % 2:
                event.update(amount=10.0 + (i % 3) * 40.0,
                             category=("groceries", "travel", "dining")[i % 3])
            events.append(event)
    engine.send_many("interactions", events)

    scores = engine.collect("customer-scores",
                            lambda ms: {m["customer_id"] for m in ms} >= set(customers),
                            timeout_s=180)
    for s in scores[:20]:
        jsonschema.validate(s, _schema("customer-scores"))
    now = T0 + 22 * 140 * 60_000
    probe = customers[:12]
    # the segments come from the fleet's snapshot (one segment space for every partition):
    # decide until it has them
    before = {}
    for _ in range(60):
        before = {c: engine.decide(_request(c, now)) for c in probe}
        if all(re.fullmatch(r"\d+", d["segment"]) for d in before.values()):
            break
        now += 1_000
    assert all(re.fullmatch(r"\d+", d["segment"]) for d in before.values()), before
    version_before = _fleet_version(before[probe[0]]["model_version"])
    assert version_before >= 1  # a snapshot of the fleet's learner, not a fresh one

    engine.stop()
    engine.start()
    after = {c: engine.decide(_request(c, now + 1_000)) for c in probe}
    assert {c: d["segment"] for c, d in after.items()} == {c: d["segment"] for c, d in before.items()}
    # the fleet's models were restored from the learner's snapshot topic, not learned afresh
    assert _fleet_version(after[probe[0]]["model_version"]) >= version_before


def _fleet_version(model_version: str) -> int:
    return int(re.search(r"fleet:(\d+)", model_version).group(1))


def test_a_clean_stop_publishes_what_the_learner_learned_since_its_last_snapshot(
        engine, make_request):
    """With no periodic snapshot due (an hour apart), a stop publishes the learner's last
    snapshot; the restarted learner resumes from it, with nothing to read again."""
    engine.stop()
    engine.settings = engine.settings.with_(snapshot_interval_s=3600.0)
    engine.start()
    decided = [engine.decide(make_request(f"c-stop-{i}")) for i in range(16)]
    outcomes = [{"outcome_id": f"o-{uuid.uuid4().hex}", "decision_id": d["decision_id"],
                 "customer_id": d["customer_id"], "ts": d["ts"] + 1000, "type": "clicked",
                 "value": 1.0} for d in decided]
    engine.send_many("outcomes", outcomes)
    ids = {o["decision_id"] for o in outcomes}
    engine.collect("delta-metrics", lambda ms: ids <= {m.get("decision_id") for m in ms
                                                         if m.get("kind") == "outcome"})
    log = engine.workdir / "worker.log"

    def logged(name: str, start: int = 0) -> list[dict]:
        lines = log.read_text(errors="replace").splitlines()[start:]
        return [r for r in (orjson.loads(x) for x in lines if x.startswith("{") and name in x)
                if r.get("event") == name]

    _wait(lambda: logged("learner_started"), "the learner to start")
    time.sleep(1.0)  # the learner has the outcomes' lessons (sent with their deltas)
    start = len(log.read_text(errors="replace").splitlines())
    engine.stop()
    published = logged("snapshot_published", start)
    assert published, "no snapshot at the stop"
    engine.start()
    after = [engine.decide(make_request(d["customer_id"])) for d in decided]
    assert {_fleet_version(d["model_version"]) for d in after} == {published[-1]["version"]}
    engine.send_many("outcomes", [{**o, "outcome_id": f"o-{uuid.uuid4().hex}",
                                   "decision_id": d["decision_id"], "ts": d["ts"] + 1000}
                                  for o, d in zip(outcomes, after)])
    started = _wait(lambda: logged("learner_started", start), "the learner to restart")
    assert started[-1]["version"] == published[-1]["version"]
    assert started[-1]["caught_up"] == 0  # its snapshot covered everything committed
    engine.stop()
    engine.settings = engine.settings.with_(snapshot_interval_s=1.0)
    engine.start()


def _wait(probe, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
