"""Rule configuration: the condition language and ``parse_rules`` (incl. one-line errors)."""

from __future__ import annotations

import pytest

from stream_app.core.catalogue import ConfigError, parse_config
from stream_app.rules import parse_condition, parse_rules, parse_use_case_rules
from stream_app.rules.config import (
    HISTORY_FLOOR,
    OUTBOUND_CHANNELS,
    contacts_bound,
    history_capacity_for,
)
from stream_app.rules.history import MAX_CAPACITY


@pytest.mark.parametrize(
    ("op", "value", "holds", "fails"),
    [
        ("==", 5, 5, 6),
        ("!=", 5, 6, 5),
        ("<", 5, 4, 5),
        ("<=", 5, 5, 6),
        (">", 5, 6, 5),
        (">=", 5, 5, 4),
        ("in", ["gold", "silver"], "gold", "bronze"),
        ("not_in", ["gold", "silver"], "bronze", "gold"),
    ],
)
def test_each_operator_holds_and_fails(op, value, holds, fails):
    cond = parse_condition({"field": "profile.x", "op": op, "value": value})
    assert cond.holds({"profile": {"x": holds}})
    assert not cond.holds({"profile": {"x": fails}})
    assert not cond.holds({"profile": {}}), "a missing field must fail closed"
    assert not cond.holds({"profile": {"x": None}}), "None counts as missing"


def test_exists_and_absent():
    present = parse_condition({"field": "context.vip", "op": "exists"})
    absent = parse_condition({"field": "context.vip", "op": "exists", "value": False})
    assert present.holds({"context": {"vip": 0}}) and not present.holds({"context": {}})
    assert absent.holds({"context": {}}) and not absent.holds({"context": {"vip": "y"}})


