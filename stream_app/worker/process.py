"""A worker as a child process: started as ``stream-app worker``, stopped by its pid.

The demo, replay's sandbox, the benchmark harness and the integration tests each run a worker of
their own; they start and stop it the same way, here: the same interpreter, the environment they
give (settings travel as ``STREAM_APP_*`` variables), output to their log, no stdin; stopping
sends SIGTERM (the worker commits and flushes its tables on the way out) and kills the process
only if it has not exited within ``timeout_s``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO

__all__ = ["spawn_worker", "stop_worker"]


def spawn_worker(env: Mapping[str, str], log: IO[bytes],
                 args: Sequence[str] = ("-m", "stream_app.cli", "worker")) -> subprocess.Popen:
    """Start ``stream-app worker`` (or the interpreter with ``args``: the benchmark's relay) with
    ``env``, stdout and stderr to ``log``."""
    return subprocess.Popen([sys.executable, *args], env=dict(env),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_worker(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns once the process has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
