"""Online model selection, drift detection and model checkpoints."""

from __future__ import annotations

import json
import random

import pytest
from river import compose, dummy, linear_model, optim

from stream_app.models import checkpoint
from stream_app.models.candidates import classifiers, regressors
from stream_app.models.selection import ModelSelector


def concept_stream(n: int, seed: int, flip_at: int | None = None, key: str = "a"):
    """x = {a, b} uniform in [-1, 1]; y = (x[key] > 0) with 5 % label noise, inverted from
    ``flip_at`` on (a planted abrupt concept drift)."""
    rng = random.Random(seed)
    for t in range(n):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        y = x[key] > 0
        if flip_at is not None and t >= flip_at:
            y = not y
        yield t, x, (not y) if rng.random() < 0.05 else y


def logreg(feature: str | None = None):
    model = linear_model.LogisticRegression(optim.SGD(0.5))
    return (compose.Select(feature) | model) if feature else model


def test_selects_the_candidate_with_the_lower_recent_loss():
    sel = ModelSelector("t", {"prior": dummy.PriorClassifier(), "logreg": logreg()}, min_select=20)
    assert sel.best == "prior"  # nobody is ready: the one with most examples (first on ties)
    for t, x, y in concept_stream(600, seed=1):
        sel.learn(x, y, ts=t)
    assert sel.best == "logreg"
    losses = sel.losses()
    assert losses["logreg"] < 0.6 * losses["prior"]
    assert sel.predict({"a": 0.9, "b": 0.0}) > 0.8 > 0.2 > sel.predict({"a": -0.9, "b": 0.0})


def test_selection_follows_the_data_when_the_useful_feature_changes():
    sel = ModelSelector("t", {"on_a": logreg("a"), "on_b": logreg("b")}, min_select=20,
                        window=200)  # fmt: skip
    for t, x, y in concept_stream(1500, seed=2, key="a"):
        sel.learn(x, y, ts=t)
    assert sel.best == "on_a"
    switched_after = None
    for t, x, y in concept_stream(1500, seed=3, key="b"):
        sel.learn(x, y, ts=1500 + t)
        if switched_after is None and sel.best == "on_b":
            switched_after = t
    assert sel.best == "on_b"
    assert switched_after is not None and switched_after < 300


def test_planted_drift_is_detected_reset_and_accuracy_recovers():
    sel = ModelSelector("prop", {"logreg": logreg(), "prior": dummy.PriorClassifier()})
    flip, drifts, hits = 3000, [], []
    for t, x, y in concept_stream(6000, seed=4, flip_at=flip):
        hits.append((sel.predict(x) > 0.5) == y)
        drifts += sel.learn(x, y, ts=1_000 + t)
    logreg_drifts = [d for d in drifts if d["candidate"] == "logreg"]
    assert [d for d in drifts if d["ts"] < 1_000 + flip] == []  # no false alarm before it
    assert logreg_drifts, "the planted drift was not detected"
    delay = logreg_drifts[0]["ts"] - (1_000 + flip)
    assert 0 <= delay <= 150  # detected within 150 events (measured: see report)
    accuracy = lambda lo, hi: sum(hits[lo:hi]) / (hi - lo)  # noqa: E731
    assert accuracy(2000, 3000) > 0.9
    assert accuracy(flip, flip + 10) <= 0.3  # the old concept is now wrong
    assert accuracy(flip + 500, 6000) > 0.9  # recovered
    assert sel.n_resets >= 1 and sel.version.endswith(f"r{sel.n_resets}")


def test_drift_record_is_json_ready_and_complete():
    sel = ModelSelector("prop", {"logreg": logreg()})
    drifts = []
    for t, x, y in concept_stream(3000, seed=5, flip_at=1500):
        drifts += sel.learn(x, y, ts=t)
    d = drifts[0]
    assert json.loads(json.dumps(d)) == d
    assert d["kind"] == "drift" and d["model"] == "prop" and d["candidate"] == "logreg"
    assert d["detector"] == "adwin" and d["action"] == "reset"
    assert d["error_after"] >= d["error_before"] + sel.drift_min_increase
    assert d["model_version"].startswith("prop:") and d["active"] in ("logreg",)


def test_no_reset_while_a_model_only_improves():
    sel = ModelSelector("t", {"logreg": linear_model.LogisticRegression(optim.SGD(0.005))})
    drifts = []
    for t, x, y in concept_stream(4000, seed=6):  # slow learner: error keeps falling
        drifts += sel.learn(x, y, ts=t)
    assert drifts == [] and sel.n_resets == 0


def test_version_counts_updates_and_resets():
    sel = ModelSelector("churn", {"prior": dummy.PriorClassifier()})
    assert sel.version == "churn:prior:u0:r0"
    for t, x, y in concept_stream(7, seed=7):
        sel.learn(x, y, ts=t)
    assert sel.version == "churn:prior:u7:r0" and sel.n_updates == 7 and sel.trained == 7


def test_regression_selection_beats_the_mean():
    rng = random.Random(8)
    sel = ModelSelector("cap", regressors(seed=0, names=("mean", "blr")), "regression",
                        min_select=20)  # fmt: skip
    for t in range(800):
        x = {"a": rng.uniform(0, 5)}
        sel.learn(x, 2.0 * x["a"] + 1.0 + rng.gauss(0, 0.1), ts=t)
    assert sel.best == "blr"
    assert sel.predict({"a": 2.0}) == pytest.approx(5.0, abs=0.1)


