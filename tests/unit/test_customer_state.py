"""The stored customer value: round trip, the interaction window, and values written by the
previous version (no window) still read."""

from __future__ import annotations

import struct

import pytest

from stream_app.core.customer import RECENT_EVENTS, CustomerCodecError, CustomerState
from stream_app.profile import apply_interaction


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
