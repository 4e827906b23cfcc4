"""Profile state: transitions, decay, bounded size, codec."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.catalogue import CHANNELS, offer_key
from stream_app.profile import (
    CATEGORIES,
    EVENT_TYPES,
    PROFILE_BYTES,
    Profile,
    ProfileCodecError,
    ProfileConfig,
    apply_interaction,
    apply_outcome,
    decayed,
    offer_history,
    record_contact,
)
from stream_app.profile.layout import OFFER_SLOTS, SLOTS, VECTOR_LEN
from stream_app.profile.state import OFFER_DTYPE

DAY = 86_400_000
CFG = ProfileConfig(half_life_s=10 * 86400.0, slow_half_life_s=40 * 86400.0,
                    fatigue_half_life_s=2 * 86400.0)  # fmt: skip


def tx(ts: int, amount: float, category: str = "dining", **extra: object) -> dict:
    return {"ts": ts, "type": "transaction", "amount": amount, "category": category, **extra}


def slot(p: Profile, block: str, index: int = 0, now: int | None = None) -> float:
    vec = p.vector.astype(float) if now is None else decayed(p, now, CFG)
    return float(vec[SLOTS[block]][index])


def test_stated_size_is_the_encoded_size_and_under_half_a_kilobyte():
    # 56-byte header + 68 float32 slots + 8 offer records of 20 bytes
    assert PROFILE_BYTES == 56 + 4 * 68 + 8 * 20 == 488
    assert len(Profile.empty().encode()) == PROFILE_BYTES < 512


def test_size_does_not_grow_with_history_length():
    p = Profile.empty()
    sizes = {}
    for i in range(10_000):
        p = apply_interaction(p, tx(i * 60_000, 10.0 + i % 7, CATEGORIES[i % len(CATEGORIES)],
                                    channel=CHANNELS[i % len(CHANNELS)]))  # fmt: skip
        if i % 97 == 0:
            p = apply_outcome(p, offer_key(f"offer-{i}"), i % 2 == 0, float(i % 3 == 0),
                              i * 60_000)  # fmt: skip
        if i + 1 in (10, 10_000):
            sizes[i + 1] = len(p.encode())
    assert sizes[10] == sizes[10_000] == PROFILE_BYTES
    assert p.n_events == 10_000
    assert (p.offers["at"] >= 0).sum() == OFFER_SLOTS  # 104 distinct offers, 8 kept


def test_spend_decays_by_half_per_half_life():
    p = apply_interaction(Profile.empty(), tx(0, 100.0, "travel"), CFG)
    i = CATEGORIES.index("travel")
    assert slot(p, "spend", i, now=10 * DAY) == pytest.approx(50.0, rel=1e-6)
    assert slot(p, "spend", i, now=20 * DAY) == pytest.approx(25.0, rel=1e-6)
    # the slow clock (40 days) has lost a quarter-power: 100 * 2 ** (-10 / 40)
    slow = SLOTS["slow"].start + i
    assert decayed(p, 10 * DAY, CFG)[slow] == pytest.approx(100 * 2 ** -0.25, rel=1e-6)
    # reading does not change the profile
    assert slot(p, "spend", i) == 100.0


def test_update_decays_then_adds():
    p = apply_interaction(Profile.empty(), tx(0, 100.0), CFG)
    p = apply_interaction(p, tx(10 * DAY, 30.0), CFG)
    assert slot(p, "spend", CATEGORIES.index("dining")) == pytest.approx(80.0, rel=1e-6)
    assert slot(p, "events", EVENT_TYPES.index("transaction")) == pytest.approx(1.5, rel=1e-6)


def test_late_event_is_added_with_its_own_decay():
    early_then_late = apply_interaction(
        apply_interaction(Profile.empty(), tx(10 * DAY, 30.0), CFG), tx(0, 100.0), CFG
    )
    assert early_then_late.clock_ms == 10 * DAY
    assert early_then_late.last_event_ms == 10 * DAY and early_then_late.first_seen_ms == 0
    assert slot(early_then_late, "spend", CATEGORIES.index("dining")) == pytest.approx(80.0, 1e-6)


events_strategy = st.lists(
    st.tuples(
        st.integers(0, 60 * DAY),
        st.sampled_from(EVENT_TYPES),
        st.floats(0, 5000, allow_nan=False),
        st.sampled_from(CATEGORIES + ("unknown-thing",)),
        st.sampled_from(CHANNELS + ("pigeon",)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(events_strategy, st.randoms(use_true_random=False))
def test_decayed_sums_do_not_depend_on_arrival_order(events, rnd):
    def build(evs):
        p = Profile.empty()
        for ts, kind, amount, cat, ch in evs:
            p = apply_interaction(p, {"ts": ts, "type": kind, "amount": amount,
                                      "category": cat, "channel": ch}, CFG)  # fmt: skip
        return p

    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = build(events), build(shuffled)
    now = 61 * DAY
    va, vb = decayed(a, now, CFG), decayed(b, now, CFG)
    summed = slice(0, SLOTS["last_amount"].start)  # accumulated slots (not set-once slots)
    np.testing.assert_allclose(va[summed], vb[summed], rtol=1e-4, atol=1e-3)
    assert (a.n_events, a.first_seen_ms, a.last_event_ms) == (b.n_events, b.first_seen_ms,
                                                              b.last_event_ms)  # fmt: skip


def test_unknown_category_counts_as_other_and_aliases_map():
    p = apply_interaction(Profile.empty(), tx(0, 10.0, "pet food"))
    p = apply_interaction(p, tx(0, 5.0, "Investments"))
    assert slot(p, "spend", CATEGORIES.index("other")) == 10.0
    assert slot(p, "spend", CATEGORIES.index("savings")) == 5.0


def test_channel_time_of_day_and_ticket_habits():
    ts = 21 * 3_600_000  # 21:00 UTC: bucket 5, night
    p = apply_interaction(Profile.empty(), tx(ts, 5.0, channel="sms", attributes={"promo": 1}))
    assert slot(p, "channel", CHANNELS.index("sms")) == 1.0
    assert slot(p, "tod", 5) == 1.0
    assert slot(p, "tx_small") == slot(p, "tx_night") == slot(p, "tx_discount") == 1.0
    p = apply_interaction(p, {"ts": ts, "type": "login", "channel": "pigeon"})
    assert float(p.vector[SLOTS["channel"]].sum()) == 1.0  # unknown channel not counted


def test_invalid_events_raise():
    for bad in ({"type": "login"}, {"ts": -1, "type": "login"}, {"ts": 0, "type": "dance"}):
        with pytest.raises(ValueError):
            apply_interaction(Profile.empty(), bad)
    with pytest.raises(ValueError):
        apply_outcome(Profile.empty(), 1, False, 1.5, 0)
    with pytest.raises(ValueError):
        record_contact(Profile.empty(), "pigeon", 0)


def test_gap_ewma_and_last_amount():
    p = apply_interaction(Profile.empty(), tx(0, 12.0), CFG)
    p = apply_interaction(p, tx(3_600_000, 40.0), CFG)  # one hour later
    assert slot(p, "gap_log_ewma") == pytest.approx(math.log1p(1.0), rel=1e-6)
    p = apply_interaction(p, tx(3 * 3_600_000, 7.0), CFG)  # two hours later
    expected = 0.8 * math.log1p(1.0) + 0.2 * math.log1p(2.0)
    assert slot(p, "gap_log_ewma") == pytest.approx(expected, rel=1e-6)
    assert slot(p, "last_amount") == 7.0


def test_outcomes_by_framing_and_offer_with_bounded_recent_offers():
    p = Profile.empty()
    p = apply_outcome(p, offer_key("a"), urgent=True, reward=1.0, ts=0, cfg=CFG)
    p = apply_outcome(p, offer_key("a"), urgent=True, reward=0.0, ts=0, cfg=CFG)
    p = apply_outcome(p, offer_key("b"), urgent=False, reward=0.0, ts=0, cfg=CFG)
    assert p.vector[SLOTS["framing"]].tolist() == [1.0, 0.0, 2.0, 1.0]
    assert offer_history(p, offer_key("a"), 0, CFG) == (2.0, 1.0)
    shown, responded = offer_history(p, offer_key("a"), 10 * DAY, CFG)
    assert (shown, responded) == pytest.approx((1.0, 0.5))
    for i in range(OFFER_SLOTS):  # eight newer offers push the oldest two out
        p = apply_outcome(p, offer_key(f"n{i}"), False, 0.0, DAY + i, CFG)
    assert offer_history(p, offer_key("a"), DAY, CFG) == (0.0, 0.0)
    assert offer_history(p, offer_key("n0"), DAY, CFG) == (1.0, 0.0)


def test_fatigue_has_its_own_half_life():
    p = record_contact(Profile.empty(), "email", 0, CFG)
    p = record_contact(p, "email", 0, CFG)
    assert slot(p, "fatigue", CHANNELS.index("email"), now=2 * DAY) == pytest.approx(1.0)


def test_transitions_do_not_mutate_their_input():
    p = apply_interaction(Profile.empty(), tx(0, 10.0))
    before = p.encode()
    apply_interaction(p, tx(DAY, 10.0))
    apply_outcome(p, 1, False, 1.0, DAY)
    record_contact(p, "app", DAY)
    assert p.encode() == before


profiles = st.builds(
    lambda vec, keys, shown, at, ints: Profile(
        np.array(vec, np.float32),
        np.array(list(zip(keys, shown, shown, at)), OFFER_DTYPE),
        *ints,
    ),
    st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True),
             min_size=VECTOR_LEN, max_size=VECTOR_LEN),
    st.lists(st.integers(0, 2**32 - 1), min_size=OFFER_SLOTS, max_size=OFFER_SLOTS),
    st.lists(st.floats(width=32, allow_nan=False), min_size=OFFER_SLOTS, max_size=OFFER_SLOTS),
    st.lists(st.integers(-1, 2**62), min_size=OFFER_SLOTS, max_size=OFFER_SLOTS),
    st.tuples(st.integers(0, 2**32 - 1), *[st.integers(0, 2**62)] * 4, st.integers(-1, 7),
              st.integers(0, 2**62), st.integers(-1, 7), st.integers(-1, 5),
              st.integers(0, 2**62)),
)  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True)
@given(profiles)
def test_codec_round_trip(p):
    data = p.encode()
    assert len(data) == PROFILE_BYTES
    q = Profile.decode(data)
    assert q.encode() == data
    assert (q.n_events, q.segment, q.churn_labelled_ms) == (p.n_events, p.segment,
                                                            p.churn_labelled_ms)  # fmt: skip
    np.testing.assert_array_equal(q.vector.view(np.uint32), p.vector.view(np.uint32))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(min_size=PROFILE_BYTES - 1, max_size=PROFILE_BYTES - 1))
def test_any_well_formed_bytes_decode_and_re_encode_identically(body):
    data = b"\x01" + body
    assert Profile.decode(data).encode() == data


def test_codec_rejects_bad_bytes():
    assert Profile.decode(None) == Profile.empty() == Profile.decode(b"")
    good = Profile.empty().encode()
    for bad in (b"\x02" + good[1:], good[:-1], good + b"\x00"):
        with pytest.raises(ProfileCodecError):
            Profile.decode(bad)
