"""The bench's ``--profile`` figures out of their raw inputs (``bench.profile``): py-spy's collapsed
stacks per function, and the broker's per-thread CPU per thread group."""

from __future__ import annotations

import pytest

from stream_app.bench.profile import aggregate_stacks, cpu_by_thread_group, thread_group
from stream_app.bench.report import _broker_thread_lines, _profile_lines

# 10 samples: a recursive function, a leaf reached from two callers, two threads; the frame
# format and the thread frame are py-spy 0.4's (`record -f raw -t`)
RAW = """\
thread (101): MainThread;run (cli.py:10);walk (tree.py:5);walk (tree.py:7);walk (tree.py:7) 4
thread (101): MainThread;run (cli.py:10);walk (tree.py:5);leaf (stream_app/core/x.py:3) 2
thread (101): MainThread;run (cli.py:10);decide (stream_app/core/decision.py:40) 1
thread (101): MainThread;run (cli.py:11);decide (stream_app/core/decision.py:41);leaf (x.py:4) 1
thread (202): Thread-2 (pump);Thread._bootstrap (threading.py:1002);pump (io.py:9) 2
"""


def by_function(rows):
    return {r["function"]: r for r in rows}


def test_inclusive_counts_a_function_once_per_sample_even_when_it_recurses():
    agg = aggregate_stacks(RAW)
    assert agg["samples"] == 10
    inc = by_function(agg["inclusive"])
    assert inc["walk (tree.py)"]["samples"] == 6  # 4 recursive + 2 with leaf below, not 4*3 + 2
    assert inc["run (cli.py)"]["samples"] == 8  # two lines of run: one function
    assert inc["run (cli.py)"]["share"] == 80.0
    assert inc["leaf (x.py)"]["samples"] == 3  # two paths to the same file's base name


def test_self_is_the_leaf_and_self_shares_add_up_to_100():
    agg = aggregate_stacks(RAW, top=None)
    own = by_function(agg["self"])
    assert own["walk (tree.py)"]["samples"] == 4
    assert own["leaf (x.py)"]["samples"] == 3
    assert "run (cli.py)" not in own  # never the leaf: inclusive only
    assert sum(r["samples"] for r in agg["self"]) == agg["samples"]
    assert sum(r["share"] for r in agg["self"]) == pytest.approx(100.0)
    assert agg["functions"] == len(agg["inclusive"]) == 6  # the thread frame is no function


def test_a_thread_without_python_frames_is_still_a_sample():
    agg = aggregate_stacks(RAW + "thread (101): MainThread 2\n")
    assert agg["samples"] == 12 and agg["main_thread_share"] == pytest.approx(83.33)
    assert by_function(agg["self"])["(no Python frame)"]["samples"] == 2


def test_threads_are_told_apart_by_their_first_frame():
    agg = aggregate_stacks(RAW)
    assert agg["main_thread_share"] == 80.0
    assert {t["thread"]: t["share"] for t in agg["threads"]} == {"MainThread": 80.0,
                                                                 "Thread-2 (pump)": 20.0}
    assert "Thread._bootstrap (threading.py)" in by_function(agg["inclusive"])


def test_without_thread_frames_there_is_no_thread_split_and_top_cuts_the_tables():
    raw = "a (m.py:1);b (m.py:2) 3\na (m.py:1);c (m.py:3) 1\n\nnot a stack line\n"
    agg = aggregate_stacks(raw, top=1)
    assert agg["samples"] == 4 and agg["threads"] == [] and agg["main_thread_share"] is None
    assert agg["inclusive"] == [{"function": "a (m.py)", "samples": 4, "share": 100.0}]
    assert agg["self"] == [{"function": "b (m.py)", "samples": 3, "share": 75.0}]
    assert aggregate_stacks("")["samples"] == 0