def test_invalid_settings_raise():
    with pytest.raises(ValueError):
        ModelSelector("x", {})
    with pytest.raises(ValueError):
        ModelSelector("x", {"p": dummy.PriorClassifier()}, task="ranking")
    with pytest.raises(ValueError):
        classifiers(names=("nope",))


def test_every_named_candidate_learns_and_predicts():
    rng = random.Random(9)
    data = [{"a": rng.uniform(-1, 1)} for _ in range(1000)]
    for name, model in classifiers(seed=1, names=("logreg", "hat", "arf", "prior")).items():
        sel = ModelSelector(name, {name: model}, min_select=1)
        for t, x in enumerate(data):
            sel.learn(x, x["a"] > 0, ts=t)
        high, low = sel.predict({"a": 0.8}), sel.predict({"a": -0.8})
        assert 0.0 <= low <= high <= 1.0
        assert name == "prior" or high - low > 0.5, name
    for name, model in regressors(seed=1, names=("blr", "linreg", "hat", "arf", "mean")).items():
        sel = ModelSelector(name, {name: model}, "regression", min_select=1)
        for t, x in enumerate(data):
            sel.learn(x, 3 * x["a"] + 1, ts=t)
        high, low = sel.predict({"a": 0.8}), sel.predict({"a": -0.8})
        assert name == "mean" or high - low > 2.0, name  # truth: 4.8


def test_checkpoint_round_trip_gives_identical_predictions_and_learning():
    sel = ModelSelector("prop", classifiers(seed=3))
    stream = list(concept_stream(1200, seed=10, flip_at=800))
    for t, x, y in stream[:900]:
        sel.learn(x, y, ts=t)
    restored = checkpoint.loads(checkpoint.dumps(sel, "selector"), kind="selector")
    probes = [x for _, x, _ in stream[900:1000]]
    assert [restored.predict(x) for x in probes] == [sel.predict(x) for x in probes]
    for t, x, y in stream[900:]:
        assert restored.learn(x, y, ts=t) == sel.learn(x, y, ts=t)
    assert [restored.predict(x) for x in probes] == [sel.predict(x) for x in probes]
    assert restored.version == sel.version


def test_checkpoint_envelope_refuses_what_it_cannot_trust():
    blob = checkpoint.dumps({"w": 1}, kind="demo")
    head = checkpoint.header(blob)
    assert head["kind"] == "demo" and head["river"] and len(head["sha256"]) == 64
    with pytest.raises(checkpoint.CheckpointError, match="expected"):
        checkpoint.loads(blob, kind="other")
    with pytest.raises(checkpoint.CheckpointError, match="magic"):
        checkpoint.loads(b"XXXX" + blob[4:])
    with pytest.raises(checkpoint.CheckpointError, match="version"):
        checkpoint.loads(blob[:4] + b"\x09" + blob[5:])
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.loads(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.loads(b"SA")


def test_sampled_negatives_keep_the_weighted_label_balance():
    """Every positive and one negative in 4 are learned, the latter with weight 4: the weighted
    counts, the prior mean and a weighted linear model see the stream's true response rate."""
    from river import linear_model, optim

    sel = ModelSelector("s", {"logreg": linear_model.LogisticRegression(optim.SGD(0.05))},
                        window=10_000, negative_stride=4, full_examples=100)
    learned = weights = 0
    for i in range(4100):
        y = i % 10 == 0  # 10 % responses
        w = sel.weight_for(y)
        if w:
            sel.learn({"x": 1.0}, y, ts=i, w=w)
            learned += 1
            weights += w
    assert sel.n_updates == weights and abs(weights - 4100) <= 4
    assert learned < 0.4 * 4100  # 100 in full, then 10 % + 90 % / 4 of the rest
    assert abs(sel.predict({"x": 1.0}) - 0.1) < 0.03
    assert abs(sel._y_mean - 0.1) < 0.03


def test_sampling_needs_weighted_candidates_and_is_off_for_regression():
    from river import dummy, linear_model

    assert ModelSelector("c", {"prior": dummy.PriorClassifier()}, negative_stride=4).negative_stride == 1
    reg = ModelSelector("r", {"lin": linear_model.LinearRegression()}, "regression", negative_stride=4)
    assert reg.negative_stride == 1 and reg.weight_for(0.0) == 1


def test_the_adaptive_tree_candidate_learns_and_predicts_as_rivers():
    """``MajorityClassHAT`` skips River's naive-Bayes bookkeeping in majority-class leaves: it
    must grow the same tree and give the same probabilities, through splits and a drift."""
    from river import tree

    from stream_app.models.candidates import MajorityClassHAT

    settings = {"grace_period": 100, "delta": 1e-3, "leaf_prediction": "mc", "max_depth": 8,
                "seed": 3}
    ours, rivers = MajorityClassHAT(**settings), tree.HoeffdingAdaptiveTreeClassifier(**settings)
    rng = random.Random(4)
    for t, x, y in concept_stream(6000, seed=5, flip_at=3000):
        x = {**x, "c": rng.gauss(0, 1)}
        assert ours.predict_proba_one(x) == rivers.predict_proba_one(x), t
        ours.learn_one(x, y, w=2.0 if t % 3 == 0 else 1.0)
        rivers.learn_one(x, y, w=2.0 if t % 3 == 0 else 1.0)
    assert ours.n_nodes == rivers.n_nodes > 1 and ours.n_alternate_trees > 0
    assert ours.clone().__class__ is MajorityClassHAT
