"""Attribution timers: exactly-once expiry in event time, cancel, re-push, bounded heap, codec."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.expiry import ExpiryCodecError, ExpiryQueue

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)

# A script of operations: ("push", at, id) / ("cancel", id) / ("advance", watermark).
decision_ids = st.sampled_from([f"dc-{i}" for i in range(12)])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 1_000), decision_ids),
        st.tuples(st.just("cancel"), decision_ids),
        st.tuples(st.just("advance"), st.integers(0, 1_100)),
    ),
    max_size=80,
)


def reference(script):
    """The timers' meaning, spelled out without a heap: what each advance must return."""
    due: dict[str, int] = {}
    watermark = None
    fired = []
    for op in script:
        if op[0] == "push":
            due[op[2]] = op[1]
        elif op[0] == "cancel":
            due.pop(op[1], None)
        else:
            watermark = op[1] if watermark is None else max(watermark, op[1])
            now = sorted((at, d) for d, at in due.items() if at <= watermark)
            for _, d in now:
                del due[d]
            fired.append([d for _, d in now])
    return fired


def run(queue, script):
    fired = []
    for op in script:
        if op[0] == "push":
            queue.push(op[1], op[2])
        elif op[0] == "cancel":
            queue.cancel(op[1])
        else:
            fired.append(queue.advance(op[1]))
    return fired


@SETTINGS
@given(operations)
def test_queue_fires_exactly_what_the_reference_says(script):
    assert run(ExpiryQueue(), script) == reference(script)


@SETTINGS
@given(operations, operations)
def test_checkpoint_mid_stream_changes_nothing(before, after):
    queue = ExpiryQueue()
    run(queue, before)
    restored = ExpiryQueue.decode(queue.encode())
    assert restored == queue
    assert restored.encode() == queue.encode()
    assert run(restored, after) == reference(before + after)[len(reference(before)):]


def test_each_timer_fires_exactly_once():
    queue = ExpiryQueue()
    for i in range(100):
        queue.push(1_000 + 10 * i, f"dc-{i}")
    fired = []
    for watermark in range(0, 3_000, 7):
        fired += queue.advance(watermark)
    assert fired == [f"dc-{i}" for i in range(100)]
    assert queue.advance(10**12) == [] and len(queue) == 0


def test_out_of_order_pushes_fire_in_deadline_order_ties_by_id():
    queue = ExpiryQueue()
    for at, d in [(30, "dc-c"), (10, "dc-z"), (20, "dc-b"), (10, "dc-a")]:
        queue.push(at, d)
    assert queue.advance(25) == ["dc-a", "dc-z", "dc-b"]


def test_cancel_after_outcome_stops_the_timer():
    queue = ExpiryQueue()
    queue.push(100, "dc-1")
    queue.push(100, "dc-2")
    assert queue.cancel("dc-1") is True
    assert queue.cancel("dc-1") is False  # already gone
    assert queue.advance(100) == ["dc-2"]
    assert queue.cancel("dc-2") is False  # fired timers cannot be cancelled


def test_watermark_never_moves_back_and_late_pushes_fire_at_the_next_advance():
    queue = ExpiryQueue()
    assert queue.watermark_ms is None
    queue.advance(500)
    queue.advance(200)
    assert queue.watermark_ms == 500
    queue.push(300, "dc-late")  # already due
    assert queue.advance(0) == ["dc-late"]


def test_push_moves_an_existing_timer():
    queue = ExpiryQueue()
    queue.push(100, "dc-1")
    queue.push(500, "dc-1")  # keep it for late outcomes
    assert queue.advance(400) == []
    assert queue.advance(500) == ["dc-1"]
    assert queue.advance(10_000) == []


def test_heap_stays_bounded_under_cancel_and_move_churn():
    queue = ExpiryQueue()
    for i in range(10_000):
        queue.push(10**9 + i, f"dc-{i % 50}")  # 50 live timers, moved over and over
        if i % 3 == 0:
            queue.cancel(f"dc-{(i + 7) % 50}")
    assert len(queue) <= 50
    assert len(queue._heap) <= 2 * len(queue) + 65  # stale entries are compacted away


def test_encoding_does_not_depend_on_push_order():
    a, b = ExpiryQueue(), ExpiryQueue()
    for at, d in [(5, "x"), (3, "y"), (9, "é")]:
        a.push(at, d)
    for at, d in [(9, "é"), (5, "x"), (3, "y")]:
        b.push(at, d)
    assert a.encode() == b.encode()
    assert ExpiryQueue.decode(a.encode()).advance(10) == ["y", "x", "é"]


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00\x00",  # truncated header
        struct.pack("<BxxxqI", 2, 0, 0),  # unknown version
        struct.pack("<BxxxqI", 1, 0, 1),  # one timer announced, none stored
        struct.pack("<BxxxqI", 1, 0, 1) + struct.pack("<qH", 5, 4) + b"dc",  # id cut short
        struct.pack("<BxxxqI", 1, 0, 0) + b"junk",  # trailing bytes
        struct.pack("<BxxxqI", 1, 0, 1) + struct.pack("<qH", 5, 1) + b"\xff",  # not utf-8
    ],
)
def test_corrupt_state_is_refused(data):
    with pytest.raises(ExpiryCodecError):
        ExpiryQueue.decode(data)
