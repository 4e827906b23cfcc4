"""Eligibility, consent, channel availability, validity dates, budgets and ``no_action``."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.core.catalogue import Offer, parse_config
from stream_app.rules import (
    ContactHistory,
    OfferArrays,
    RequestContext,
    evaluate,
    expected_value,
    parse_rules,
    rank_eligible,
)

NOW = 1_705_359_600_000
OFFERS = OfferArrays.of(
    [
        Offer("cashback", channels=("app", "sms", "email")),
        Offer("loan", channels=("app", "sms")),
        Offer("push-only", channels=("app",)),
        Offer("spring", valid_from_ms=NOW + 1, valid_to_ms=NOW + 1000),
        Offer("winter", valid_from_ms=NOW - 1000, valid_to_ms=NOW),
    ]
)
EMPTY = ContactHistory.empty()


def run(rules_doc, request, offers=OFFERS, budgets=None):
    return evaluate(parse_rules(rules_doc), request, offers, EMPTY, NOW, budgets=budgets)


def app(**kw):
    return RequestContext(channel="app", **kw)


def test_channel_availability_and_alignment():
    el = run({"check_validity": False}, RequestContext(channel="email",
             profile={"consent_email": True}))  # fmt: skip
    assert el.offer_ids == OFFERS.ids
    assert el.eligible.tolist() == [True, False, False, True, True]
    assert el.reasons == {"loan": ["channel: not offered on email"],
                          "push-only": ["channel: not offered on email"]}  # fmt: skip
    assert el.eligible_ids == ("cashback", "spring", "winter")


def test_validity_window_is_from_inclusive_to_exclusive():
    el = run({}, app())
    assert el.reasons["spring"] == ["validity: not yet valid"]
    assert el.reasons["winter"] == ["validity: expired"]  # valid_to == now: already over
    edges = OfferArrays.of([Offer("starts-now", valid_from_ms=NOW),
                            Offer("ends-next-ms", valid_to_ms=NOW + 1)])  # fmt: skip
    assert run({}, app(), edges).eligible.all()
    assert run({"check_validity": False}, app()).eligible.all()


# -- consent: fail closed ----------------------------------------------------------------------
SMS_ONLY = OfferArrays.of([Offer("cashback"), Offer("loan")])


@pytest.mark.parametrize(
    ("profile", "context", "allowed", "state"),
    [
        ({}, {}, False, "missing"),
        ({"consent_sms": True}, {}, True, None),
        ({}, {"consent_sms": True}, True, None),
        ({"consent_sms": True}, {"consent_sms": False}, False, "withdrawn"),
        ({"consent_sms": False}, {}, False, "withdrawn"),
        ({"consent_sms": "yes"}, {}, False, "missing"),  # only a real true counts
        ({"consent_sms": 1}, {}, False, "missing"),
        ({"consent_email": True}, {}, False, "missing"),  # consent on another channel
    ],
)
def test_consent_per_channel_fails_closed(profile, context, allowed, state):
    el = run({}, RequestContext(channel="sms", profile=profile, context=context), SMS_ONLY)
    assert el.eligible.tolist() == [allowed, allowed]
    if not allowed:
        assert el.reasons["loan"] == [f"consent: sms consent {state} (consent_sms)"]


def test_consent_channels_and_flag_name_are_configurable():
    inbound = RequestContext(channel="app")
    assert run({}, inbound, SMS_ONLY).eligible.all()  # app is inbound: no consent by default
    strict = {"consent": {"channels": ["app"], "field": "gdpr_{channel}"}}
    assert run(strict, inbound, SMS_ONLY).no_action
    assert run(strict, app(profile={"gdpr_app": True}), SMS_ONLY).eligible.all()
    lax = {"consent": {"channels": []}}
    assert run(lax, RequestContext(channel="sms"), SMS_ONLY).eligible.all()


# -- eligibility conditions ------------------------------------------------------------------
ADULTS = {"eligibility": [{"field": "context.age", "op": ">=", "value": 18}]}


@pytest.mark.parametrize(
    ("context", "ok"), [({"age": 18}, True), ({"age": 17}, False), ({}, False)]
)
def test_use_case_eligibility_applies_to_every_offer(context, ok):
    el = run(ADULTS, app(context=context), SMS_ONLY)
    assert el.eligible.tolist() == [ok, ok]
    if not ok:
        assert el.reasons["cashback"] == ["eligibility: context.age >= 18"]


def test_offer_eligibility_applies_to_that_offer_only():
    rules = {"offer_eligibility": {"loan": [
        {"field": "profile.credit_score", "op": ">=", "value": 600},
        {"field": "profile.segment", "op": "not_in", "value": ["student"]},
    ]}}  # fmt: skip
    good = run(rules, app(profile={"credit_score": 700, "segment": "family"}), SMS_ONLY)
    assert good.eligible.tolist() == [True, True]
    bad = run(rules, app(profile={"credit_score": 550, "segment": "student"}), SMS_ONLY)
    assert bad.eligible.tolist() == [True, False]
    assert bad.reasons == {"loan": ["eligibility: profile.credit_score >= 600",
                                    "eligibility: profile.segment not_in ['student']"]}  # fmt: skip


def test_request_fields_can_be_conditions():
    rules = {"eligibility": [{"field": "request.use_case", "op": "==", "value": "retention"}]}
    assert run(rules, app(use_case="retention"), SMS_ONLY).eligible.all()
    assert run(rules, app(use_case="growth"), SMS_ONLY).no_action


def test_request_context_from_a_decision_request():
    ctx = RequestContext.of(
        {"request_id": "r", "customer_id": "c1", "ts": NOW, "channel": "sms", "use_case": "u",
         "context": {"age": 40}, "timezone": "Europe/Paris"},
        profile={"consent_sms": True},
    )  # fmt: skip
    assert (ctx.channel, ctx.timezone, ctx.use_case, ctx.customer_id) == ("sms", "Europe/Paris",
                                                                          "u", "c1")  # fmt: skip
    assert run(ADULTS, ctx, SMS_ONLY).eligible.all()


# -- budgets: what the budget check says, and fail closed ------------------------------------
class Budgets:
    """The budget rule as ``evaluate`` asks it (``fleet/budgets.py`` implements it)."""

    def __init__(self, out: dict[str, str | None]) -> None:
        self.out = out

    def limits(self, offer_id):
        return offer_id in self.out

    def out_of_budget(self, offer_id):
        return self.out[offer_id]


def test_an_offer_out_of_budget_is_removed_with_the_reason():
    spent = Budgets({"loan": "budget: count budget of 5 spent (5 accepted fleet-wide)"})
    assert run({}, app(), SMS_ONLY, spent).reasons == {
        "loan": ["budget: count budget of 5 spent (5 accepted fleet-wide)"]}  # fmt: skip
    assert run({}, app(), SMS_ONLY, Budgets({"loan": None})).eligible.all()


def test_an_offer_shown_only_under_a_budget_fails_closed_without_one():
    closed = ["budget: none set for this offer, which the use case shows only under a budget "
              "(rules.inventory; fail closed)"]
    assert run({"inventory": ["loan"]}, app(), SMS_ONLY).reasons == {"loan": closed}
    assert run({"inventory": ["loan"]}, app(), SMS_ONLY, Budgets({})).reasons == {"loan": closed}
    assert run({"inventory": ["loan"]}, app(), SMS_ONLY, Budgets({"loan": None})).eligible.all()
    everything = run({"inventory": "*"}, app(), SMS_ONLY, Budgets({"loan": None}))
    assert everything.eligible.tolist() == [False, True]  # cashback has no budget: closed


# -- no action, reasons, use-case offers -----------------------------------------------------
def test_no_eligible_offer_is_a_no_action_with_reasons():
    el = run(ADULTS, RequestContext(channel="sms", context={"age": 12}), SMS_ONLY)
    assert el.no_action and el.eligible_ids == ()
    out = el.as_no_action()
    both = ["consent: sms consent missing (consent_sms)", "eligibility: context.age >= 18"]
    assert out == {"action": "no_action", "offer_id": None, "ranked": [],
                   "rule_reasons": {"cashback": both, "loan": both}}  # fmt: skip


def test_offer_arrays_follow_the_use_case_and_take_candidates():
    cfg = parse_config({"version": "v1", "offers": [{"id": "a"}, {"id": "b", "channels": ["sms"]},
                        {"id": "c", "value": 3.0}],
                        "use_cases": [{"id": "u", "offers": ["c", "b"]}]})  # fmt: skip
    arr = OfferArrays.for_use_case(cfg, "u")
    assert arr.ids == ("c", "b") and arr.values.tolist() == [3.0, 1.0]
    assert arr.keys.tolist() == [cfg.offer_keys[2], cfg.offer_keys[1]]
    sub = arr.take([1])
    assert sub.ids == ("b",) and sub.offered_on("sms").tolist() == [True]
    assert sub.offered_on("app").tolist() == [False] and sub.offered_on("fax").tolist() == [False]


# -- expected value ------------------------------------------------------------------------------
def test_expected_value_and_ranking():
    p = np.array([0.10, 0.02, 0.30, 0.50])
    v = np.array([5.0, 50.0, 1.0, 4.0])
    ev = expected_value(p, v)
    assert ev.tolist() == pytest.approx([0.5, 1.0, 0.3, 2.0])
    assert rank_eligible(ev, np.array([True, True, True, False])).tolist() == [1, 0, 2]
    weighted = expected_value(p, v, weights=np.array([1.0, 0.1, 1.0, 1.0]))
    assert weighted.tolist() == pytest.approx([0.5, 0.1, 0.3, 2.0])
    assert rank_eligible(np.array([1.0, 1.0, 2.0]), np.ones(3, bool)).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="align"):
        expected_value(p, v[:2])
    with pytest.raises(ValueError, match="probabilities"):
        expected_value(np.array([1.5]), np.array([1.0]))