def test_incomparable_values_fail_closed():
    adult = parse_condition({"field": "context.age", "op": ">=", "value": 18})
    assert not adult.holds({"context": {"age": "thirty"}})  # str >= int raises: false, no crash
    assert not adult.holds({"context": {"age": True}})  # a flag is not a number here
    flag = parse_condition({"field": "context.flag", "op": "==", "value": True})
    assert not flag.holds({"context": {"flag": 1}})
    assert flag.holds({"context": {"flag": True}})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"field": "age", "op": ">=", "value": 1}, "field must be one of"),
        ({"field": "secret.age", "op": ">=", "value": 1}, "field must be one of"),
        ({"field": "context.age", "op": "~=", "value": 1}, "op must be one of"),
        ({"field": "context.age", "op": ">="}, "needs a value"),
        ({"field": "context.seg", "op": "in", "value": "gold"}, "needs a list"),
        ({"field": "context.seg", "op": "==", "value": [1]}, "needs a scalar"),
        ({"field": "context.a", "op": "==", "value": 1, "x": 2}, "unknown keys"),
        ({"field": "context.a", "op": "exists", "value": 1}, "boolean"),
    ],
)
def test_bad_conditions_raise_one_line(doc, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_condition(doc)
    assert "\n" not in str(info.value)


def test_defaults_fail_closed_and_match_the_design():
    rules = parse_rules({})
    assert rules.consent.channels == OUTBOUND_CHANNELS  # consent needed where we reach out
    assert rules.same_offer_s == 86400.0  # "not the same offer twice in 24 h"
    assert rules.check_validity and rules.quiet_hours is None and rules.global_cap is None
    assert rules.cooldown_s == 0.0 and not rules.channel_caps


def test_full_rule_set_parses():
    rules = parse_rules(
        {
            "eligibility": [{"field": "context.age", "op": ">=", "value": 18}],
            "offer_eligibility": {"a": [{"field": "profile.score", "op": ">", "value": 600}]},
            "consent": {"channels": ["sms"], "field": "opt_in_{channel}"},
            "fatigue": {
                "channel_caps": {"sms": {"max": 2, "window_s": 86400}},
                "global_cap": {"max": 5, "window_s": 604800},
                "cooldown_s": 3600,
                "same_offer_s": 0,
            },
            "quiet_hours": {"start": "21:30", "end": "08:15", "channels": ["sms", "voice"]},
            "inventory": ["a"],
            "history_capacity": 32,
        },
        offer_ids=["a", "b"],
    )
    assert rules.consent.flag("sms") == "opt_in_sms"
    assert rules.channel_caps["sms"].window_ms == 86_400_000
    assert rules.global_cap.max == 5 and rules.cooldown_s == 3600.0 and rules.same_offer_s == 0.0
    assert (rules.quiet_hours.start_min, rules.quiet_hours.end_min) == (21 * 60 + 30, 8 * 60 + 15)
    assert rules.inventory_limited("a") and not rules.inventory_limited("b")
    assert rules.offer_eligibility["a"][0].field == "profile.score"
    assert parse_rules({"inventory": "*"}).inventory_limited("anything")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"fatigue": {"cooldown_s": -1}}, "cooldown_s must be a number >= 0"),
        ({"fatigue": {"channel_caps": {"fax": {"max": 1, "window_s": 1}}}}, "unknown keys"),
        ({"fatigue": {"global_cap": {"max": 1}}}, "global_cap must be"),
        ({"fatigue": {"global_cap": {"max": 1, "window_s": 0}}}, "window_s must be a number > 0"),
        ({"fatigue": {"global_cap": {"max": 100, "window_s": 9}}, "history_capacity": 50},
         "exceeds history_capacity 50"),
        ({"fatigue": {"global_cap": {"max": 2000, "window_s": 9}}}, "exceeds the longest"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "HH:MM"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "must differ"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "channels": ["fax"]}}, "unknown chan"),
        ({"inventory": ["nope"]}, "unknown offers"),
        ({"inventory": "all"}, "list of offer ids"),
        ({"offer_eligibility": {"nope": []}}, "unknown offers"),
        ({"consent": {"field": "consent"}}, "{channel}"),
        ({"eligibility": {"field": "context.a"}}, "must be a list"),
        ({"check_validity": "yes"}, "true or false"),
        ({"history_capacity": 0}, "history_capacity"),
        ({"surprise": 1}, "unknown keys"),
    ],
)
def test_bad_rules_raise_one_line(doc, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_rules(doc, offer_ids=["a"])
    assert "\n" not in str(info.value)


def test_use_case_rules_from_engine_config_name_the_use_case():
    cfg = parse_config(
        {
            "version": "v1",
            "offers": [{"id": "a"}],
            "use_cases": [
                {"id": "ok", "rules": {"fatigue": {"cooldown_s": 60}}},
                {"id": "plain"},
            ],
        }
    )
    rules = parse_use_case_rules(cfg)
    assert rules["ok"].cooldown_s == 60.0 and rules["plain"] == parse_rules({}, ["a"])
    bad = parse_config(
        {"version": "v2", "offers": [{"id": "a"}],
         "use_cases": [{"id": "broken", "rules": {"inventory": ["zz"]}}]}  # fmt: skip
    )
    with pytest.raises(ConfigError, match="use case 'broken': rules.inventory names unknown"):
        parse_use_case_rules(bad)


def test_rules_and_experiments_import_no_kafka_client():
    """The decision core stays Kafka-free: importing it loads no Kafka or Faust module."""
    import subprocess
    import sys

    code = (
        "import sys, stream_app.rules, stream_app.experiments\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'aiokafka', 'confluent_kafka', 'kafka')]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- how many contacts a history keeps, derived from the rules that read it --------------------

DAY_S, WEEK_S = 86_400, 604_800
OFFERS = [f"o{i}" for i in range(30)]


def _capacity(doc: dict, n_offers: int = 20) -> int:
    return parse_rules(doc, offer_ids=OFFERS[:n_offers]).history_capacity


def test_default_rules_keep_one_contact_per_offer_at_least_the_floor():
    # "not the same offer twice in 24 h" is the only rule reading the history: in any 24 h a
    # customer gets each offer at most once, so the last n_offers contacts hold all of them
    assert _capacity({}, 20) == 20
    assert _capacity({}, 3) == HISTORY_FLOOR == 8
    assert parse_rules({}).history_capacity == MAX_CAPACITY  # offers unknown: nothing bounds


def test_a_global_cap_bounds_what_every_window_within_it_can_hold():
    # 5 a week: "same offer in 24 h" and an sms cap over 2 days need at most 5 contacts
    doc = {"fatigue": {"global_cap": {"max": 5, "window_s": WEEK_S},
                       "channel_caps": {"sms": {"max": 2, "window_s": 2 * DAY_S}}}}
    assert _capacity(doc, 30) == HISTORY_FLOOR
    # 12 a week: the global cap needs its last 12
    doc["fatigue"]["global_cap"] = {"max": 12, "window_s": WEEK_S}
    assert _capacity(doc, 30) == 12
    # a channel cap over 4 weeks, with 12 a week: up to 4 x 12 contacts fall in its window
    doc["fatigue"]["channel_caps"]["sms"] = {"max": 2, "window_s": 4 * WEEK_S}
    assert _capacity(doc, 30) == 48


def test_a_cooldown_and_the_same_offer_rule_bound_longer_windows_per_started_window():
    # a 6 h cool-down: at most 4 contacts in 24 h, 28 in a week (the sms cap's window)
    doc = {"fatigue": {"cooldown_s": 6 * 3600, "same_offer_s": 0,
                       "channel_caps": {"sms": {"max": 1, "window_s": WEEK_S}}}}
    assert _capacity(doc) == 28
    # without the cool-down, each of 20 offers once a day: 7 x 20 in a week
    doc = {"fatigue": {"channel_caps": {"sms": {"max": 1, "window_s": WEEK_S}}}}
    assert _capacity(doc, 20) == 140
    assert contacts_bound(parse_rules({}), DAY_S * 1000 + 1, 20) == 40  # 2 started days


def test_caps_on_every_channel_bound_the_total():
    caps = {ch: {"max": 1, "window_s": DAY_S} for ch in
            ("app", "web", "email", "sms", "whatsapp", "voice", "call_centre")}
    rules = parse_rules({"fatigue": {"channel_caps": caps, "same_offer_s": 0}}, OFFERS)
    assert contacts_bound(rules, DAY_S * 1000, None) == 7
    assert rules.history_capacity == HISTORY_FLOOR
    caps.pop("call_centre")  # one channel uncapped: nothing bounds the day any more
    rules = parse_rules({"fatigue": {"channel_caps": caps, "same_offer_s": 0}}, OFFERS)
    assert contacts_bound(rules, DAY_S * 1000, None) is None
    assert rules.history_capacity == MAX_CAPACITY


def test_an_unbounded_window_gets_the_ceiling_and_an_explicit_capacity_wins():
    doc = {"fatigue": {"same_offer_s": 0, "channel_caps": {"sms": {"max": 2, "window_s": DAY_S}}}}
    assert _capacity(doc) == MAX_CAPACITY
    assert _capacity({**doc, "history_capacity": 16}) == 16
    assert _capacity({"history_capacity": 64}) == 64
    # rules that read no window of contacts (a cool-down needs the last one): the floor
    assert _capacity({"fatigue": {"same_offer_s": 0, "cooldown_s": 60}}) == HISTORY_FLOOR


def test_use_cases_sharing_a_history_share_one_capacity_from_all_their_contacts():
    cfg = parse_config({
        "version": "v1", "offers": [{"id": o} for o in OFFERS[:10]],
        "use_cases": [
            {"id": "capped", "rules": {"fatigue": {"global_cap": {"max": 3, "window_s": DAY_S}}}},
            {"id": "few", "offers": OFFERS[:4]},
            {"id": "fixed", "offers": OFFERS[:2], "rules": {"history_capacity": 9}},
        ],
    })
    rules = parse_use_case_rules(cfg)
    # in 24 h: 3 contacts from "capped", each of 4 offers once from "few", 2 from "fixed"
    assert rules["capped"].history_capacity == rules["few"].history_capacity == 3 + 4 + 2
    assert rules["fixed"].history_capacity == 9
    rs = [(rules["capped"], 10), (rules["few"], 4), (rules["fixed"], 2)]
    assert history_capacity_for(rs) == 9


def test_the_demo_and_bench_configurations_derive_small_histories():
    import json

    from stream_app.bench.params import BenchParams, engine_config
    from stream_app.settings import PROJECT_ROOT

    demo = parse_config(json.loads((PROJECT_ROOT / "config" / "offers.json").read_text()))
    assert parse_use_case_rules(demo)["default"].history_capacity == len(demo.offer_ids) == 8
    bench = parse_config(engine_config(BenchParams()))
    assert parse_use_case_rules(bench)["default"].history_capacity == 20
