"""De-duplication window: detection within the last N ids, eviction, fixed state size, codec."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.dedup import DedupCodecError, DedupWindow

ids = st.lists(st.text(min_size=1, max_size=12), max_size=200)
capacities = st.integers(1, 80)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


@SETTINGS
@given(capacities, ids)
def test_every_id_among_the_last_n_remembered_is_detected(capacity, remembered):
    window = DedupWindow(capacity)
    for message_id in remembered:
        window.remember(message_id)
    for message_id in remembered[-capacity:]:
        assert window.seen_before(message_id)


@SETTINGS
@given(capacities, ids)
def test_codec_round_trip_and_size_is_bounded_by_capacity(capacity, remembered):
    window = DedupWindow(capacity)
    for message_id in remembered:
        window.remember(message_id)
    data = window.encode()
    # the ids remembered so far, never more than the capacity's
    assert len(data) == 8 + 8 * min(len(remembered), capacity)
    assert len(window) == min(len(remembered), capacity)
    decoded = DedupWindow.decode(data)
    assert decoded == window
    probe = remembered[-1] if remembered else "x"
    assert decoded.seen_before(probe) == window.seen_before(probe)
    decoded.remember("next")  # the decoded copy keeps working as a ring
    window.remember("next")
    assert decoded == window


def test_default_window_of_64_ids_is_520_bytes():
    window = DedupWindow()
    for i in range(1_000):
        window.remember(f"event-{i}")
    assert len(window.encode()) == 520


def test_oldest_id_is_evicted_once_the_window_is_full():
    window = DedupWindow(capacity=3)
    for message_id in ("a", "b", "c"):
        window.remember(message_id)
    assert window.seen_before("a")
    window.remember("d")
    assert not window.seen_before("a")
    assert all(window.seen_before(m) for m in ("b", "c", "d"))


def test_admit_accepts_new_ids_once_and_refuses_duplicates():
    window = DedupWindow(capacity=8)
    assert [window.admit(m) for m in ("o-1", "o-2", "o-1", "o-3", "o-2")] == [
        True, True, False, True, False]
    assert len(window) == 3  # duplicates were not remembered again


def test_never_seen_ids_are_not_reported():
    window = DedupWindow(capacity=64)
    for i in range(64):
        window.remember(f"in-{i}")
    assert not any(window.seen_before(f"out-{i}") for i in range(1_000))


def test_version_1_state_the_whole_ring_is_still_read():
    window = DedupWindow(capacity=4)
    for message_id in ("a", "b"):
        window.remember(message_id)
    v1 = struct.pack("<BxHHH", 1, 4, 2, 2) + window._ring.tobytes()  # v1 stored all 4 slots
    decoded = DedupWindow.decode(v1)
    assert decoded == window and decoded.seen_before("b") and not decoded.seen_before("c")
    assert len(decoded.encode()) == 8 + 8 * 2  # written back as v2


def test_a_key_with_one_message_stores_16_bytes_not_the_whole_ring():
    window = DedupWindow()
    window.remember("o-1")
    assert len(window.encode()) == 16


def test_empty_state_decodes_to_an_empty_window():
    assert len(DedupWindow.decode(None, capacity=16)) == 0
    assert DedupWindow.decode(b"", capacity=16).capacity == 16


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00",  # shorter than the header
        struct.pack("<BxHHH", 3, 1, 0, 0) + bytes(8),  # unknown version
        struct.pack("<BxHHH", 1, 2, 0, 0) + bytes(8),  # v1: body too short for capacity 2
        struct.pack("<BxHHH", 2, 4, 2, 2) + bytes(8),  # v2: body too short for 2 ids
        struct.pack("<BxHHH", 2, 4, 1, 3) + bytes(8),  # v2: not full, next slot is not size
        struct.pack("<BxHHH", 1, 1, 2, 0) + bytes(8),  # size above capacity
        struct.pack("<BxHHH", 1, 1, 1, 1) + bytes(8),  # next slot outside the ring
    ],
)
def test_corrupt_state_is_refused(data):
    with pytest.raises(DedupCodecError):
        DedupWindow.decode(data)


def test_capacity_must_fit_the_header():
    with pytest.raises(ValueError):
        DedupWindow(0)
    with pytest.raises(ValueError):
        DedupWindow(70_000)
