"""When the worker checkpoints a partition's population state (``worker.checkpoints.Schedule``)."""

from __future__ import annotations

from stream_app.partition.checkpoints import Schedule


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_minimum_interval_every_nth_event_is_due():
    s = Schedule(every=5, min_interval_s=0.0, clock=Clock())
    s.loaded(0)
    due = [i for i in range(1, 21) if s.count(0)]
    assert due == [5, 10, 15, 20]


def test_at_a_high_event_rate_the_interval_bounds_the_checkpoints():
    clock = Clock()
    s = Schedule(every=2000, min_interval_s=30.0, clock=clock)
    s.loaded(0)
    due = []
    for i in range(300_001):  # 5,000 events/s for 60 s: 150 checkpoints by count alone
        clock.now = i / 5000
        if s.count(0):
            due.append(clock.now)
    assert due == [30.0, 60.0]


def test_a_slow_partition_waits_for_its_events_and_partitions_are_apart():
    clock = Clock()
    s = Schedule(every=3, min_interval_s=10.0, clock=clock)
    s.loaded(0)
    s.loaded(2)  # starts 0.236 of the way: int(0.708) = 0 events, 2.36 s ahead
    clock.now = 100.0  # long past the interval: the count decides
    assert [s.count(0), s.count(0), s.count(0)] == [False, False, True]
    assert [s.count(2), s.count(2)] == [False, False]  # partition 2 counts on its own
    clock.now = 105.0
    assert s.count(2) is True
    assert [s.count(0) for _ in range(5)] == [False] * 5  # 5 s since partition 0's checkpoint


def test_partitions_loaded_together_checkpoint_apart():
    clock = Clock()
    s = Schedule(every=2000, min_interval_s=30.0, clock=clock)
    for p in range(4):
        s.loaded(p)
    due: dict[int, list[float]] = {p: [] for p in range(4)}
    for i in range(1, 90 * 400):  # 400 events/s per partition for 90 s: the interval decides
        clock.now = i / 400
        for p in range(4):
            if s.count(p):
                due[p].append(clock.now)
    firsts = sorted(times[0] for times in due.values())
    assert all(b - a >= 3.0 for a, b in zip(firsts, firsts[1:]))  # not one long stall
    assert all(b - a >= 30.0 for times in due.values() for a, b in zip(times, times[1:]))
    assert all(len(times) >= 2 for times in due.values())


def test_a_checkpoint_outside_the_schedule_restarts_the_interval_without_the_spread():
    clock = Clock()
    s = Schedule(every=1, min_interval_s=10.0, clock=clock)
    s.loaded(1)
    clock.now = 2.0
    s.stored(1)  # e.g. a hand-over
    clock.now = 11.9
    assert s.count(1) is False
    clock.now = 12.0
    assert s.count(1) is True


def test_a_partition_that_comes_back_starts_its_count_and_interval_afresh():
    clock = Clock()
    s = Schedule(every=2, min_interval_s=10.0, clock=clock)
    s.loaded(0)
    clock.now = 50.0
    s.count(0)
    s.forget(0)
    s.loaded(0)  # reassigned and restored at t=50
    assert [s.count(0), s.count(0)] == [False, False]
    clock.now = 60.0
    assert s.count(0) is True
