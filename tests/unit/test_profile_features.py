"""Spend personality, lifecycle stage and the shared feature function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.core.catalogue import offer_key
from stream_app.profile import (
    ARCHETYPES,
    BANDIT_FEATURES,
    FEATURE_NAMES,
    Profile,
    ProfileConfig,
    apply_interaction,
    apply_outcome,
    feature_vector,
    features,
    lifecycle_stage,
    offer_features,
    record_contact,
    spend_personality,
)
from stream_app.profile.personality import INPUTS, archetype_inputs, memberships

DAY = 86_400_000
HOUR = 3_600_000
CFG = ProfileConfig(half_life_s=7 * 86400.0, slow_half_life_s=60 * 86400.0)


def spend(p: Profile, days: range, category: str, amount: float, hour: int = 12, **kw) -> Profile:
    for d in days:
        ev = {"ts": d * DAY + hour * HOUR, "type": "transaction", "amount": amount,
              "category": category, **kw}  # fmt: skip
        p = apply_interaction(p, ev, CFG)
    return p


@pytest.mark.parametrize(
    ("category", "amount", "hour", "extra", "expected"),
    [
        ("savings", 400.0, 10, {}, "saver"),
        ("travel", 300.0, 12, {}, "experience_seeker"),
        ("groceries", 60.0, 17, {}, "essentials_only"),
        ("fashion", 8.0, 1, {}, "impulsive"),  # small tickets at night
        ("electronics", 80.0, 14, {"attributes": {"discount": True}}, "deal_seeker"),
    ],
)
def test_pure_behaviour_gives_its_archetype(category, amount, hour, extra, expected):
    p = spend(Profile.empty(), range(30), category, amount, hour, **extra)
    sp = spend_personality(p, 30 * DAY, CFG)
    assert sp.dominant == expected
    assert sp.memberships[expected] > 0.5
    assert sum(sp.memberships.values()) == pytest.approx(1.0)


def test_no_spend_means_uniform_and_no_dominant():
    p = apply_interaction(Profile.empty(), {"ts": 0, "type": "login"})
    sp = spend_personality(p, 0)
    assert sp.dominant is None
    assert list(sp.memberships.values()) == pytest.approx([0.2] * 5)


def test_personality_shifts_with_behaviour_and_change_spikes_then_settles():
    p = spend(Profile.empty(), range(60), "savings", 300.0)
    settled = spend_personality(p, 60 * DAY, CFG)
    assert settled.dominant == "saver" and settled.change < 0.05
    p = spend(p, range(60, 81), "dining", 300.0)  # three weeks of eating out
    shifted = spend_personality(p, 81 * DAY, CFG)
    assert shifted.dominant == "experience_seeker"
    assert shifted.change > 0.3  # the slow clock still remembers the saver
    p = spend(p, range(81, 400, 3), "dining", 300.0)
    assert spend_personality(p, 400 * DAY, CFG).change < 0.05


def test_memberships_are_a_softmax_of_the_weighted_inputs():
    x = np.zeros(len(INPUTS))
    x[INPUTS.index("share_savings")] = 1.0  # saver score 4.0, others 0 at temperature 0.5
    m = memberships(x)
    expected = math.exp(8.0) / (math.exp(8.0) + 4)
    assert m[ARCHETYPES.index("saver")] == pytest.approx(expected)


def test_archetype_inputs_shrink_the_response_rate():
    habits = np.zeros(len(INPUTS) + 2)
    habits[-2:] = (2.0, 2.0)  # shown twice, answered twice
    assert archetype_inputs(habits)[INPUTS.index("response_rate")] == pytest.approx(0.5)


def test_lifecycle_stage_follows_the_event_mix():
    p = Profile.empty()
    for i in range(5):
        p = apply_interaction(p, {"ts": i, "type": "page_view"}, CFG)
    assert lifecycle_stage(p, 5, CFG) == "orientation"
    for i in range(3):  # 3 purchases x 2 > 5 views x 1
        p = apply_interaction(p, {"ts": 10 + i, "type": "transaction", "amount": 5.0}, CFG)
    assert lifecycle_stage(p, 20, CFG) == "purchase"
    for i in range(3):  # 3 complaints x 3 > 6
        p = apply_interaction(p, {"ts": 30 + i, "type": "complaint"}, CFG)
    assert lifecycle_stage(p, 40, CFG) == "support"


def busy_profile() -> Profile:
    p = spend(Profile.empty(), range(20), "dining", 25.0, hour=21, channel="app")
    p = apply_interaction(p, {"ts": 20 * DAY, "type": "login", "channel": "web"}, CFG)
    p = apply_outcome(p, offer_key("x"), urgent=True, reward=1.0, ts=20 * DAY, cfg=CFG)
    p = record_contact(p, "app", 20 * DAY, CFG)
    return p.replace(segment=3)


def test_feature_names_are_fixed_whatever_the_profile_and_context():
    for p, ctx in [(Profile.empty(), None), (busy_profile(), {"channel": "app", "junk": "x"})]:
        x = features(p, ctx, 21 * DAY, CFG)
        assert tuple(x) == FEATURE_NAMES
        assert all(isinstance(v, float) and math.isfinite(v) for v in x.values())
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 71


def test_vector_and_dict_agree_and_bandit_subset_is_ordered():
    p, ctx, now = busy_profile(), {"channel": "app"}, 21 * DAY
    x = features(p, ctx, now, CFG)
    np.testing.assert_array_equal(feature_vector(p, ctx, now, cfg=CFG), list(x.values()))
    sub = feature_vector(p, ctx, now, BANDIT_FEATURES, CFG)
    assert sub.tolist() == [x[n] for n in BANDIT_FEATURES]


def test_feature_values_from_an_independent_derivation():
    p, now = busy_profile(), 21 * DAY + 21 * HOUR  # a day after the login, 21:00 UTC
    x = features(p, {"channel": "app"}, now, CFG)
    assert x["recency_days_log"] == pytest.approx(math.log1p(1 + 21 / 24))
    assert x["spend_dining"] == 1.0 and x["seg_3"] == 1.0 and x["seg_0"] == 0.0
    assert x["ctx_chan_app"] == 1.0 and x["ctx_weekend"] == 0.0  # 1970-01-22 was a Thursday
    assert x["avg_ticket_log"] == pytest.approx(math.log1p(25.0), rel=1e-5)
    kept = 0.5 ** (45 / (7 * 24))  # the answered urgent offer was 45 hours ago
    assert x["resp_rate_urgent"] == pytest.approx((kept + 1) / (kept + 2))
    assert x["resp_rate_neutral"] == 0.5
    assert x["fatigue_channel_log"] > 0 and x["stage_purchase"] == 1.0
    # 20 of 21 interactions were at 20:00-24:00 (the request's bucket), the login at 00:00
    evening = sum(0.5 ** (((20 - d) * 24 - 21) / 168) for d in range(20))
    assert x["ctx_tod_habit"] == pytest.approx(evening / (evening + 1), rel=1e-5)
    assert x["chan_app"] > 0.9 and x["persona_experience_seeker"] > 0.5


def test_features_read_without_changing_the_profile_and_never_decay_backwards():
    p = busy_profile()
    before = p.encode()
    stored = math.log1p(float(p.vector[:8].sum()))  # the event counts, decayed to the clock
    assert features(p, None, 25 * DAY, CFG)["frequency_log"] < stored
    assert p.encode() == before
    # a request older than the profile's clock (late) sees the profile as stored, not inflated
    assert features(p, None, 10 * DAY, CFG)["frequency_log"] == pytest.approx(stored)


def test_offer_features():
    p = busy_profile()
    f = offer_features(p, offer_key("x"), True, 20 * DAY, CFG)
    assert f["offer_shown_log"] == pytest.approx(math.log1p(1.0))
    # one answered contact; overall rate (1 + 1) / (1 + 2); shrunk: (1 + 2 * 2/3) / (1 + 2)
    assert f["offer_resp_rate"] == pytest.approx((1 + 4 / 3) / 3)
    assert offer_features(p, offer_key("y"), False, 20 * DAY, CFG)["offer_shown_log"] == 0.0
