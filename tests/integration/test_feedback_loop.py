"""The feedback loop through a real broker: config changes without restart, ignored decisions,
duplicated outcomes counted once, delta metrics and roll-ups."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


def _outcome(decision: dict, kind: str = "clicked", dt: int = 1000, oid: str | None = None) -> dict:
    return {"outcome_id": oid or f"oc-{uuid.uuid4().hex}", "decision_id": decision["decision_id"],
            "customer_id": decision["customer_id"], "ts": decision["ts"] + dt, "type": kind}


def test_a_config_change_changes_decisions_without_a_restart(engine, make_request, two_offers):
    assert engine.decide(make_request())["config_version"] == "it-v1"
    engine.publish_config({**two_offers, "version": "it-v2", "offers": [two_offers["offers"][1]],
                           "routing": [{"when": {"channel": "app"}, "policy": "risk_aversion"}]})
    for _ in range(100):
        d = engine.decide(make_request())
        if d["config_version"] == "it-v2":
            break
    assert d["config_version"] == "it-v2"
    assert d["offer_id"] == "travel" and d["policy"] == "risk_aversion"
    assert d["routed_because"] == "rule 1: channel=app"


def test_an_unanswered_decision_becomes_ignored_after_its_window(engine, make_request, two_offers):
    engine.publish_config({**two_offers, "version": "it-short",
                           "use_cases": [{"id": "default", "attribution_window_s": 60}]})
    for _ in range(100):
        d = engine.decide(make_request(customer="c-quiet", ts=T0))
        if d["config_version"] == "it-short":
            break
    # nothing happens until event time passes the window on this customer's partition
    engine.send("interactions", "c-quiet", {"event_id": "e1", "customer_id": "c-quiet",
                                            "ts": T0 + 59_000, "type": "login"})
    engine.send("interactions", "c-quiet", {"event_id": "e2", "customer_id": "c-quiet",
                                            "ts": T0 + 61_000, "type": "login"})
    got = engine.collect("delta-metrics", lambda ms: any(
        m.get("decision_id") == d["decision_id"] for m in ms))
    mine = [m for m in got if m.get("decision_id") == d["decision_id"]]
    assert len(mine) == 1
    assert mine[0]["ignored"] is True and mine[0]["actual"] == 0.0 and mine[0]["ts"] == T0 + 60_000
    # an outcome after the window is reported late and not learned from again
    engine.send("outcomes", "c-quiet", _outcome(d, "clicked", dt=70_000))
    late = engine.collect("delta-metrics", lambda ms: any(m.get("late") for m in ms))
    assert [m["decision_id"] for m in late if m.get("late")] == [d["decision_id"]]


def test_a_duplicated_outcome_is_counted_once(engine, make_request):
    d = engine.decide(make_request(customer="c-dup", ts=T0))
    dup = _outcome(d, "clicked", oid="oc-same")
    for _ in range(3):
        engine.send("outcomes", "c-dup", dup)
    marker = engine.decide(make_request(customer="c-dup", ts=T0 + 2_000))
    engine.send("outcomes", "c-dup", _outcome(marker, "dismissed"))
    got = engine.collect("delta-metrics", lambda ms: any(
        m.get("decision_id") == marker["decision_id"] for m in ms))
    assert [m["decision_id"] for m in got if m.get("kind") == "outcome"] == [
        d["decision_id"], marker["decision_id"]]


def test_a_redelivered_interaction_is_applied_once(engine, make_request, two_offers):
    # the offer a customer gets says how many interactions its profile counted
    counted = {"fatigue": {"same_offer_s": 0}, "offer_eligibility": {
        "cashback": [{"field": "profile.n_events", "op": "==", "value": 2}],
        "travel": [{"field": "profile.n_events", "op": ">=", "value": 3}]}}
    engine.publish_config({**two_offers, "version": "it-count", "use_cases": [
        {**two_offers["use_cases"][0], "rules": counted}]})
    for _ in range(100):
        if engine.decide(make_request(customer="c-twice", ts=T0))["config_version"] == "it-count":
            break
    login = {"event_id": "ev-once", "customer_id": "c-twice", "ts": T0 + 1_000, "type": "login"}
    for _ in range(3):  # a producer retry / a redelivery: the same event id
        engine.send("interactions", "c-twice", login)
    engine.send("interactions", "c-twice", {**login, "event_id": "ev-next", "ts": T0 + 2_000})
    offers = []
    for i in range(200):  # topics are not ordered against each other: until both are counted
        offers.append(engine.decide(make_request(customer="c-twice", ts=T0 + 3_000))["offer_id"])
        if offers[-1] is not None:
            break
    time.sleep(2.0)  # had the copies counted, the profile would move on to 3 and 4 events
    offers.append(engine.decide(make_request(customer="c-twice", ts=T0 + 3_000))["offer_id"])
    assert offers[-2:] == ["cashback", "cashback"] and "travel" not in offers


def test_delta_metrics_and_rollups_appear_for_a_stream_of_outcomes(engine, make_request):
    sent = []
    for i in range(12):
        d = engine.decide(make_request(customer=f"c-{i % 3}", ts=T0 + i * 1000))
        engine.send("outcomes", d["customer_id"], _outcome(d, "clicked" if i % 2 else "dismissed"))
        sent.append(d["decision_id"])
    # topics are not ordered against each other: let the outcomes land before event time moves on
    got = engine.collect("delta-metrics", lambda ms: sum(m["kind"] == "outcome" for m in ms) >= 12)
    for c in range(3):  # move event time past the first 60 s roll-up window on every partition
        engine.send("interactions", f"c-{c}", {"event_id": f"tick-{c}", "customer_id": f"c-{c}",
                                               "ts": T0 + 200_000, "type": "login"})
    got += engine.collect("delta-metrics", lambda ms: sum(
        m["kind"] == "rollup" and m["dimension"] == "all" for m in ms) >= 1)
    outcomes = [m for m in got if m["kind"] == "outcome"]
    assert sorted(m["decision_id"] for m in outcomes) == sorted(sent)
    assert all(m["delta"] == pytest.approx(m["actual"] - m["predicted"]) for m in outcomes)
    totals = [m for m in got if m["kind"] == "rollup" and m["dimension"] == "all"]
    assert sum(m["count"] for m in totals) == 12  # partition-local windows, each outcome once
    assert sum(m["responses"] for m in totals) == 6
