"""ContactHistory: bounded, ordered, immutable, and a versioned codec that round-trips."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.catalogue import CHANNELS
from stream_app.rules import ContactHistory, HistoryCodecError
from stream_app.rules.history import MAX_CAPACITY


def test_keeps_only_the_last_capacity_contacts():
    h = ContactHistory.empty(capacity=10)
    for i in range(100):
        h = h.record(i * 1000, i, CHANNELS[i % len(CHANNELS)])
    assert len(h) == 10
    assert h.records["ts_ms"].tolist() == [i * 1000 for i in range(90, 100)]
    assert h.records["offer_key"].tolist() == list(range(90, 100))
    assert len(h.encode()) == 8 + 13 * 10  # header + packed (i8, u4, u1) records


def test_late_contacts_land_in_time_order_and_old_history_is_unchanged():
    h0 = ContactHistory.empty().record(3000, 1, "sms").record(1000, 2, "email")
    h1 = h0.record(2000, 3, "app")
    assert h1.records["ts_ms"].tolist() == [1000, 2000, 3000]
    assert h1.channels().tolist() == ["email", "app", "sms"]
    assert len(h0) == 2, "record returns a new history"
    assert h1.last_ts() == 3000 and ContactHistory.empty().last_ts() is None


def test_a_late_contact_older_than_the_whole_window_is_dropped_first():
    h = ContactHistory.empty(capacity=2).record(5000, 1, "sms").record(6000, 2, "sms")
    h = h.record(1000, 3, "sms")  # older than everything kept: it is the one dropped
    assert h.records["ts_ms"].tolist() == [5000, 6000]


def test_since_is_an_open_window_start():
    h = ContactHistory.empty().record(1000, 1, "sms").record(2000, 2, "sms")
    assert h.since(1000)["ts_ms"].tolist() == [2000]
    assert h.since(999)["ts_ms"].tolist() == [1000, 2000]


def test_unknown_channel_and_capacity_are_refused():
    with pytest.raises(ValueError, match="unknown channel"):
        ContactHistory.empty().record(0, 1, "fax")
    with pytest.raises(ValueError, match="capacity"):
        ContactHistory.empty(capacity=MAX_CAPACITY + 1)


def test_resized_keeps_the_most_recent():
    h = ContactHistory.empty(capacity=5)
    for i in range(5):
        h = h.record(i, i, "web")
    small = h.resized(2)
    assert small.capacity == 2 and small.records["offer_key"].tolist() == [3, 4]


contacts = st.lists(
    st.tuples(
        st.integers(0, 2**62),
        st.integers(0, 2**32 - 1),
        st.sampled_from(CHANNELS),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(contacts, st.integers(1, 30))
def test_codec_round_trip(items, capacity):
    h = ContactHistory.empty(capacity)
    for ts, key, ch in items:
        h = h.record(ts, key, ch)
    back = ContactHistory.decode(h.encode())
    assert back == h and back.capacity == capacity
    assert len(back) == min(len(items), capacity)
    assert np.all(np.diff(back.records["ts_ms"]) >= 0)


def test_decode_empty_and_corrupt():
    assert ContactHistory.decode(None, capacity=7) == ContactHistory.empty(7)
    good = ContactHistory.empty().record(1, 2, "sms").encode()
    with pytest.raises(HistoryCodecError, match="version"):
        ContactHistory.decode(b"\x09" + good[1:])
    with pytest.raises(HistoryCodecError, match="length"):
        ContactHistory.decode(good[:-1])
    with pytest.raises(HistoryCodecError, match="header"):
        ContactHistory.decode(b"\x01\x00")
    bad_channel = good[:-1] + bytes([200])
    with pytest.raises(HistoryCodecError, match="corrupt"):
        ContactHistory.decode(bad_channel)
    rec = struct.pack("<qIB", 5, 1, 0) + struct.pack("<qIB", 4, 1, 0)  # out of order
    with pytest.raises(HistoryCodecError, match="out of order"):
        ContactHistory.decode(struct.pack("<BxHI", 1, 64, 2) + rec)
