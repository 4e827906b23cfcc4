"""The stored customer value: round trip, the interaction window, and values written by the
previous version (no window) still read."""

from __future__ import annotations

import struct

import pytest

from stream_app.core.customer import RECENT_EVENTS, CustomerCodecError, CustomerState
from stream_app.profile import ProfileClocks, apply_interaction


def _customer(events: int = 3) -> CustomerState:
    c = CustomerState.empty()
    for i in range(events):
        c = c.replace(profile=apply_interaction(c.profile, {"ts": 1_000 * i, "type": "login"}),
                      recent_events=c.remembered(f"ev-{i}"))
    return c.replace(history=c.history.record(5_000, 1, "sms"), flags=1)


def test_round_trip_keeps_profile_history_flags_and_interaction_ids():
    c = _customer()
    d = CustomerState.decode(c.encode())
    assert (d.profile, d.history, d.flags, d.recent_events) == (
        c.profile, c.history, c.flags, c.recent_events)
    assert all(d.recent_events.seen_before(f"ev-{i}") for i in range(3))


def test_remembering_an_id_leaves_the_state_it_came_from_unchanged():
    c = _customer()
    window = c.remembered("ev-new")
    assert window.seen_before("ev-new") and not c.recent_events.seen_before("ev-new")


def test_the_window_holds_the_last_ids_only_and_its_size_is_bounded():
    c = _customer(events=RECENT_EVENTS + 4)
    assert not c.recent_events.seen_before("ev-0")
    assert c.recent_events.seen_before(f"ev-{RECENT_EVENTS + 3}")
    # 8 bytes per id remembered, up to RECENT_EVENTS ids: never more, however many events
    full = len(_customer(events=RECENT_EVENTS).encode())
    assert len(c.encode()) == full == len(_customer(events=1).encode()) + 8 * (RECENT_EVENTS - 1)


def test_a_value_of_the_previous_version_reads_with_an_empty_window():
    c = _customer()
    p, h = c.profile.encode(), c.history.encode()
    v1 = struct.pack("<BBH", 1, c.flags, len(p)) + p + h
    d = CustomerState.decode(v1)
    assert (d.profile, d.history, d.flags) == (c.profile, c.history, c.flags)
    assert len(d.recent_events) == 0 and d.recent_events.capacity == RECENT_EVENTS
    assert CustomerState.decode(d.encode()).profile == c.profile  # rewritten as the new version


@pytest.mark.parametrize("cut", [1, 5, 200, -1])
def test_truncated_or_unknown_values_are_refused(cut):
    data = _customer().encode()
    with pytest.raises(CustomerCodecError):
        CustomerState.decode(data[:cut])
    with pytest.raises(CustomerCodecError):
        CustomerState.decode(b"\x09" + data[1:])


# -- version 3: arms, outcome window, decisions ------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from stream_app.core.arms import Arms  # noqa: E402
from stream_app.core.catalogue import CHANNELS  # noqa: E402
from stream_app.core.customer import SEEN_OUTCOMES  # noqa: E402
from stream_app.core.feedback import TIMER, PendingDecision, ignored  # noqa: E402
from stream_app.rules.history import ContactHistory  # noqa: E402

CID = "cust-42"
text = st.text(min_size=0, max_size=12)
long_text = st.text(min_size=250, max_size=300)  # past the one-byte length
ts = st.integers(-2**40, 2**50)
prob = st.floats(0.0, 1.0)


@st.composite
def decisions(draw, decision_id=None):
    decided = draw(ts)
    return PendingDecision(
        decision_id or draw(st.one_of(text, long_text, st.builds(lambda n: f"dc-{n:020x}",
                                                                    st.integers(0, 2**80 - 1)))),
        CID, draw(text), draw(text), draw(text), draw(text), draw(prob), draw(prob), decided,
        decided + draw(st.integers(-10, 2**33)),
        experiment_arm=draw(st.none() | text), best_predicted=draw(st.none() | prob),
        channel=draw(st.none() | st.sampled_from(CHANNELS) | text),
        settled_by=draw(st.none() | st.sampled_from(["clicked", "dismissed", TIMER]) | text),
        settled_at_ms=draw(st.none() | ts),
        experiments=draw(st.none() | st.lists(st.lists(text, min_size=2, max_size=2),
                                              max_size=3)),
        shadow=draw(st.none() | st.dictionaries(text, prob, max_size=3)),
        features=draw(st.none() | st.lists(st.floats(-1e6, 1e6), max_size=8)),
    )


