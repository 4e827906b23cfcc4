"""The worker's garbage-collector tuning and pause measurement (``worker/collector.py``)."""

from __future__ import annotations

import gc

import pytest

from stream_app.worker import collector


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_freezes_what_is_alive_and_sets_the_young_threshold(restored_gc):
    alive = [{"k": i} for i in range(1000)]  # containers: tracked by the collector
    done = collector.tune(5_000)
    assert done["thresholds"][0] == 5_000 == gc.get_threshold()[0]
    assert done["frozen_objects"] == gc.get_freeze_count() >= len(alive)
    # no generation holds them any more: no collection walks them
    walked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
    assert not any(id(a) in walked for a in alive)
    collector.tune(0)
    assert gc.get_threshold()[0] == 5_000  # 0 keeps the threshold in force


def test_pauses_are_counted_per_generation_and_reset_by_each_report():
    long = []
    pauses = collector.Pauses(warn_ms=0.0, on_long_pause=lambda g, ms: long.append((g, ms)))
    pauses.install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.uninstall()
    report = pauses.report()
    assert report["gc_collections"][0] >= 1 and report["gc_collections"][2] >= 1
    assert report["gc_pause_max_ms"] >= max(report["gc_pause_ms"]) / max(
        sum(report["gc_collections"]), 1)
    assert {g for g, _ in long} >= {0, 2} and all(ms >= 0 for _, ms in long)
    assert pauses.report() == {"gc_collections": [0, 0, 0], "gc_pause_ms": [0.0, 0.0, 0.0],
                               "gc_pause_max_ms": 0.0}


def test_installing_twice_counts_each_collection_once():
    pauses = collector.Pauses(warn_ms=1e9)
    pauses.install()
    pauses.install()
    try:
        gc.collect(1)
    finally:
        pauses.uninstall()
    assert pauses._callback not in gc.callbacks
    assert sum(pauses.report()["gc_collections"]) == 1
