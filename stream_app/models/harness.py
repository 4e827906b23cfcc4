"""Drive a ``ModelSuite`` through a synthetic ``World`` the way the worker will, then judge it.

``run(world, suite, train_until=0.7)`` replays the world's messages in event time. Before the split
(a fraction of the world's duration) it does what the worker does: ``observe_interaction`` per
interaction, ``record_contact`` + ``observe_outcome`` per outcome, and a silence sweep
(``observe_silence``) over every customer twice per churn period. After the split the models are
frozen (profiles still update) and every prediction is held out: each is made before its label
exists and the model never learns from it. ``train_until=1.0`` gives a pure online run, where the
held-out lists stay empty but drift records and prequential predictions are kept.

>>> from stream_app.models.synthetic import World
>>> from stream_app.models.suite import ModelSuite, SuiteConfig
>>> r = run(World(seed=2, n_customers=20, days=10), ModelSuite(SuiteConfig(classifiers=("prior",),
...         regressors=("mean",))), train_until=0.5)
>>> sorted(r.holdout), len(r.profiles) == 20
(['capacity', 'churn', 'engagement', 'oracle', 'propensity'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream_app.core.catalogue import offer_key
from stream_app.models.labels import churn_checkpoints
from stream_app.models.suite import ModelSuite
from stream_app.models.synthetic import World
from stream_app.profile import Profile, apply_interaction, apply_outcome, record_contact

__all__ = ["Run", "run"]


@dataclass
class Run:
    profiles: dict[str, Profile]
    drifts: list[dict[str, Any]] = field(default_factory=list)
    # name -> (labels, predictions); capacity labels are amounts, predictions expected amounts
    holdout: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    train_amounts: list[float] = field(default_factory=list)
    # (ts, label, prequential prediction) of every propensity example while learning
    online: list[tuple[int, float, float]] = field(default_factory=list)

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        y, p = self.holdout[name]
        return np.asarray(y, float), np.asarray(p, float)


def run(world: World, suite: ModelSuite, train_until: float = 0.7) -> Run:
    split = world.start_ms + int(train_until * (world.end_ms - world.start_ms))
    period = int(suite.config.churn_period_s * 1000)
    horizon = int(suite.config.churn_horizon_s * 1000)
    names = ("propensity", "oracle", "engagement", "churn", "capacity")
    out = Run(profiles={}, holdout={k: ([], []) for k in names})
    sweep = max(period // 2, 1)
    next_sweep = world.start_ms + sweep
    for kind, msg in world.messages():
        ts = msg["ts"]
        while next_sweep <= min(ts, split):
            for cid, p in out.profiles.items():
                out.profiles[cid], drifts = suite.observe_silence(p, next_sweep)
                out.drifts += drifts
            next_sweep += sweep
        cid = msg["customer_id"]
        p = out.profiles.get(cid, Profile.empty())
        learning = ts < split
        if kind == "interaction":
            if learning:
                out.profiles[cid], drifts = suite.observe_interaction(p, msg)
                out.drifts += drifts
                if msg["type"] == "transaction":
                    out.train_amounts.append(msg["amount"])
                continue
            _score_churn(out, suite, p, ts, ts, horizon, period, split)
            if msg["type"] == "transaction":
                out.holdout["capacity"][0].append(msg["amount"])
                out.holdout["capacity"][1].append(suite.capacity(p, ts))
            out.profiles[cid] = apply_interaction(p, msg, suite.profile_config)
            continue
        ctx = {"channel": msg["channel"]}
        pred = suite.propensity(p, ctx, msg["offer_id"], msg["urgent"], ts)
        p = record_contact(p, msg["channel"], ts, suite.profile_config)
        if learning:
            out.online.append((ts, msg["reward"], pred))
            out.profiles[cid], drifts = suite.observe_outcome(
                p, msg["offer_id"], msg["urgent"], msg["reward"], ts, ctx, value=msg["value"]
            )
            out.drifts += drifts
            continue
        out.holdout["propensity"][0].append(msg["reward"])
        out.holdout["propensity"][1].append(pred)
        out.holdout["oracle"][0].append(msg["reward"])
        out.holdout["oracle"][1].append(msg["p_true"])  # the ground truth's own probability
        out.holdout["engagement"][0].append(msg["reward"])
        out.holdout["engagement"][1].append(suite.engagement(p, ctx, ts))
        key = offer_key(msg["offer_id"])
        out.profiles[cid] = apply_outcome(p, key, msg["urgent"], msg["reward"], ts,
                                          suite.profile_config)  # fmt: skip
    if train_until < 1.0:
        for p in out.profiles.values():  # customers silent until the end: churn checkpoints
            _score_churn(out, suite, p, None, world.end_ms, horizon, period, split)
    return out


def _score_churn(
    out: Run, suite: ModelSuite, p: Profile, next_ms: int | None, now_ms: int, horizon: int,
    period: int, split: int,
) -> None:  # fmt: skip
    """Held-out churn examples: checkpoints after the split, scored by the frozen model."""
    start = p.replace(churn_labelled_ms=max(p.churn_labelled_ms, split - 1))
    points, _ = churn_checkpoints(start, next_ms, now_ms, horizon, period, max_examples=64)
    for b, churned in points:
        out.holdout["churn"][0].append(float(churned))
        out.holdout["churn"][1].append(suite.churn(p, b))
