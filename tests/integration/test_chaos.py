"""The chaos test (``tools/chaos.py``): the worker SIGKILLed at random under traffic with
outcomes, once restarted from a wiped data dir; then, from the topics: no request without its
one decision, no outcome without its one delta or dead letter, arms equal to the outcomes sent,
local stores equal to the changelog.

CI runs a short plan; ``STREAM_APP_CHAOS_KILLS=10 STREAM_APP_CHAOS_SECONDS=90`` runs the long
one (``stream-app chaos --runs 3`` does the same against a running broker)."""

from __future__ import annotations

import os
import uuid

import pytest

from stream_app.settings import Settings
from stream_app.tools.chaos import ChaosPlan, run_chaos

pytestmark = pytest.mark.integration


def test_sigkills_lose_nothing_and_count_nothing_twice(kafka_bootstrap: str, tmp_path) -> None:
    kills = int(os.environ.get("STREAM_APP_CHAOS_KILLS", "3"))
    plan = ChaosPlan(seconds=float(os.environ.get("STREAM_APP_CHAOS_SECONDS", "24")),
                     kills=kills, wipe_at=max(1, kills // 2), customers=80, rate=30.0, seed=7)
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"chaos{run}-",
        app_id=f"chaos-{run}", partitions=4, data_dir=tmp_path / "state")
    report = run_chaos(settings, plan, tmp_path)
    print(report.summary())
    for example in report.examples:
        print(" ", example)
    assert report.kills == plan.kills and report.wiped == 1
    assert report.requests > 0 and report.outcomes > 0 and report.customers_checked > 0
    assert report.unanswered == 0 and report.unsettled == 0, report.summary()
    assert report.conflicting == 0 and report.double_settled == 0, report.summary()
    assert report.arms_mismatched == 0, report.summary()
    assert report.local_mismatched == 0, report.summary()
