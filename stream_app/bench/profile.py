"""Where the worker's and the broker's CPU goes over one window of the main run (``--profile``).

The worker: py-spy samples its Python stacks into a raw file (collapsed stacks: one line
``frame;...;frame COUNT`` per distinct stack; with ``-t`` the first frame is the thread,
``thread (TID): NAME``), aggregated per function: inclusive (on the stack) and self (the leaf).
The broker: the JVM names its native threads, so their CPU from ``/proc`` adds up per thread
group (request handlers, network threads, GC, JIT compilers, ...).

>>> frame_key("Decider.decide (stream_app/core/decision.py:212)")
'Decider.decide (decision.py)'
>>> thread_group("data-plane-kafka-request-handler-3"), thread_group("GC Thread#1")
('request handlers', 'GC')
>>> thread_group("kafka-scheduler-7")
'kafka-scheduler'
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from stream_app.bench.probes import cpu_seconds, jvm_thread_dump, thread_ticks

TOP = 25  # rows of each function table
MAIN_THREAD = "MainThread"  # the worker's event loop: Faust's agents, tables and producers
NO_PYTHON_FRAME = "(no Python frame)"  # a thread running with none on its stack (yet)


def _pct(n: int, total: int) -> float:
    return round(100.0 * n / total, 2) if total else 0.0


# -- the worker: py-spy's raw stacks ---------------------------------------------------------
def frame_key(frame: str) -> str:
    """``function (path/to/file.py:LINE)`` -> ``function (file.py)``: one key per function,
    whichever of its lines was running."""
    name, sep, where = frame.rpartition(" (")
    if not sep or not where.endswith(")"):
        return frame
    path, colon, line = where[:-1].rpartition(":")
    if not colon or not line.isdigit():
        path = where[:-1]
    return f"{name} ({path.rsplit('/', 1)[-1]})"


def aggregate_stacks(raw: str, top: int | None = TOP) -> dict[str, Any]:
    """Per function, the share of samples with it on the stack (inclusive: once per sample, also
    when it recurses, so a caller and its callees overlap) and with it as the leaf (self: the
    shares of all functions add up to 100 %); per thread, its share of the samples. py-spy only
    samples threads that are running, so the samples are the busy time of the sampled threads."""
    total = 0
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        thread = None
        if frames[0].startswith("thread ("):  # "thread (TID): NAME", or "thread (TID)" unnamed
            first = frames.pop(0)
            thread = first.partition("): ")[2] or first
        keys = [frame_key(f) for f in frames] or [NO_PYTHON_FRAME]
        total += n
        inclusive.update(dict.fromkeys(keys, n))
        leaf[keys[-1]] += n
        if thread is not None:
            threads[thread] += n

    def rows(counts: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "share": _pct(v, total)}
                for k, v in counts.most_common(top)]

    return {"samples": total, "functions": len(inclusive), "leaf_functions": len(leaf),
            "threads": [{"thread": k, "samples": v, "share": _pct(v, total)}
                        for k, v in threads.most_common()],
            "main_thread_share": _pct(threads[MAIN_THREAD], total) if threads else None,
            "inclusive": rows(inclusive), "self": rows(leaf)}


# -- the broker: CPU per JVM thread ----------------------------------------------------------
_GROUPS = (  # (name prefix, group), first match wins; the JVM's full names or their comm
    ("data-plane-kafka-request-handler", "request handlers"),  # the broker's and the controller's
    ("data-plane-kafka-network-thread", "network threads"),
    ("data-plane-kafka-socket-acceptor", "network threads"),
    ("data-plane-kafk", "network threads + request handlers"),  # comm: names cut at 15 characters
    ("GC Thread", "GC"), ("G1 ", "GC"),
    ("C1 CompilerThre", "JIT compilers"), ("C2 CompilerThre", "JIT compilers"),
)
_NUMBERED = re.compile(r"(?:[#-]?\d+)+$")  # kafka-scheduler-7, G1 Refine#1, raft-scheduler0
_JVM_THREAD = re.compile(r'^"(?P<name>.*)" .*\bnid=(?P<nid>0x[0-9a-fA-F]+|\d+)', re.M)


def thread_group(name: str) -> str:
    """The group a broker thread's CPU is reported under: a known pool, else its name without
    the number that tells the pool's threads apart."""
    for prefix, group in _GROUPS:
        if name.startswith(prefix):
            return group
    return _NUMBERED.sub("", name).rstrip(" -#") or name


def thread_dump_names(dump: str) -> dict[int, str]:
    """Native thread id -> the JVM's name of the thread, from a ``jcmd PID Thread.print`` dump.

    >>> thread_dump_names('"kafka-scheduler-0" #87 daemon prio=5 os_prio=0 nid=0x45e6 waiting')
    {17894: 'kafka-scheduler-0'}
    """
    return {int(m["nid"], 0): m["name"] for m in _JVM_THREAD.finditer(dump)}


