"""ModelSuite plumbing, churn labels, customer scores and their rate limit."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import stream_app.models as models_pkg
import stream_app.profile as profile_pkg
from stream_app.core.catalogue import offer_key
from stream_app.models import ModelSuite, SuiteConfig, customer_scores, mark_emitted, should_emit
from stream_app.models import checkpoint
from stream_app.models.labels import churn_checkpoints
from stream_app.models.synthetic import World
from stream_app.profile import Profile, apply_interaction, apply_outcome

DAY = 86_400_000
ROOT = Path(__file__).resolve().parents[2]
FAST = SuiteConfig(classifiers=("logreg",), regressors=("blr", "mean"), churn_horizon_s=7 * 86400.0,
                   churn_period_s=2 * 86400.0, min_select=5)  # fmt: skip


def login(ts: int) -> dict:
    return {"ts": ts, "type": "login", "channel": "app"}


def test_packages_never_import_kafka_clients():
    banned = {"faust", "aiokafka", "confluent_kafka"}
    for pkg in (models_pkg, profile_pkg):
        for path in Path(pkg.__file__).parent.glob("*.py"):
            tree = ast.parse(path.read_text())
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}  # fmt: skip
            names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                      if isinstance(n, ast.ImportFrom)}  # fmt: skip
            assert not names & banned, path


def test_churn_checkpoints_by_hand():
    p = apply_interaction(Profile.empty(), login(0))  # first seen 0: checkpoints at 10, 20, ...
    p = apply_interaction(p, login(12))
    # next interaction at 50, horizon 20: checkpoints 20 and 30 are within a horizon of 12;
    # 50 - 20 > 20 (churned at 20), 50 - 30 = 20 (not more than a horizon: still active)
    assert churn_checkpoints(p, 50, 50, 20, 10) == ([(20, True), (30, False)], 30)
    assert churn_checkpoints(p, 38, 38, 20, 10) == ([(20, False), (30, False)], 30)
    # silence: only checkpoints a full horizon old are final
    assert churn_checkpoints(p, None, 45, 20, 10) == ([(20, True)], 20)
    done = p.replace(churn_labelled_ms=20)
    assert churn_checkpoints(done, None, 45, 20, 10) == ([], 20)  # never labelled twice
    assert churn_checkpoints(done, 51, 51, 20, 10) == ([(30, True)], 30)
    assert churn_checkpoints(p, 5, 50, 20, 10) == ([], 0)  # late event: nothing
    assert churn_checkpoints(Profile.empty(), 5, 5, 20, 10) == ([], 0)
    many = churn_checkpoints(p, 10**6, 10**6, 10**5, 10, max_examples=3)[0]
    assert [b for b, _ in many] == [99_990, 100_000, 100_010]  # the most recent three


def test_observe_interaction_applies_the_event_and_learns_labels():
    suite = ModelSuite(FAST)
    p = Profile.empty()
    for day in range(12):
        ev = {"ts": day * DAY + (day % 3) * 3 * 3_600_000, "type": "transaction",
              "amount": 20.0 + day, "category": "dining"}  # fmt: skip
        q, drifts = suite.observe_interaction(p, ev)
        assert drifts == []
        expected = apply_interaction(p, ev, suite.profile_config)
        np.testing.assert_array_equal(q.vector, expected.vector)
        assert q.n_events == expected.n_events
        p = q
    assert suite.capacity_model.n_updates == 12
    # checkpoints every 2 days from day 0: 2, 4, 8, 10 (day 6 coincides with an interaction,
    # so no state strictly before it is left to label), each followed by an interaction soon
    assert suite.churn_model.n_updates == 4 and p.churn_labelled_ms == 10 * DAY
    # silent after day 11.25: checkpoints 12, 14, 16, 18 (within a horizon of the last
    # interaction) are a full horizon old at day 30, and all churned
    p2, _ = suite.observe_silence(p, 30 * DAY)
    assert suite.churn_model.n_updates == 8 and p2.churn_labelled_ms == 18 * DAY
    assert suite.observe_silence(p2, 40 * DAY)[0] == p2 and suite.churn_model.n_updates == 8


def test_churn_is_certain_after_a_silent_horizon():
    suite = ModelSuite(FAST)
    p, _ = suite.observe_interaction(Profile.empty(), login(0))
    assert suite.churn(p, 7 * DAY) == 1.0
    assert 0.0 <= suite.churn(p, DAY) < 1.0


def test_observe_outcome_learns_and_applies():
    suite = ModelSuite(FAST)
    p, _ = suite.observe_interaction(Profile.empty(), login(0))
    q, drifts = suite.observe_outcome(p, "gold", urgent=True, reward=1.0, ts=DAY, value=3.0)
    assert drifts == []
    assert q == apply_outcome(p, offer_key("gold"), True, 1.0, DAY, suite.profile_config)
    assert suite.engagement_model.n_updates == 1
    assert suite.propensity_models["gold"].n_updates == 1
    assert set(suite.versions()) == {"engagement", "churn", "capacity", "propensity/gold"}


def test_propensity_is_shrunk_toward_engagement_for_young_offers():
    suite = ModelSuite(FAST)
    rng = np.random.default_rng(0)
    p = Profile.empty()
    for i in range(200):
        p, _ = suite.observe_outcome(p, "gold", False, float(rng.uniform() < 0.9), DAY + i)
    probs = suite.propensities(p, {"channel": "app"}, [("gold", False), ("new", True)], 2 * DAY)
    engagement = suite.engagement(p, {"channel": "app"}, 2 * DAY)
    assert probs[1] == engagement  # never seen: the engagement model alone
    w = 200 / (200 + FAST.propensity_prior)
    own = suite.propensity_models["gold"].predict(
        suite_features(suite, p, "gold", False, 2 * DAY)
    )
    assert probs[0] == pytest.approx(w * own + (1 - w) * engagement)
    suite.prune(["new"])
    assert suite.propensity_models == {}


def suite_features(suite, p, offer_id, urgent, now):
    from stream_app.profile import features, offer_features

    base = features(p, {"channel": "app"}, now)
    return base | offer_features(p, offer_key(offer_id), urgent, now)


@pytest.fixture(scope="module")
def trained():
    """A suite trained on a small synthetic world, and the profiles it produced."""
    from stream_app.models.harness import run

    suite = ModelSuite(SuiteConfig(churn_horizon_s=7 * 86400.0, churn_period_s=2 * 86400.0))
    result = run(World(seed=11, n_customers=40, days=20, decisions_per_day=1.0), suite, 1.0)
    return suite, result.profiles


def test_suite_checkpoint_round_trip_gives_identical_predictions(trained):
    suite, profiles = trained
    restored = ModelSuite.from_bytes(suite.to_bytes())
    now = max(p.last_event_ms for p in profiles.values())
    offers = [("offer_0", False), ("offer_1", True), ("unseen", False)]
    for p in list(profiles.values())[:15]:
        ctx = {"channel": "web"}
        np.testing.assert_array_equal(restored.propensities(p, ctx, offers, now),
                                      suite.propensities(p, ctx, offers, now))  # fmt: skip
        assert restored.churn(p, now) == suite.churn(p, now)
        assert restored.capacity(p, now) == suite.capacity(p, now)
        assert restored.segment_of(p, now) == suite.segment_of(p, now)
    assert restored.version == suite.version
    assert restored.segment_report(now) == suite.segment_report(now)
    with pytest.raises(checkpoint.CheckpointError, match="model-suite"):
        ModelSuite.from_bytes(checkpoint.dumps(1, "other"))
    with pytest.raises(checkpoint.CheckpointError, match="ModelSuite"):
        ModelSuite.from_bytes(checkpoint.dumps(1, "model-suite"))


def test_customer_scores_match_the_schema(trained):
    suite, profiles = trained
    schema = json.loads((ROOT / "schemas" / "customer-scores.v1.json").read_text())
    now = max(p.last_event_ms for p in profiles.values())
    for cid, p in list(profiles.items())[:10]:
        s = customer_scores(p, suite, now, customer_id=cid)
        jsonschema.validate(json.loads(json.dumps(s)), schema)
        assert 0 <= s["engagement"] <= 1 and 0 <= s["churn"] <= 1 and s["capacity"] >= 0
        assert s["segment"] == (p.segment if p.segment >= 0 else None)
        assert s["model_version"] == suite.version
        assert sum(s["spend_personality"]["memberships"].values()) == pytest.approx(1, abs=1e-5)
    delta_schema = json.loads((ROOT / "schemas" / "delta-metrics.v1.json").read_text())
    for row in suite.segment_report(now):
        jsonschema.validate(row, delta_schema)


def test_customer_scores_personality_and_stage_are_the_profiles(trained):
    """The record reads them from the feature vector: they must be what ``spend_personality``
    and ``lifecycle_stage`` say, for customers with and without spend, now and much later."""
    from stream_app.profile import lifecycle_stage, spend_personality

    suite, profiles = trained
    now = max(p.last_event_ms for p in profiles.values())
    checked = set()
    for p in [Profile.empty(), *profiles.values()]:
        for t in (now, now + 90 * 86_400_000):
            s, sp = customer_scores(p, suite, t), spend_personality(p, t)
            assert s["spend_personality"] == {
                "dominant": sp.dominant, "change": round(sp.change, 6),
                "memberships": {a: round(m, 6) for a, m in sp.memberships.items()}}
            assert s["lifecycle_stage"] == lifecycle_stage(p, t)
            checked |= {sp.dominant, s["lifecycle_stage"]}
    assert None in checked and len(checked) >= 3


def scores(**changes):
    base = {"ts": 0, "segment": 1, "spend_personality": {"dominant": "saver"},
            "engagement": 0.5, "churn": 0.2, "capacity": 100.0}  # fmt: skip
    return {**base, **changes}


def test_should_emit_rate_limits_and_reacts_to_changes():
    p = Profile.empty()
    assert should_emit(p, scores(), 0)  # never published
    p = mark_emitted(p, scores(), 0)
    hour = 3_600_000
    assert not should_emit(p, scores(engagement=0.9), hour - 1)  # too soon, whatever changed
    assert not should_emit(p, scores(engagement=0.54, churn=0.16), hour)  # small moves
    assert should_emit(p, scores(engagement=0.56), hour)
    assert should_emit(p, scores(churn=0.26), hour)
    assert should_emit(p, scores(capacity=110.0), hour)  # log1p moved by ~0.095
    assert not should_emit(p, scores(capacity=104.0), hour)
    assert should_emit(p, scores(segment=2), hour)
    assert should_emit(p, scores(spend_personality={"dominant": None}), hour)
    assert should_emit(p, scores(), 24 * hour)  # refresh
    assert not should_emit(p, scores(), 24 * hour, refresh_s=2 * 86400)
    q = mark_emitted(p, scores(segment=None, spend_personality={"dominant": None}), 5)
    assert (q.last_emit_ms, q.emitted_segment, q.emitted_dominant) == (5, -1, 5)
    assert Profile.decode(q.encode()) == q


def test_scores_in_one_pass_equal_the_single_scores():
    from stream_app.profile import Profile

    suite = ModelSuite(SuiteConfig(classifiers=("logreg",), regressors=("mean", "blr")))
    p = Profile.empty()
    for i in range(60):
        p, _ = suite.observe_interaction(p, {"ts": i * 3_600_000, "type": "transaction",
                                             "amount": 10.0 + i, "category": "dining"})
        p, _ = suite.observe_outcome(p, "cashback", False, float(i % 3 == 0), i * 3_600_000 + 1)
    for now in (61 * 3_600_000, 61 * 3_600_000 + 40 * 86_400_000):
        assert suite.scores(p, now) == (suite.engagement(p, None, now), suite.churn(p, now),
                                        suite.capacity(p, now))
