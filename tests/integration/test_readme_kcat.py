"""The README's kcat examples, run as written against a worker: the request gets a decision, the
outcome gets its delta. Only the broker address and the topic names are the test's own."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import orjson
import pytest

from stream_app.core.decision import decision_id_for
from stream_app.settings import PROJECT_ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed "
                       "(scripts/setup.sh installs it with apt-get on Debian as root)"),
]


def readme_kcat_commands() -> list[str]:
    """The commands of the README's code block that produces with kcat, continuation lines
    joined."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "kcat -P" in b)
    return [c.strip() for c in block.replace("\\\n", " ").splitlines()
            if c.strip() and not c.strip().startswith("#")]


def _ours(command: str, bootstrap: str, prefix: str) -> str:
    command = re.sub(r"-b \S+", f"-b {bootstrap}", command)
    return re.sub(r"-t (\S+)", lambda m: f"-t {prefix}{m.group(1)}", command)


def _until_found(command: str, timeout_s: float = 60.0) -> str:
    """Run a consuming command again until it prints something (grep finds its line)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
        if run.returncode == 0 and run.stdout.strip():
            return run.stdout
        time.sleep(0.5)
    raise AssertionError(f"nothing from {command!r} within {timeout_s} s")


def test_readme_kcat_examples_get_a_decision_and_a_delta(engine):
    commands = readme_kcat_commands()
    assert [c.split("kcat ")[1][:2] for c in commands] == ["-P", "-C", "-P", "-C"]
    produce_request, read_decision, produce_outcome, read_delta = (
        _ours(c, engine.settings.bootstrap_servers, engine.settings.topic_prefix) for c in commands)

    subprocess.run(["bash", "-c", produce_request], check=True, timeout=60)
    decision = orjson.loads(_until_found(read_decision).splitlines()[0])
    assert decision["request_id"] == "rq-readme-1" and decision["customer_id"] == "c-42"
    assert decision["action"] == "offer"
    # the outcome example names the decision by the id the README says it has
    assert decision["decision_id"] == decision_id_for("rq-readme-1")
    assert decision["decision_id"] in produce_outcome

    subprocess.run(["bash", "-c", produce_outcome], check=True, timeout=60)
    batch = orjson.loads(_until_found(read_delta).splitlines()[0])
    delta = next(r for r in batch["outcomes"] if r["decision_id"] == decision["decision_id"])
    assert (delta["outcome_type"], delta["actual"]) == ("clicked", 1.0)
    assert delta["delta"] == pytest.approx(1.0 - delta["predicted"])
    assert engine.readers["dead-letter"].poll(0.5) == []
