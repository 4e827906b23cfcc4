"""Event-time buckets of the dashboard's charts: coarsening keeps every sum, aligned buckets,
bounded memory whatever timestamps arrive."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.dashboard.series import WIDTHS_MS, TimeBuckets


def test_the_width_ladder_divides_evenly():
    assert all(b % a == 0 for a, b in pairwise(WIDTHS_MS))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40 * 86_400_000), st.sampled_from("ab"),
                          st.integers(0, 3)), min_size=1, max_size=200),
       st.integers(2, 30))
def test_coarsening_keeps_every_sum_while_the_span_fits(events, max_buckets):
    tb = TimeBuckets(max_buckets)
    for ts, key, v in events:
        tb.add(ts, key, (1.0, float(v)))
    rows = list(tb.rows())
    width = tb.width_ms
    assert len(rows) <= max_buckets
    assert all(start % width == 0 for start, _ in rows)
    assert [s for s, _ in rows] == list(range(rows[0][0], rows[-1][0] + width, width))
    # 40 days fit in 30 one-week buckets and more: nothing is dropped; every event is in the
    # bucket that holds its timestamp
    if tb.dropped == 0:
        for key in "ab":
            expected = [(sum(1 for ts, k, _ in events if k == key and s <= ts < s + width),
                         sum(v for ts, k, v in events if k == key and s <= ts < s + width))
                        for s, _ in rows]
            got = [tuple(sums[key]) if key in sums else (0, 0) for _, sums in rows]
            assert got == expected


def test_past_the_widest_step_the_oldest_buckets_go():
    tb = TimeBuckets(max_buckets=3)
    week = WIDTHS_MS[-1]
    for k in range(5):
        tb.add(k * week, "n", (1.0,))
    assert tb.width_ms == week and tb.dropped == 2
    assert [start for start, _ in tb.rows()] == [2 * week, 3 * week, 4 * week]


def test_a_bucket_per_second_until_the_span_needs_more():
    tb = TimeBuckets(max_buckets=60)
    for s in range(60):
        tb.add(s * 1_000 + 999, "n", (1.0,))
    assert tb.width_ms == 1_000
    tb.add(60_000, "n", (1.0,))  # the 61st second: 5 s buckets
    assert tb.width_ms == 5_000
    assert [sums["n"][0] for _, sums in tb.rows()] == [5.0] * 12 + [1.0]


def test_needs_room_for_two_buckets():
    with pytest.raises(ValueError):
        TimeBuckets(max_buckets=1)
