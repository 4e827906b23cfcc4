"""Personalizer's Rank / Reward bodies mapped onto the contract (no HTTP, no Kafka)."""

from __future__ import annotations

import pytest

from stream_app.core.catalogue import parse_config
from stream_app.gateway.personalizer import (
    BadRequest,
    parse_rank,
    parse_reward,
    ranking,
    reward_outcome,
)
from stream_app.schemas import Contract

CONFIG = parse_config({"version": "t-1", "offers": [{"id": o} for o in ("a", "b", "c", "d")],
                       "use_cases": [{"id": "default"}]})
ACTIONS = [{"id": o} for o in ("a", "b", "c", "d")]


def test_a_call_without_customer_is_one_anonymous_customer_per_event():
    one = parse_rank({"actions": ACTIONS, "eventId": "ev-1"}, CONFIG, "default", "web")
    same = parse_rank({"actions": ACTIONS, "eventId": "ev-1"}, CONFIG, "default", "web")
    other = parse_rank({"actions": ACTIONS, "eventId": "ev-2"}, CONFIG, "default", "web")
    assert one.customer_id == same.customer_id != other.customer_id
    assert one.customer_id.startswith("anon-")
    fresh = parse_rank({"actions": ACTIONS}, CONFIG, "default", "web")
    assert len(fresh.event_id) == 32  # generated when the call has none


def test_the_request_is_a_valid_decision_request_and_customer_ids_leave_the_context():
    call = parse_rank({"actions": ACTIONS, "eventId": "ev-1", "excludedActions": ["a"],
                       "contextFeatures": [{"customerId": 42, "tier": "gold"},
                                           {"userId": "ignored-second", "basket": [3, "x"]}]},
                      CONFIG, "default", "email")
    request = call.request(1_764_000_000_000)
    Contract.load().validate("decision-requests", request)
    assert request["customer_id"] == "42" and request["candidates"] == ["b", "c", "d"]
    assert request["context"] == {"tier": "gold", "basket.0": 3, "basket.1": "x"}
    assert call.baseline == "b"  # the first action not excluded
    assert call.request(1, ("b",))["candidates"] == ["b"]


@pytest.mark.parametrize("body, reason", [
    ({"actions": ACTIONS * 13}, "at most 50"),
    ({"actions": [{"id": "a"}, {"id": "a"}]}, "unique"),
    ({"actions": [{"features": []}]}, "needs an id"),
    ({"actions": ACTIONS, "eventId": "x" * 129}, "eventId"),
    ({"actions": ACTIONS, "deferActivation": "yes"}, "deferActivation"),
    ({"actions": ACTIONS, "contextFeatures": {"a": 1}}, "list of JSON objects"),
    ({"actions": ACTIONS, "contextFeatures": [{f"k{i}": i for i in range(65)}]}, "more than 64"),
    ({"actions": ACTIONS, "contextFeatures": [{"userId": True}]}, "userId"),
    ([1, 2], "JSON object"),
])
def test_what_cannot_be_mapped_is_refused_with_the_reason(body, reason):
    with pytest.raises(BadRequest, match=reason):
        parse_rank(body, CONFIG, "default", "web")


def test_ranking_puts_the_shown_action_first_and_the_removed_ones_at_zero():
    call = parse_rank({"actions": ACTIONS, "excludedActions": ["d"]}, CONFIG, "default", "web")
    # the rules removed "a": the engine ranked only b and c, and chose c with propensity 0.9
    decision = {"propensity": 0.9, "ranked": [{"offer_id": "c"}, {"offer_id": "b"}]}
    out = ranking(call, "c", decision, by_engine=True)
    assert out == [{"id": "c", "probability": 0.9}, {"id": "b", "probability": 0.1},
                   {"id": "a", "probability": 0.0}, {"id": "d", "probability": 0.0}]
    assert ranking(call, "a", None, by_engine=False)[0] == {"id": "a", "probability": 1.0}
    assert all(r["probability"] == 0.0 for r in ranking(call, None, decision, by_engine=True))


def test_rewards_are_numbers_in_minus_one_to_one_and_become_outcomes():
    assert parse_reward({"value": 1}) == 1.0 and parse_reward({"value": -0.5}) == -0.5
    for bad in ({"value": 1.5}, {"value": True}, {"value": "1"}, {}, [1]):
        with pytest.raises(BadRequest):
            parse_reward(bad)
    outcome = reward_outcome("dc-1", "c-1", -0.5, 1_764_000_000_000, 2)
    Contract.load().validate("outcomes", outcome)
    assert (outcome["type"], outcome["outcome_id"]) == ("dismissed", "oc-dc-1-2")
