"""A budget through the real broker: 4 partitions, the worker's own learner, customers on every
partition accepting every offer they are shown. The budget is never exceeded, and once it is
spent the offer is refused with the reason (``stream_app/fleet/budgets.py``)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from stream_app.kafka.topics import create_topics
from stream_app.settings import Settings

from .conftest import TWO_OFFERS, Engine

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000
BUDGET = 6
CONFIG = {**TWO_OFFERS, "version": "it-budget", "budgets": {"cashback": {"count": BUDGET}}}
SPENT = f"budget: count budget of {BUDGET} spent ({BUDGET} accepted fleet-wide)"


def test_a_count_budget_holds_across_four_partitions(kafka_bootstrap: str, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"bu{run}-",
        app_id=f"bu-{run}", partitions=4, data_dir=tmp_path / "state")
    create_topics(settings)
    engine = Engine(settings, tmp_path)
    engine.publish_config(CONFIG)
    engine.start()
    try:
        shown, refusals = [], []
        deadline = time.monotonic() + 150
        wave = 0
        while SPENT not in refusals and time.monotonic() < deadline:
            requests = [{"request_id": f"rq-{uuid.uuid4().hex}", "customer_id": f"c-bu{i}",
                         "ts": T0 + wave * 2_000 + i, "channel": "app", "use_case": "default",
                         "candidates": ["cashback"]} for i in range(16)]
            engine.send_many("decision-requests", requests)
            ids = {r["request_id"] for r in requests}
            decisions = [d for d in engine.collect(
                "decisions", lambda ms, ids=ids: ids <= {m["request_id"] for m in ms},
                timeout_s=90)
                if d["request_id"] in ids]
            offers = [d for d in decisions if d["action"] == "offer"]
            shown += offers
            refusals += [why for d in decisions if d["action"] == "no_action"
                         for why in d["rule_reasons"]["cashback"]]
            engine.send_many("outcomes", [{  # every offer shown is accepted
                "outcome_id": f"o-{d['decision_id']}", "decision_id": d["decision_id"],
                "customer_id": d["customer_id"], "ts": d["ts"] + 1_000, "type": "accepted"}
                for d in offers])
            wave += 1
            time.sleep(0.5)
        assert SPENT in refusals, refusals[-5:]
        assert len(shown) == BUDGET  # every one accepted: never more shown than the budget
        assert len({d["customer_id"] for d in shown}) > 1
        assert all(why.startswith("budget: ") for why in refusals)
    finally:
        engine.close()
