"""A planted concept drift: detected within a stated number of outcomes, and learning recovers.

``World(seed=7, n_customers=120, days=40, decisions_per_day=1.5)`` with tastes inverted at day 20
(``drift_kind="invert"``: every persona's favourite offer becomes the one it dislikes and every
other offer becomes a favourite). The suite learns online throughout (``train_until=1.0``) and
every propensity is scored before its outcome is learned (prequential). Measured figures are
printed with ``-s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.models import ModelSuite, SuiteConfig, auc
from stream_app.models.harness import run
from stream_app.models.synthetic import DAY_MS, World

pytestmark = pytest.mark.simulation

WORLD = World(seed=7, n_customers=120, days=40, decisions_per_day=1.5, drift_day=20,
              drift_kind="invert")  # fmt: skip
DRIFT_MS = WORLD.start_ms + 20 * DAY_MS


@pytest.fixture(scope="module")
def result():
    suite = ModelSuite(SuiteConfig(churn_horizon_s=7 * 86400.0, churn_period_s=2 * 86400.0))
    return suite, run(WORLD, suite, train_until=1.0)


def response_drifts(r):
    return [d for d in r.drifts if d["model"] == "engagement" or d["model"].startswith("prop")]


def window_auc(r, lo_day: float, hi_day: float) -> float:
    ts = np.array([t for t, _, _ in r.online])
    keep = (ts >= WORLD.start_ms + lo_day * DAY_MS) & (ts < WORLD.start_ms + hi_day * DAY_MS)
    y = np.array([y for _, y, _ in r.online])[keep]
    p = np.array([p for _, _, p in r.online])[keep]
    return auc(y, p)


def test_drift_is_detected_soon_after_it_happens(result):
    _, r = result
    drifts = response_drifts(r)
    assert [d for d in drifts if d["ts"] < DRIFT_MS] == []  # no false alarm before it
    first = drifts[0]
    outcomes_until = sum(1 for t, _, _ in r.online if DRIFT_MS <= t < first["ts"])
    per_offer = {d["model"] for d in drifts if d["model"].startswith("prop")
                 and d["ts"] < DRIFT_MS + 10 * DAY_MS}  # fmt: skip
    print(f"\nfirst drift record: {first['model']}/{first['candidate']} after {outcomes_until} "
          f"outcomes ({(first['ts'] - DRIFT_MS) / DAY_MS:.2f} days); offer models that "
          f"detected within 10 days: {len(per_offer)} of {WORLD.n_offers}")  # fmt: skip
    assert outcomes_until <= 300
    assert len(per_offer) >= 4
    assert first["kind"] == "drift" and first["action"] == "reset"


def test_accuracy_drops_then_recovers(result):
    _, r = result
    before, hit, later = window_auc(r, 12, 20), window_auc(r, 20, 23), window_auc(r, 35, 40)
    print(f"\nprequential propensity AUC: days 12-20 {before:.3f}, 20-23 {hit:.3f}, "
          f"35-40 {later:.3f}")  # fmt: skip
    assert before >= 0.75
    assert hit <= before - 0.15  # the planted drift is real
    assert later >= 0.75 and later >= before - 0.03  # recovered
