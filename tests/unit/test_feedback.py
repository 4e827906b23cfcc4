"""Feedback: reward mapping, settling once, the late-outcome rule, and the pending codec."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.catalogue import offer_key
from stream_app.core.feedback import (
    TIMER,
    PendingCodecError,
    PendingDecision,
    ignored,
    resolve,
    reward_of,
)
from stream_app.settings import PROJECT_ROOT

DELTA_SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "delta-metrics.v1.json").read_text())


def pending(**changes) -> PendingDecision:
    base = dict(decision_id="dc-1", customer_id="c-1", offer_id="cashback", use_case="default",
                policy="thompson", segment="young", predicted=0.25, propensity=0.5,
                decided_at_ms=10_000, expires_at_ms=70_000, experiment_arm="B",
                best_predicted=0.75, channel="app")
    return PendingDecision(**{**base, **changes})


def outcome(ts: int, kind: str = "clicked", value: float | None = None) -> dict:
    doc = {"outcome_id": f"o-{ts}", "decision_id": "dc-1", "customer_id": "c-1", "ts": ts,
           "type": kind}
    return doc if value is None else {**doc, "value": value}


@pytest.mark.parametrize(("kind", "reward"), [("clicked", 1.0), ("accepted", 1.0),
                                              ("converted", 1.0), ("dismissed", 0.0),
                                              ("ignored", 0.0)])
def test_reward_of_each_outcome_type(kind, reward):
    assert reward_of(kind) == reward


def test_unknown_outcome_type_is_an_error():
    with pytest.raises(ValueError, match="unknown outcome type 'liked'"):
        reward_of("liked")


def test_outcome_in_window_settles_the_decision_and_is_learned_from():
    fb = resolve(pending(), outcome(40_000, "converted", value=12.5))
    assert fb.reward == 1.0
    assert (fb.pending.settled_by, fb.pending.settled_at_ms) == ("converted", 40_000)
    [rec] = fb.records
    jsonschema.validate(rec, DELTA_SCHEMA)
    assert rec["kind"] == "outcome" and rec["ts"] == 40_000
    assert (rec["predicted"], rec["actual"], rec["delta"]) == (0.25, 1.0, 0.75)
    assert (rec["value"], rec["ignored"], rec["late"]) == (12.5, False, False)
    assert rec["regret"] == 0.5  # best 0.75 - chosen 0.25
    assert (rec["segment"], rec["experiment_arm"], rec["outcome_id"]) == ("young", "B", "o-40000")
    assert rec["response_ms"] == 30_000


def test_dismissal_is_learned_as_zero_with_negative_delta():
    fb = resolve(pending(), outcome(20_000, "dismissed"))
    assert fb.reward == 0.0
    assert fb.records[0]["delta"] == -0.25


def test_timer_settles_an_open_decision_as_ignored_at_its_expiry_time():
    fb = ignored(pending())
    assert fb.reward == 0.0
    assert (fb.pending.settled_by, fb.pending.settled_at_ms) == (TIMER, 70_000)
    [rec] = fb.records
    jsonschema.validate(rec, DELTA_SCHEMA)
    assert (rec["ts"], rec["actual"], rec["delta"], rec["ignored"], rec["late"]) == (
        70_000, 0.0, -0.25, True, False)


def test_timer_on_a_settled_decision_does_nothing():
    settled = resolve(pending(), outcome(20_000)).pending
    fb = ignored(settled)
    assert (fb.records, fb.reward, fb.pending) == ((), None, settled)


def test_outcome_after_timer_is_reported_late_and_not_learned_again():
    after_timer = ignored(pending()).pending
    fb = resolve(after_timer, outcome(90_000, "converted", value=3.0))
    assert fb.reward is None
    assert fb.pending == after_timer  # still settled by the timer
    [rec] = fb.records
    jsonschema.validate(rec, DELTA_SCHEMA)
    assert (rec["late"], rec["ignored"], rec["actual"], rec["value"]) == (True, False, 1.0, 3.0)


def test_second_outcome_is_late_the_first_one_counts():
    first = resolve(pending(), outcome(20_000, "clicked"))
    second = resolve(first.pending, outcome(30_000, "dismissed"))
    assert second.reward is None and second.records[0]["late"] is True
    assert second.pending.settled_by == "clicked"


def test_window_is_half_open_an_outcome_at_expiry_is_late_even_before_the_timer_fired():
    last_in = resolve(pending(), outcome(69_999))
    assert last_in.reward == 1.0 and not last_in.records[0]["late"]
    at_expiry = resolve(pending(), outcome(70_000))
    # Same as timer-then-outcome: one ignored record (learned as 0), then the late one.
    assert at_expiry.reward == 0.0
    assert [(r["ignored"], r["late"], r["ts"]) for r in at_expiry.records] == [
        (True, False, 70_000), (False, True, 70_000)]
    assert at_expiry.pending.settled_by == TIMER


def test_outcome_for_another_decision_is_refused():
    with pytest.raises(ValueError, match="not 'dc-1'"):
        resolve(pending(), {**outcome(20_000), "decision_id": "dc-2"})


def test_regret_defaults_to_zero_without_best_predicted_and_offer_key_is_the_catalogue_key():
    p = pending(best_predicted=None)
    assert ignored(p).records[0]["regret"] == 0.0
    assert p.offer_key == offer_key("cashback")


def test_from_decision_reads_the_decisions_message():
    decision = {"decision_id": "dc-9", "customer_id": "c-9", "offer_id": "flash-sale",
                "use_case": "default", "policy": "ucb", "predicted": 0.1, "propensity": 1.0,
                "ts": 5_000, "channel": "sms", "experiment": {"id": "exp-1", "arm": "control"}}
    p = PendingDecision.from_decision(decision, segment="vip", attribution_window_s=1.5,
                                      best_predicted=0.2)
    assert (p.decided_at_ms, p.expires_at_ms, p.experiment_arm, p.channel, p.segment) == (
        5_000, 6_500, "control", "sms", "vip")
    assert not p.is_settled
    no_exp = PendingDecision.from_decision({**decision, "experiment": None}, segment="vip",
                                           attribution_window_s=1.0)
    assert no_exp.experiment_arm is None


text = st.text(min_size=1, max_size=40)
prob = st.floats(0.0, 1.0)
maybe = st.none() | text
pending_decisions = st.builds(
    PendingDecision, text, text, text, text, text, text, prob, prob,
    st.integers(0, 2**53), st.integers(0, 2**53), maybe, st.none() | prob, maybe,
    st.none() | st.sampled_from(["clicked", "dismissed", TIMER]), st.none() | st.integers(0, 2**53),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(pending_decisions)
def test_codec_round_trip(p):
    assert PendingDecision.decode(p.encode()) == p


@pytest.mark.parametrize("data", [b"", b"not json", b"[2]", b'{"v": 1}', b'[1, "dc-1"]'])
def test_codec_refuses_bad_state(data):
    with pytest.raises(PendingCodecError):
        PendingDecision.decode(data)


# -- the compact form kept inside the customer's value ----------------------------------------

full_pending = st.builds(
    PendingDecision,
    st.one_of(text, st.text(min_size=255, max_size=300),
              st.integers(0, 2**80 - 1).map(lambda n: f"dc-{n:020x}")),
    st.just("c-1"), text, text, text, st.text(max_size=3), prob, prob,
    st.integers(-2**62, 2**62), st.integers(-2**62, 2**62), maybe, st.none() | prob,
    st.none() | st.sampled_from(["app", "sms", "call_centre", "fax"]),
    st.none() | st.sampled_from(["clicked", "accepted", "converted", "dismissed", TIMER, "x"]),
    st.none() | st.integers(-2**62, 2**62),
    st.none() | st.lists(st.lists(text, min_size=2, max_size=2), max_size=3),
    st.none() | st.dictionaries(text, prob, max_size=3),
    st.none() | st.lists(st.floats(allow_nan=False), max_size=30),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(full_pending, st.binary(max_size=5))
def test_packed_form_round_trips_exactly_and_says_where_it_ends(p, before):
    blob = p.pack()
    data = before + blob + b"\x00tail"
    assert PendingDecision.unpack_from(data, len(before), "c-1") == (p, len(before) + len(blob))


def test_packed_form_leaves_the_customer_id_to_the_caller():
    p = pending()
    back, _ = PendingDecision.unpack_from(p.pack(), 0, "someone-else")
    assert back.customer_id == "someone-else" and back.offer_id == p.offer_id


def test_a_typical_open_decision_packs_in_about_80_bytes():
    p = pending(decision_id="dc-" + "ab" * 10)
    # 30 fixed + 10 id + 1+8 offer + 1+7 use case + 1+8 policy + 1+5 segment + 1+1 arm
    #   + 8 best + 1 channel (app is a code)
    assert len(p.pack()) == 30 + 10 + 9 + 8 + 9 + 6 + 2 + 8 + 1 == 83
    assert len(p.encode()) == 136  # the JSON form of the same decision
    settled = ignored(p).pending  # + 1 settled_by code + 8 settled_at
    assert len(settled.pack()) == 83 + 9


def test_upper_case_or_other_ids_are_stored_as_strings():
    for decision_id in ("dc-" + "AB" * 10, "dc-" + "ab" * 9, "xx-" + "ab" * 10):
        p = pending(decision_id=decision_id)
        # a length byte and the text instead of 10 bytes
        assert len(p.pack()) == len(pending(decision_id="dc-" + "ab" * 10).pack()) - 10 + 1 + \
            len(decision_id)
        assert PendingDecision.unpack_from(p.pack(), 0, "c-1")[0] == p


@settings(max_examples=300, deadline=None, derandomize=True)
@given(full_pending, st.data())
def test_cut_or_flipped_packed_bytes_raise_the_codec_error_only(p, data):
    blob = p.pack()
    with pytest.raises(PendingCodecError):
        PendingDecision.unpack_from(blob[:data.draw(st.integers(0, len(blob) - 1))], 0, "c-1")
    i = data.draw(st.integers(0, len(blob) - 1))
    flipped = blob[:i] + bytes((blob[i] ^ data.draw(st.integers(1, 255)),)) + blob[i + 1:]
    try:
        PendingDecision.unpack_from(flipped, 0, "c-1")
    except PendingCodecError:
        pass


def test_a_settled_copy_changes_only_how_and_when_it_was_settled():
    # every field set to a value of its own: a field added to PendingDecision and not carried
    # over by ``settled`` (it calls the constructor positionally) makes this fail
    from dataclasses import fields, replace

    p = pending(experiments=[["e1", "A"]], shadow={"ucb": 0.25}, features=[0.5, 1.5])
    assert len(fields(p)) == 18, "a field was added: carry it over in PendingDecision.settled"
    assert all(getattr(p, f.name) is not None for f in fields(p)
               if f.name not in ("settled_by", "settled_at_ms"))
    assert p.settled(TIMER, 70_000) == replace(p, settled_by=TIMER, settled_at_ms=70_000)
