"""The dashboard's board: hand-counted totals, rates, lifts and shares; unreadable messages change
nothing; experiment records per partition and fleet-wide; dead letters by reason; the oracle
line equals the traffic tool's scoring of the same decisions."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.dashboard.board import MAX_GROUPS, NO_ACTION, OTHER, Board
from stream_app.dashboard.oracle import SimulatorOracle
from stream_app.dashboard.rates import Z95
from stream_app.simulator import Population, Simulation


def decision(ts, offer, policy="thompson", arm=None, **extra):
    return {"decision_id": f"dc-{ts}-{offer}", "request_id": f"rq-{ts}", "customer_id": "c-1",
            "ts": ts, "channel": "app", "action": "offer" if offer else "no_action",
            "offer_id": offer, "policy": policy,
            "experiment": {"id": "e", "arm": arm} if arm else None, **extra}


def row(ts, offer, actual, predicted=0.5, policy="thompson", arm=None, **extra):
    return {"kind": "outcome", "ts": ts, "decision_id": f"dc-{ts}", "customer_id": "c-1",
            "offer_id": offer, "policy": policy, "use_case": "default", "experiment_arm": arm,
            "predicted": predicted, "actual": actual, "delta": actual - predicted, "value": 0.0,
            "ignored": False, "late": False, **extra}


def feed(board: Board, topic: str, *messages) -> None:
    for m in messages:
        board.add(topic, m if isinstance(m, bytes) else orjson.dumps(m))


def test_totals_rates_lifts_and_shares_by_hand():
    board = Board()
    feed(board, "decisions", decision(1_000, "a"), decision(2_000, "b"), decision(3_000, None),
         decision(4_000, "a", policy="ucb"))
    feed(board, "delta-metrics", {"kind": "outcomes", "ts": 9_000, "partition": 0, "outcomes": [
        row(5_000, "a", 1.0, 0.6), row(6_000, "a", 0.0, 0.2), row(7_000, "b", 1.0, 0.4),
        row(8_000, "b", 0.0, 0.3, ignored=True),
        row(9_000, "a", 1.0, 0.9, late=True)]})  # late: counted, kept out of every rate
    s = board.summary()
    t = s["totals"]
    assert (t["decisions"], t["offers"], t["no_action"]) == (4, 3, 1)
    assert (t["outcomes"], t["late"], t["settled"], t["responses"], t["ignored"]) == (5, 1, 4, 2, 1)
    assert t["response_rate"] == 0.5
    assert t["mean_predicted"] == pytest.approx((0.6 + 0.2 + 0.4 + 0.3) / 4)
    offers = {r["name"]: r for r in s["offers"]}
    assert set(offers) == {"a", "b"}  # a no-action is no offer
    assert (offers["a"]["decisions"], offers["a"]["share"]) == (2, 0.5)
    assert (offers["b"]["outcomes"], offers["b"]["responses"]) == (2, 1)
    assert offers["a"]["response_rate"] == 0.5 and offers["a"]["lift"] == pytest.approx(0.0)
    policies = {r["name"]: r for r in s["policies"]}
    assert policies["thompson"]["decisions"] == 3 and policies["ucb"]["decisions"] == 1
    assert s["event_time_ms"] == 9_000 and s["read"] == {"decisions": 4, "delta-metrics": 1}


def test_lift_is_relative_to_the_rate_of_all_outcomes():
    board = Board()
    rows = [row(1, "a", 1.0), row(2, "a", 1.0), row(3, "a", 0.0), row(4, "b", 0.0),
            row(5, "b", 1.0), row(6, "b", 0.0)]
    feed(board, "delta-metrics", {"kind": "outcomes", "ts": 6, "outcomes": rows})
    offers = {r["name"]: r for r in board.summary()["offers"]}
    # all: 3 of 6 = 0.5; a: 2/3 -> lift 2/3 / 0.5 - 1 = +1/3; b: 1/3 -> -1/3
    assert offers["a"]["lift"] == pytest.approx(1 / 3)
    assert offers["b"]["lift"] == pytest.approx(-1 / 3)


def test_intervals_are_the_roots_of_the_score_test():
    board = Board()
    feed(board, "delta-metrics", {"kind": "outcomes", "ts": 1, "outcomes": [
        row(i, "a", float(i % 4 == 0)) for i in range(40)]})
    t = board.summary()["totals"]
    p_hat, n = 10 / 40, 40
    for bound in t["interval"]:  # Wilson: |p_hat - p| = z sqrt(p (1 - p) / n) at both ends
        assert abs(p_hat - bound) == pytest.approx(Z95 * math.sqrt(bound * (1 - bound) / n))
    assert t["interval"][0] < p_hat < t["interval"][1]


def test_unreadable_messages_change_nothing_but_their_count():
    board = Board()
    feed(board, "decisions", b"not json", b"[1, 2]", {"ts": 1, "action": "offer"},  # no policy
         decision(-5, "a"), {**decision(1, "a"), "experiment": "e"})
    feed(board, "delta-metrics", {"kind": "outcomes", "ts": 5, "outcomes": [
        row(1, "a", 1.0), row(2, "a", 7.0)]},  # one bad row: the batch is refused whole
         {"kind": "outcomes", "ts": 5, "outcomes": [row(3, "a", 1.0, predicted=float("nan"))]},
         {"kind": 3, "ts": 5}, {"kind": "experiment", "ts": 5, "experiment_id": "e", "arms": []},
         {**experiment(5), "srm": "flagged"})
    feed(board, "dead-letter", {"source": {"topic": "x"}}, b"")
    s = board.summary()
    assert s["unreadable"] == {"decisions": 5, "delta-metrics": 5, "dead-letter": 2}
    assert s["totals"]["decisions"] == s["totals"]["outcomes"] == s["totals"]["dead_letters"] == 0
    assert s["offers"] == [] and s["experiments"] == [] and s["series"]["start_ms"] == []
    feed(board, "decisions", decision(10, "a"))  # and it goes on counting
    assert board.summary()["totals"]["decisions"] == 1


def experiment(ts, partition=None, a=(10, 5, 2.0), b=(10, 5, 4.0), **extra):
    arms = [{"arm": "A", "control": False, "exposures": a[0], "outcomes": a[1],
             "responses": a[2], "response_rate": a[2] / a[1], "response_rate_cs": [0.1, 0.7]},
            {"arm": "B", "control": False, "exposures": b[0], "outcomes": b[1],
             "responses": b[2], "response_rate": b[2] / b[1], "response_rate_cs": [0.4, 0.95],
             "lift": {"diff": 0.4, "cs": [-0.2, 0.9], "relative": 1.0, "significant": False}}]
    rec = {"kind": "experiment", "ts": ts, "experiment_id": "e", "use_case": "default",
           "baseline": "A", "alpha": 0.05, "arms": arms, "srm": {"flagged": False},
           "alarm": False, **extra}
    if partition is not None:
        rec["partition"] = partition
    return rec


def test_a_fleet_wide_experiment_record_is_shown_with_its_intervals():
    board = Board()
    feed(board, "delta-metrics", experiment(10), experiment(5, a=(99, 99, 0.0)))  # older: ignored
    [e] = board.summary()["experiments"]
    assert e["anytime_valid"] and e["sources"] == 1 and e["ts"] == 10
    a, b = e["arms"]
    assert (a["outcomes"], a["interval"], a["lift"]) == (5, [0.1, 0.7], None)
    assert (b["lift"], b["lift_interval"], b["significant"]) == (0.4, [-0.2, 0.9], False)


def test_experiment_records_of_partitions_are_added_up_without_intervals():
    board = Board()
    feed(board, "delta-metrics", experiment(10, 0), experiment(10, 1, a=(6, 5, 3.0),
                                                               b=(6, 5, 1.0), alarm=True))
    [e] = board.summary()["experiments"]
    assert not e["anytime_valid"] and e["sources"] == 2 and e["alarm"]
    a, b = e["arms"]
    # A: 5 of 10 responded over both partitions = 0.5; B: 5 of 10 = 0.5 -> lift 0 points
    assert (a["exposures"], a["outcomes"], a["response_rate"]) == (16, 10, 0.5)
    assert (b["response_rate"], b["lift"]) == (0.5, 0.0)
    assert b["interval"] is None and b["lift_interval"] is None
    assert board.summary()["totals"]["experiment_alarms"] == 1


def test_dead_letters_by_reason_and_drift_alarms():
    board = Board()
    letters = [{"reason": f"unknown decision_id 'dc-{i}' for this customer", "value_b64": "",
                "source": {"topic": "outcomes", "partition": 0, "offset": i}, "failed_at": i}
               for i in range(3)]
    letters.append({"reason": "not JSON: unexpected character", "value_b64": "",
                    "source": {"topic": "decision-requests", "partition": 1, "offset": 9},
                    "failed_at": 9})
    feed(board, "dead-letter", *letters)
    feed(board, "delta-metrics", {"kind": "drift", "ts": 50, "model": "propensity",
                                  "candidate": 1, "detector": "adwin", "error_before": 0.1,
                                  "error_after": 0.3, "action": "reset"})
    s = board.summary()
    assert s["dead_letters"]["by_reason"] == [{"reason": "unknown decision_id", "count": 3},
                                              {"reason": "not JSON", "count": 1}]
    assert s["dead_letters"]["recent"][0]["offset"] == 9  # the latest first
    assert s["totals"]["dead_letters"] == 4 and s["totals"]["drift_alarms"] == 1
    assert s["drift"]["recent"][0]["model"] == "propensity"


def test_exposure_shares_per_bucket_add_up_to_one():
    board = Board()
    feed(board, "decisions", *[decision(ts, offer) for ts, offer in
                               [(0, "a"), (100, "b"), (200, None), (1_500, "a"), (2_100, "b")]])
    series = board.summary()["series"]
    assert series["width_ms"] == 1_000 and series["start_ms"] == [0, 1_000, 2_000]
    shares = series["exposure_share"]
    assert shares["a"] == pytest.approx([1 / 3, 1.0, 0.0])
    assert shares[NO_ACTION] == pytest.approx([1 / 3, 0.0, 0.0])
    for i in range(3):
        assert sum(v[i] for v in shares.values()) == pytest.approx(1.0)


def test_groups_beyond_the_cap_are_counted_together():
    board = Board()
    feed(board, "decisions", *[decision(i, f"offer-{i}") for i in range(MAX_GROUPS + 20)])
    offers = {r["name"]: r for r in board.summary()["offers"]}
    assert len(offers) == MAX_GROUPS + 1 and offers[OTHER]["decisions"] == 20


def test_the_oracle_line_is_the_traffic_tools_scoring():
    """Decisions of a seeded run, fed in another interleaving of customers than the reference
    (which answers them in request order, as traffic.py does): the same figures. A no-action
    scores 0 against the oracle's best; random is the mean over the request's candidates."""
    reference = Simulation(Population(seed=11, n_customers=60), days=1.0, seed=11)
    ids = reference.population.offer_ids
    decisions, chosen, best, random = [], 0.0, 0.0, 0.0
    for k, request in enumerate(reference.requests()):
        offers = reference.candidates(request)
        probs = {o: reference.true_prob(request, o) for o in ids}
        best += max(probs.values())
        random += sum(probs[o] for o in offers) / len(offers) if offers else 0.0
        if k % 5 == 4 or not offers:
            d = {**request, "decision_id": f"dc-{k}", "action": "no_action", "offer_id": None,
                 "policy": "thompson"}
        else:
            d = {**request, "decision_id": f"dc-{k}", "action": "offer",
                 "offer_id": offers[k % len(offers)], "policy": "thompson"}
            chosen += probs[d["offer_id"]]
            reference.respond(d)
        decisions.append(d)
    # by customer, then time: each customer's decisions keep their order, customers do not
    shuffled = sorted(decisions, key=lambda d: (d["customer_id"][::-1], d["ts"]))
    board = Board(SimulatorOracle(seed=11, customers=60, days=1.0))
    feed(board, "decisions", *shuffled, decisions[0])  # a decision read twice counts once
    o = board.summary()["oracle"]
    n = len(decisions)
    assert o["decisions"] == n > 30 and o["foreign"] == 0
    assert o["of_oracle"] == pytest.approx(chosen / best)
    assert (o["oracle_rate"], o["random_rate"]) == (pytest.approx(best / n),
                                                    pytest.approx(random / n))
    assert o["first_half"]["decisions"] + o["second_half"]["decisions"] == n
    feed(board, "decisions", {**decisions[1], "request_id": "rq-elsewhere-1", "action": "offer",
                              "offer_id": "grocery_cashback"})
    assert board.summary()["oracle"]["foreign"] == 1
    assert Board().summary()["oracle"] is None  # no simulator, no oracle


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=12)
_fields = st.sampled_from(["ts", "kind", "action", "offer_id", "policy", "experiment", "arm",
                           "outcomes", "predicted", "actual", "late", "arms", "experiment_id",
                           "reason", "source", "partition", "srm", "lift", "exposures"])
_messages = st.dictionaries(_fields, _json, max_size=8) | _json


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["decisions", "delta-metrics", "dead-letter"]),
                          _messages), max_size=12))
def test_no_message_breaks_the_board_or_its_summary(messages):
    board = Board()
    for topic, message in messages:
        board.add(topic, orjson.dumps(message))
        board.add(topic, orjson.dumps(message)[:-1])  # cut short: not JSON
    summary = orjson.loads(orjson.dumps(board.summary()))
    assert sum(summary["read"].values()) == 2 * len(messages)