def cpu_by_thread_group(start: dict[int, tuple[str, int]], end: dict[int, tuple[str, int]],
                        seconds: float, ticks_per_s: float) -> dict[str, Any]:
    """CPU per thread group between two reads ``{tid: (name, utime + stime ticks)}`` of a
    process's threads ``seconds`` apart. A thread born in the window counts from 0; one that
    ended in it is not in ``end``, and what it used is counted nowhere (the process's own total
    still has it)."""
    groups: dict[str, list[int]] = {}
    for tid, (name, ticks) in end.items():
        before = start.get(tid, (name, 0))[1]
        used = ticks - before if ticks >= before else ticks  # a tid reused by a new thread
        g = groups.setdefault(thread_group(name), [0, 0])
        g[0] += 1
        g[1] += used
    total = sum(ticks for _, ticks in groups.values())
    rows = [{"group": name, "threads": n, "cpu_seconds": round(ticks / ticks_per_s, 2),
             "cores": round(ticks / ticks_per_s / seconds, 3), "share": _pct(ticks, total)}
            for name, (n, ticks) in sorted(groups.items(), key=lambda kv: (-kv[1][1], kv[0]))]
    return {"seconds": round(seconds, 2), "cpu_seconds": round(total / ticks_per_s, 2),
            "cores": round(total / ticks_per_s / seconds, 3), "threads": len(end),
            "threads_started": len(end.keys() - start.keys()),
            "threads_ended": len(start.keys() - end.keys()), "groups": rows}


# -- the window ------------------------------------------------------------------------------
_SPY_ERRORS = re.compile(r"Samples: \d+ Errors: (\d+)")  # py-spy's last words; --nonblocking
# reads stacks while they change, and a stack it cannot read is an error, not a sample


def py_spy() -> str | None:
    """The py-spy of the bench's own environment, else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class MainRunProfile(threading.Thread):
    """Started with the main run: ``after_s`` into it, py-spy records the worker for ``seconds``
    and the broker's threads are read; ``finish()`` once the phase is over gives both sections
    of the report. Nothing here stops the bench: what fails is reported as not taken."""

    def __init__(self, worker_pid: int, broker_pid: int | None, workdir: Path, *,
                 after_s: float, seconds: int, rate_hz: int = 100) -> None:
        super().__init__(name="bench-profile", daemon=True)
        self.worker_pid, self.broker_pid = worker_pid, broker_pid
        self.after_s, self.seconds, self.rate_hz = after_s, seconds, rate_hz
        self.raw = workdir / "worker-profile.raw"
        self.log = workdir / "py-spy.log"
        exe = py_spy()
        # -t: the thread as the first frame of each stack (the main thread against the others)
        self.command = None if exe is None else [
            exe, "record", "-p", str(worker_pid), "-r", str(rate_hz), "-f", "raw",
            "-o", str(self.raw), "--nonblocking", "-t", "-d", str(seconds)]
        self.not_taken = (f"py-spy not found beside {sys.executable} or on PATH"
                          if exe is None else None)
        self.spy: subprocess.Popen | None = None
        # (monotonic time, the broker's threads, its CPU seconds) at the window's start and end
        self.window: list[tuple[float, dict[int, tuple[str, int]], float | None]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        if self.seconds < 1 or self._halt.wait(self.after_s):
            return  # too short, or the phase ended (overloaded) before the window
        self._mark()
        if self.command is not None:
            try:
                with open(self.log, "wb") as log:
                    self.spy = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)
            except OSError as exc:
                self.not_taken = f"py-spy did not start: {exc}"
        self._halt.wait(self.seconds)
        self._mark()

    def _mark(self) -> None:
        pid = self.broker_pid
        self.window.append((time.monotonic(), {} if pid is None else thread_ticks(pid),
                            None if pid is None else cpu_seconds(pid)))

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop the window (and py-spy, by its pid, if it outlived the phase); aggregate."""
        self._halt.set()
        self.join()
        return self._worker(), self._broker()

    def _window_s(self) -> float | None:
        return self.window[1][0] - self.window[0][0] if len(self.window) == 2 else None

    def _no_window(self) -> str:
        return ("the main run is too short for a window" if self.seconds < 1
                else "the main run ended before the window")

    def _worker(self) -> dict[str, Any]:
        if self.spy is None:
            return {"taken": False, "reason": self.not_taken or self._no_window()}
        if self.spy.poll() is None:  # SIGINT: py-spy writes what it has sampled and exits
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(15)
            except subprocess.TimeoutExpired:
                self.spy.kill()
                self.spy.wait()
        if self.spy.returncode != 0 or not self.raw.exists():
            said = self.log.read_text(errors="replace").strip().splitlines()
            return {"taken": False, "reason": f"py-spy exited with {self.spy.returncode}"
                    + (f": {said[-1]}" if said else "")}
        stacks = aggregate_stacks(self.raw.read_text(errors="replace"))
        errors = _SPY_ERRORS.search(self.log.read_text(errors="replace"))
        return {"taken": True, "command": shlex.join(self.spy.args), "raw": str(self.raw),
                "rate_hz": self.rate_hz, "from_s": round(self.after_s, 2),
                "seconds": round(self._window_s(), 2),
                "sampling_errors": int(errors[1]) if errors else None, **stacks}

    def _broker(self) -> dict[str, Any]:
        if self.broker_pid is None:
            return {"measured": False, "reason": "external broker"}
        seconds = self._window_s()
        if seconds is None:
            return {"measured": False, "reason": self._no_window()}
        (_, start, cpu0), (_, end, cpu1) = self.window
        # after the window: the dump costs the machine about a second of CPU (jcmd is a JVM)
        names = thread_dump_names(jvm_thread_dump(self.broker_pid))
        out = cpu_by_thread_group(
            {tid: (names.get(tid, comm), t) for tid, (comm, t) in start.items()},
            {tid: (names.get(tid, comm), t) for tid, (comm, t) in end.items()},
            seconds, os.sysconf("SC_CLK_TCK"))
        process = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        return {"measured": True,
                "names": "the JVM's (jcmd Thread.print)" if names
                else "/proc comm, cut at 15 characters (no jcmd)",
                "process_cpu_seconds": None if process is None else round(process, 2),
                "process_cores": None if process is None else round(process / seconds, 3), **out}
