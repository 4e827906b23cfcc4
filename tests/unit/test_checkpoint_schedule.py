"""When the worker checkpoints a partition's population state (``worker.checkpoints.Schedule``)."""

from __future__ import annotations

from stream_app.worker.checkpoints import Schedule


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
    s.loaded(1)
    clock.now = 100.0  # long past the interval: the count decides
    assert [s.count(0), s.count(0), s.count(0)] == [False, False, True]
    assert [s.count(1), s.count(1)] == [False, False]  # partition 1 counts on its own
    clock.now = 105.0
    assert s.count(1) is True  # 100 s since it was loaded
    assert [s.count(0) for _ in range(5)] == [False] * 5  # 5 s since partition 0's checkpoint


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
