"""Failpoints (stream_app/failpoints.py): the process dies at its point, with its input, once."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from stream_app.settings import Settings
from stream_app.failpoints import Failpoint

SCRIPT = """
from stream_app.failpoints import Failpoint
point = Failpoint.parse("committing:outcomes", lambda name: "p-" + name)
point.reached("processed", {"p-outcomes"})  # another point
point.reached("committing", {"p-decision-requests"})  # another input
print("alive", flush=True)
point.reached("committing", {"p-decision-requests", "p-outcomes"})
print("still alive", flush=True)
"""


def test_the_process_dies_at_its_point_with_its_input_only() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == "alive\n"
    assert done.returncode == -signal.SIGKILL


def test_a_wrong_failpoint_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="STREAM_APP_FAIL_AT"):
        Settings.from_env({"STREAM_APP_FAIL_AT": "committing"})
    assert Settings.from_env({}).fail_at == ""
    assert Failpoint.parse("processed:outcomes", str) == Failpoint("processed", "outcomes")
