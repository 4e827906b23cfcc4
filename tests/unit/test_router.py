"""Algorithm router: ordered rules, first match wins, fallback to the use case, strict parsing."""

from __future__ import annotations

import pytest

from stream_app.core.catalogue import ConfigError, parse_config
from stream_app.core.router import Router

BASE = {
    "version": "v1",
    "offers": [{"id": "cashback"}, {"id": "flash-sale", "framing": "urgency"}],
    "use_cases": [
        {"id": "default", "policy": "thompson", "params": {"prior_alpha": 2.0}},
        {"id": "retention", "policy": "epsilon_greedy"},
    ],
}


def router(routing):
    return Router.from_config(parse_config({**BASE, "routing": routing}))


def test_first_matching_rule_wins_even_when_a_later_rule_is_more_specific():
    r = router([
        {"when": {"channel": "sms"}, "policy": "ucb"},
        {"when": {"channel": "sms", "segment": "young"}, "policy": "risk_aversion"},
    ])
    route = r.route("default", segment="young", channel="sms")
    assert (route.policy, route.because) == ("ucb", "rule 1: channel=sms")


def test_a_rule_matches_only_when_every_condition_matches():
    r = router([
        {"when": {"channel": "sms", "segment": "young"}, "policy": "risk_aversion"},
        {"when": {"objective": "revenue"}, "policy": "prospect_theory",
         "params": {"loss_aversion": 2.0}},
    ])
    assert r.route("default", segment="old", channel="sms").policy == "thompson"
    route = r.route("default", segment="old", channel="sms", objective="revenue")
    assert route.policy == "prospect_theory"
    assert dict(route.params) == {"loss_aversion": 2.0}
    assert route.because == "rule 2: objective=revenue"


def test_list_values_match_any_and_the_reason_names_the_request_value():
    r = router([{"name": "messaging", "when": {"channel": ["sms", "whatsapp"],
                                                "use_case": ["retention"]}, "policy": "ucb"}])
    route = r.route("retention", channel="whatsapp")
    assert route.policy == "ucb"
    assert route.because == "rule 1 (messaging): use_case=retention, channel=whatsapp"
    assert r.route("default", channel="whatsapp").policy == "thompson"


def test_missing_request_value_never_matches_a_condition_on_it():
    r = router([{"when": {"segment": "young"}, "policy": "ucb"}])
    assert r.route("default", segment=None, channel="app").policy == "thompson"


def test_fallback_is_the_use_case_policy_and_params():
    r = router([{"when": {"channel": "voice"}, "policy": "ucb"}])
    route = r.route("default", channel="app")
    assert (route.policy, dict(route.params), route.because) == (
        "thompson", {"prior_alpha": 2.0}, "use case default")
    assert r.route("retention").policy == "epsilon_greedy"


def test_empty_when_is_a_catch_all():
    r = router([{"when": {"segment": "vip"}, "policy": "ucb"}, {"policy": "risk_aversion"}])
    route = r.route("default", segment="young")
    assert (route.policy, route.because) == ("risk_aversion", "rule 2: always")


def test_no_routing_section_routes_every_request_to_its_use_case():
    r = Router.from_config(parse_config(BASE))
    assert r.rules == ()
    assert r.route("retention", channel="sms").because == "use case retention"


def test_unknown_use_case_raises_config_error():
    with pytest.raises(ConfigError, match="unknown use case 'nope'"):
        router([]).route("nope")


def test_parsed_rules_are_immutable():
    r = router([{"when": {"channel": "sms"}, "policy": "ucb", "params": {"c": 1.0}}])
    with pytest.raises(TypeError):
        r.route("default", channel="sms").params["c"] = 5.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        r.rules[0].policy = "thompson"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("routing", "reason"),
    [
        ({"when": {}}, "routing must be a list"),
        (["ucb"], "rule 1 must be an object"),
        ([{"policy": "ucb", "priority": 1}], "unknown fields"),
        ([{"when": {"country": "nl"}, "policy": "ucb"}], "cannot match on"),
        ([{"when": {"segment": []}, "policy": "ucb"}], "non-empty list"),
        ([{"when": {"segment": ["a", 3]}, "policy": "ucb"}], "non-empty strings"),
        ([{"when": {"channel": "SMS"}, "policy": "ucb"}], "unknown channels"),
        ([{"when": {"use_case": "onboarding"}, "policy": "ucb"}], "unknown use cases"),
        ([{"when": {"channel": "sms"}}], "policy must be a non-empty string"),
        ([{"when": "sms", "policy": "ucb"}], "when must be an object"),
        ([{"policy": "greedy"}], "unknown policy 'greedy'"),
        ([{"policy": "ucb", "params": {"width": 2}}], "no parameter 'width'"),
        ([{"policy": "ucb", "params": [1]}], "params must be an object"),
        ([{"policy": "ucb"}, {"policy": "ucb", "name": 7}], "rule 2: name must be a string"),
    ],
)
def test_bad_routing_config_raises_config_error(routing, reason):
    with pytest.raises(ConfigError, match=reason):
        router(routing)