@pytest.mark.parametrize("name, group", [
    ("data-plane-kafka-request-handler-7", "request handlers"),
    ("data-plane-kafka-network-thread-1-PLAINTEXT-PLAINTEXT-2", "network threads"),
    ("data-plane-kafka-socket-acceptor-CONTROLLER-PLAINTEXT-37511", "network threads"),
    ("data-plane-kafk", "network threads + request handlers"),  # comm only: cut at 15
    ("GC Thread#1", "GC"), ("G1 Refine#0", "GC"), ("G1 Conc#0", "GC"),
    ("C2 CompilerThread0", "JIT compilers"), ("C1 CompilerThre", "JIT compilers"),
    ("kafka-scheduler-9", "kafka-scheduler"),
    ("kafka-1-raft-scheduler0", "kafka-1-raft-scheduler"),
    ("group-coordinator-event-processor-3", "group-coordinator-event-processor"),
    ("ExpirationReaper-1-Fetch", "ExpirationReaper-1-Fetch"), ("VM Thread", "VM Thread"),
])
def test_broker_threads_group_by_pool(name, group):
    assert thread_group(name) == group


def test_broker_cpu_per_group_counts_new_threads_from_zero():
    h0, h1 = "data-plane-kafka-request-handler-0", "data-plane-kafka-request-handler-1"
    start = {1: (h0, 100), 2: (h1, 50), 3: ("GC Thread#0", 10),
             4: ("kafka-scheduler-1", 5)}  # 4 ends in the window
    end = {1: (h0, 300), 2: (h1, 150), 3: ("GC Thread#0", 10),
           5: ("GC Thread#1", 100)}  # 5 is born in it
    out = cpu_by_thread_group(start, end, seconds=2.0, ticks_per_s=100)
    groups = {g["group"]: g for g in out["groups"]}
    assert groups["request handlers"] == {"group": "request handlers", "threads": 2,
                                          "cpu_seconds": 3.0, "cores": 1.5, "share": 75.0}
    assert groups["GC"]["cpu_seconds"] == 1.0 and groups["GC"]["threads"] == 2
    assert [g["group"] for g in out["groups"]] == ["request handlers", "GC"]  # most CPU first
    assert out["cpu_seconds"] == 4.0 and out["cores"] == 2.0
    assert sum(g["share"] for g in out["groups"]) == pytest.approx(100.0)
    assert (out["threads"], out["threads_started"], out["threads_ended"]) == (4, 1, 1)


def test_the_report_sections_say_why_a_figure_is_missing():
    assert _profile_lines({"taken": False, "reason": "py-spy exited with 1: denied"}) == [
        "", "profile: not taken (py-spy exited with 1: denied)"]
    assert _broker_thread_lines({"measured": False, "reason": "external broker"}) == [
        "", "broker threads: not measured (external broker)"]


def test_the_report_sections_show_the_tables():
    prof = {"taken": True, "command": "py-spy record ...", "raw": "w.raw", "rate_hz": 100,
            "from_s": 5.0, "seconds": 0.1, "sampling_errors": 0, **aggregate_stacks(RAW, top=2)}
    md = "\n".join(_profile_lines(prof))
    assert "Where the worker's time goes (py-spy, main run)" in md
    assert "running at ~80% of its ticks" in md  # 8 main-thread samples in 0.1 s at 100 Hz
    assert "| `run (cli.py)` | 8 | 80.0 |" in md
    assert "| the other 2 functions | 3 | 30.0 |" in md  # self: walk 4 and leaf 3 shown of 10
    threads = cpu_by_thread_group({}, {1: ("GC Thread#0", 199), 2: ("VM Thread", 1)}, 2.0, 100)
    md = "\n".join(_broker_thread_lines({"measured": True, "names": "comm", **threads,
                                         "process_cpu_seconds": 2.0, "process_cores": 1.0}))
    assert "Broker CPU by thread group (main run)" in md
    assert "| GC | 1 | 1.99 | 0.995 | 99.5 |" in md
    assert "| other (1 group under 1 %) | 1 | 0.01 | 0.005 | 0.5 |" in md  # VM Thread
    assert "| all threads | 2 | 2.00 | 1.000 | 100 |" in md