@st.composite
def states(draw):
    from stream_app.core.catalogue import offer_key

    arms = Arms.empty()
    for key, reward, at in draw(st.lists(st.tuples(st.integers(0, 60), st.sampled_from([0.0, 1.0]),
                                                   st.integers(0, 10**6)), max_size=40)):
        arms = arms.updated(offer_key(f"o{key}"), reward, at, None)
    capacity = draw(st.integers(1, 70))
    history = ContactHistory.empty(capacity)
    span = draw(st.sampled_from([10**6, 10**10, 2**45]))  # u4, 5-byte and whole times
    for key, at, ch in draw(st.lists(st.tuples(st.integers(0, 80), st.integers(0, span),
                                               st.sampled_from(CHANNELS)), max_size=80)):
        history = history.record(1_700_000_000_000 + at, offer_key(f"o{key}"), ch)
    c = CustomerState.empty().replace(history=history, arms=arms, flags=draw(st.integers(0, 1)))
    for i in range(draw(st.integers(0, 12))):
        c = c.replace(recent_events=c.remembered(f"ev-{i}"))
    for i in range(draw(st.integers(0, 12))):
        c = c.replace(seen_outcomes=c.remembered_outcome(f"out-{i}"))
    for p in draw(st.lists(decisions(), max_size=4)):
        c = c.with_decision(p)
    return c


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(states())
def test_every_part_of_the_state_round_trips_and_decisions_read_alone(c):
    data = c.encode()
    d = CustomerState.decode(data, CID)
    assert d == c
    assert (d.arms, d.history, d.seen_outcomes, d.decisions) == (
        c.arms, c.history, c.seen_outcomes, c.decisions)
    assert CustomerState.timers_of(data, CID) == (d.decisions, ProfileClocks.of(d.profile))
    assert d.encode() == data


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(states(), st.data())
def test_truncated_or_corrupted_values_raise_the_codec_error_only(c, data):
    blob = c.encode()
    cut = data.draw(st.integers(0, len(blob) - 1))
    if cut:
        with pytest.raises(CustomerCodecError):
            CustomerState.decode(blob[:cut], CID)
    i = data.draw(st.integers(0, len(blob) - 1))
    flipped = blob[:i] + bytes((blob[i] ^ data.draw(st.integers(1, 255)),)) + blob[i + 1:]
    try:  # a flipped byte may still be a valid value (a count, a float): never another error
        CustomerState.decode(flipped, CID)
        CustomerState.timers_of(flipped, CID)
    except CustomerCodecError:
        pass


def test_a_version_2_value_reads_with_empty_arms_outcomes_and_decisions():
    c = _customer()
    p, h = c.profile.encode(), c.history.encode()
    v2 = struct.pack("<BBHH", 2, c.flags, len(p), len(h)) + p + h + c.recent_events.encode()
    d = CustomerState.decode(v2)
    assert (d.profile, d.history, d.flags, d.recent_events) == (
        c.profile, c.history, c.flags, c.recent_events)
    assert len(d.arms) == 0 and len(d.seen_outcomes) == 0 and d.decisions == ()
    assert d.seen_outcomes.capacity == SEEN_OUTCOMES
    assert CustomerState.timers_of(v2, CID) == ((), ProfileClocks.of(d.profile))
    assert CustomerState.decode(d.encode())  == d  # rewritten as version 3


def test_decisions_need_the_customer_id_they_were_stored_under():
    p = PendingDecision("dc-1", CID, "a", "uc", "thompson", "all", 0.1, 0.5, 0, 10)
    data = CustomerState.empty().with_decision(p).encode()
    assert CustomerState.decode(data, "other").decision("dc-1").customer_id == "other"
    with pytest.raises(ValueError, match="customer id"):
        CustomerState.decode(data)
    assert CustomerState.decode(CustomerState.empty().encode()) == CustomerState.empty()


def test_decision_helpers_add_replace_remove_and_forget():
    def pd(i: int) -> PendingDecision:
        return PendingDecision(f"dc-{i}", CID, "a", "uc", "thompson", "all", 0.1, 0.5,
                               1_000 * i, 1_000 * i + 500)

    c = CustomerState.empty()
    for i in range(3):
        c = c.with_decision(pd(i))
    assert [p.decision_id for p in c.decisions] == ["dc-0", "dc-1", "dc-2"]
    settled = ignored(pd(1)).pending
    c2 = c.with_decision(settled)
    assert c2.decision("dc-1") is settled and len(c2.decisions) == 3
    assert c.decision("dc-1") == pd(1) and c.decision("dc-9") is None  # c itself unchanged
    assert [p.decision_id for p in c2.without_decisions({"dc-0", "dc-9"}).decisions] == [
        "dc-1", "dc-2"]
    assert c2.without_decisions(["dc-9"]) is c2
    # dc-1 expired at 1_500; forget it one window (500 ms) later; open ones stay
    grace = lambda p: p.expires_at_ms + (p.expires_at_ms - p.decided_at_ms)  # noqa: E731
    assert c2.forgetting(1_999, grace) is c2
    assert [p.decision_id for p in c2.forgetting(2_000, grace).decisions] == ["dc-0", "dc-2"]
    assert [p.decision_id for p in c2.forgetting(10**9, grace).decisions] == [
        "dc-0", "dc-2"]


def test_the_outcome_window_is_kept_apart_and_bounded():
    c = CustomerState.empty()
    for i in range(SEEN_OUTCOMES + 3):
        c = c.replace(seen_outcomes=c.remembered_outcome(f"o-{i}"))
    assert not c.seen_outcomes.seen_before("o-0") and c.seen_outcomes.seen_before("o-10")
    assert not c.recent_events.seen_before("o-10")
    assert len(c.encode()) == len(CustomerState.empty().encode()) + 8 * SEEN_OUTCOMES


def test_replace_refuses_unknown_fields_and_the_state_is_frozen():
    c = CustomerState.empty()
    with pytest.raises(TypeError, match="no fields"):
        c.replace(profil=None)
    with pytest.raises(AttributeError):
        c.flags = 1  # type: ignore[misc]
