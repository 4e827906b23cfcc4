"""The silence schedule: on disk (RocksDB) and in memory, the same entries fire in the same
order, as a plain set of ``(due, customer id)`` says they should, and the partition's clock
fires them among its other timers in one order."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from stream_app.core.feedback import PendingDecision
from stream_app.partition.clock import ENROLMENT_TIMER, SILENCE_TIMER, EventTimeRule, PartitionClock
from stream_app.partition.silence import MemorySilence, RocksSilence, _key

# ids whose bytes sort as their characters do (non-ASCII too) and a prefix of another
customers = st.sampled_from(["a", "ab", "b", "c10", "c9", "é", "中", "z"])
dues = st.integers(-3, 12) | st.integers(-(2**62), 2**62)
ops = st.lists(st.one_of(
    st.tuples(st.just("move"), customers, st.none() | dues, st.none() | dues),
    st.tuples(st.just("cancel"), customers, dues),
    st.tuples(st.just("add"), st.lists(st.tuples(customers, dues), max_size=4)),
    st.tuples(st.just("fire"), dues),
    st.tuples(st.just("clear")),
), max_size=60)


def expected(model: set[tuple[int, str]], op: tuple) -> object:
    """What ``op`` returns, on a set of entries (changed in place)."""
    if op[0] == "move":
        _, cid, previous, due = op
        if previous != due:
            model.discard((previous, cid))
            if due is not None:
                model.add((due, cid))
        return None
    if op[0] == "add":
        model.update((due, cid) for cid, due in op[1])
        return None
    if op[0] == "cancel":
        entry = (op[2], op[1])
        found = entry in model
        model.discard(entry)
        return found
    if op[0] == "fire":
        fired = sorted(e for e in model if e[0] <= op[1])
        model.difference_update(fired)
        return fired
    model.clear()
    return None


def apply(schedule, op: tuple) -> object:
    if op[0] == "move":
        return schedule.move(op[1], op[2], op[3])
    if op[0] == "add":
        return schedule.add(op[1])
    if op[0] == "cancel":
        return schedule.cancel(op[1], op[2])
    if op[0] == "fire":
        return schedule.fire(op[1])
    return schedule.clear()


@settings(max_examples=60, deadline=None)
@given(ops)
def test_both_schedules_fire_what_a_set_of_entries_says(script):
    with tempfile.TemporaryDirectory() as tmp:
        on_disk, in_memory = RocksSilence(Path(tmp) / "p0"), MemorySilence()
        model: set[tuple[int, str]] = set()
        try:
            for op in script:
                want = expected(model, op)
                assert apply(on_disk, op) == want, op
                assert apply(in_memory, op) == want, op
            rest = sorted(model)
            assert on_disk.fire(2**62) == rest and in_memory.fire(2**62) == rest
        finally:
            on_disk.close()


def test_a_schedule_on_disk_is_wiped_at_its_first_use_and_removed_when_closed(tmp_path):
    path = tmp_path / "silence" / "partition-3"
    first = RocksSilence(path)
    first.move("c1", None, 1_000)
    first.close()
    assert not path.exists()
    first.move("c2", None, 500)  # closed: keeps nothing, fires nothing
    assert first.fire(10_000) == [] and first.cancel("c1", 1_000) is False
    left = Rdict(str(path), options=Options(raw_mode=True))  # what a crashed life left
    left.put(_key(1_000, "c4"), b"")
    left.close()
    again = RocksSilence(path)
    try:
        again.move("c5", None, 500)
        assert again.fire(10_000) == [(500, "c5")]  # c4 was wiped when it opened
    finally:
        again.close()


def test_many_moves_keep_the_in_memory_heap_bounded():
    schedule = MemorySilence()
    for i in range(10_000):
        schedule.move(f"c{i % 100}", None if i < 100 else i - 100, i)
    assert len(schedule._heap) <= 2 * 100 + 65
    assert [c for _, c in schedule.fire(20_000)] == [f"c{i}" for i in range(100)]


def test_the_clock_fires_silences_among_its_other_timers_in_one_order(tmp_path):
    # the order of one queue holding every timer: by due time, then timer id (an enrolment's,
    # a silence's, a decision's), whichever schedule holds the silences
    for silences in (MemorySilence(), RocksSilence(tmp_path / "p0")):
        clock = PartitionClock(silences=silences, rule=EventTimeRule(max_future_ms=0))
        clock.schedule(PendingDecision("dc-1", "c7", "o1", "default", "thompson", "all", 0.1,
                                       0.5, 0, 1_000))
        clock.schedule_enrolment("c3", "e1", 1_000)
        clock.schedule_silence("c1", 1_000)
        clock.schedule_silence("c9", 400)
        clock.schedule_silence("c9", 500, previous_ms=400)  # moved by an interaction
        clock.schedule_silence("c2", 2_000)
        assert clock.advance(1_500) == [("c9", SILENCE_TIMER), ("c3", f"{ENROLMENT_TIMER}e1"),
                                        ("c1", SILENCE_TIMER), ("c7", "dc-1")]
        assert clock.cancel("c2", silence_ms=2_000) == 1
        assert clock.advance(10_000) == []
        silences.close()


def test_a_schedule_on_disk_charges_the_memory_budget_it_is_given(tmp_path):
    # the worker hands every partition's schedule its one RocksDB budget (worker/storage.py):
    # the schedule's memtables count in that cache, not beside it
    from stream_app.worker.storage import Budget

    budget = Budget(8)
    cache, manager = budget.shared()
    schedule = RocksSilence(tmp_path / "p0", shared=(cache, manager))
    for i in range(2_000):
        schedule.move(f"c{i:06d}", None, 1_000 + i)
    assert manager.get_usage() > 0 and cache.get_usage() >= manager.get_usage()
    assert [cid for _, cid in schedule.fire(1_002)] == ["c000000", "c000001", "c000002"]
    schedule.close()
