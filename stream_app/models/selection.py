"""Online model selection with drift detection: the "AutoML" of the stream.

A ``ModelSelector`` trains several candidate River models on the same stream, test-then-train
(each example is scored by every candidate *before* it learns from it). It keeps a decayed loss
per candidate (log loss for classification, absolute error for regression, window ~``window``
examples) and serves the candidate with the lowest one, among those that have seen at least
``min_select`` examples since their last reset. A challenger must beat the incumbent by
``margin`` (relative), so the choice does not flap between near-equals.

Once a candidate has learned ``drift_grace`` examples, its absolute error feeds its own
``river.drift.ADWIN`` (a model still warming up is not watched). When ADWIN cuts its window *and*
the candidate's recent error (exponential mean over ~``FAST_WINDOW`` examples) exceeds its
long-run error (over ~``window``) by at least ``drift_min_increase`` (a fall in error is learning,
not drift; a tiny rise is not worth a reset), the candidate is replaced by a fresh clone and a
JSON-ready drift record (``kind: "drift"``, the shape of the ``delta-metrics`` topic) is
returned; the other candidates carry on, so serving switches to a model that has not been reset
while the new one learns the new concept.

**Sampling negatives.** Learning is the costliest thing the engine does per event, and most
outcomes are negatives (an offer ignored). A classifier whose candidates all take sample weights
(River's linear models and Hoeffding trees do) can learn from every positive but only one
negative in ``negative_stride``, with weight ``negative_stride`` (importance weighting: the
weighted label balance, losses and counts stay those of the full stream). ``weight_for(y)`` says
how much an example counts (0: skip it, before building its features); the first
``full_examples`` examples are all learned, so a young model learns at full speed. Which
negatives are kept is a counter, not a random draw: the same stream gives the same models. The
drift detectors watch the errors of the examples learned, so they restart once when sampling
starts (the share of positives among them rises then, which is not drift).

>>> from river import dummy, linear_model, optim
>>> logreg = linear_model.LogisticRegression(optim.SGD(0.5))
>>> sel = ModelSelector("demo", {"prior": dummy.PriorClassifier(), "logreg": logreg}, min_select=5)
>>> for i in range(200):
...     _ = sel.learn({"x": float(i % 2)}, bool(i % 2), ts=i)
>>> sel.best, sel.version, sel.predict({"x": 1.0}) > 0.9
('logreg', 'demo:logreg:u200:r0', True)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

from river import base, compose, drift

__all__ = ["ModelSelector"]

_EPS = 1e-4
FAST_WINDOW = 50


class ModelSelector:
    """Candidates learning side by side; ``predict`` uses the best by recent loss.

    ``task`` is ``"classification"`` (binary; ``predict`` returns P(True)) or ``"regression"``.
    Settings are constructor arguments; learned state has a leading underscore.
    """

    def __init__(
        self,
        name: str,
        candidates: Mapping[str, base.Estimator],
        task: str = "classification",
        window: int = 500,
        min_select: int = 50,
        margin: float = 0.01,
        drift_delta: float = 0.002,
        drift_grace: int = 200,
        drift_min_increase: float = 0.02,
        negative_stride: int = 1,
        full_examples: int = 0,
    ) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, not {task!r}")
        if not candidates:
            raise ValueError("a selector needs at least one candidate")
        self.name, self.task, self.window = name, task, window
        self.min_select, self.margin = min_select, margin
        self.drift_delta, self.drift_grace = drift_delta, drift_grace
        self.drift_min_increase = drift_min_increase
        if negative_stride < 1 or full_examples < 0:
            raise ValueError("negative_stride must be >= 1 and full_examples >= 0")
        self._protos = {k: m.clone() for k, m in candidates.items()}
        weighted = task == "classification" and all(_takes_weight(m) for m in self._protos.values())
        self.negative_stride = negative_stride if weighted else 1
        self.full_examples = full_examples
        self._negatives = 0  # negatives offered since the last one learned
        self._sampling = False  # past full_examples: negatives are being sampled
        self._models: dict[str, Any] = {}
        self._loss: dict[str, float] = {}
        self._weight: dict[str, float] = {}
        self._seen: dict[str, int] = {}
        self._adwin: dict[str, drift.ADWIN] = {}
        self._err_fast: dict[str, float] = {}
        self._err_slow: dict[str, float] = {}
        for k in self._protos:
            self._reset(k)
        self._best = next(iter(self._protos))
        self._n = 0
        self._resets = 0
        self._y_mean = 0.5 if task == "classification" else 0.0

    # -- serving ---------------------------------------------------------------------------
    @property
    def best(self) -> str:
        """Name of the candidate that ``predict`` uses."""
        return self._best

    @property
    def n_updates(self) -> int:
        return self._n

    @property
    def n_resets(self) -> int:
        return self._resets

    @property
    def trained(self) -> int:
        """Examples the serving candidate has learned since its last reset."""
        return self._seen[self._best]

    @property
    def version(self) -> str:
        """``name:candidate:u<updates>:r<resets>``, for stamping on what the model decided."""
        return f"{self.name}:{self._best}:u{self._n}:r{self._resets}"

    def predict(self, x: Mapping[str, float]) -> float:
        """P(True) for classification, the predicted value for regression."""
        return self._predict(self._best, x)

    def predict_candidate(self, name: str, x: Mapping[str, float]) -> float:
        return self._predict(name, x)

    def losses(self) -> dict[str, float]:
        """Current decayed loss per candidate (``nan`` before its first example)."""
        return {
            k: self._loss[k] / self._weight[k] if self._weight[k] > 0 else math.nan
            for k in self._protos
        }

    def report(self) -> dict[str, Any]:
        """JSON-ready state summary: version, active candidate, losses, examples per candidate."""
        return {
            "model": self.name, "model_version": self.version, "active": self._best,
            "losses": self.losses(), "trained": dict(self._seen), "resets": self._resets,
        }  # fmt: skip

    # -- learning --------------------------------------------------------------------------
    def weight_for(self, y: float | bool) -> int:
        """The weight to learn ``y`` with, 0 to skip it (see *Sampling negatives*). Counts the
        example: call it once per example, then ``learn`` with that weight unless it is 0."""
        if self.negative_stride == 1 or y or self._n < self.full_examples:
            return 1
        if not self._sampling:  # the watched stream changes make-up once: restart the detectors
            self._sampling = True
            for k in self._adwin:
                self._adwin[k] = drift.ADWIN(delta=self.drift_delta)
        self._negatives += 1
        if self._negatives < self.negative_stride:
            return 0
        self._negatives = 0
        return self.negative_stride

    def learn(self, x: Mapping[str, float], y: float | bool, ts: int = 0,
              w: int = 1) -> list[dict[str, Any]]:
        """Score ``x`` with every candidate, then learn ``(x, y)`` as ``w`` examples (``w`` > 1
        only where every candidate takes sample weights); returns drift records."""
        target: float | bool = bool(y) if self.task == "classification" else float(y)
        yf = float(target)
        decay = min(1.0, w / self.window)
        events: list[dict[str, Any]] = []
        for k, model in self._models.items():
            pred = self._predict(k, x)
            err = abs(yf - pred)
            if self.task == "classification":
                p = min(max(pred, _EPS), 1 - _EPS)
                loss = -math.log(p if target else 1 - p)
            else:
                loss = err
            self._loss[k] = (1 - decay) * self._loss[k] + decay * loss
            self._weight[k] = (1 - decay) * self._weight[k] + decay
            if w == 1:
                model.learn_one(x, target)
            else:
                model.learn_one(x, target, w=float(w))
            self._seen[k] += w
            event = self._watch(k, err, ts, w)
            if event is not None:
                events.append(event)
        self._n += w
        self._y_mean += (yf - self._y_mean) * min(1.0, w / min(self._n, self.window))
        self._select()
        for e in events:
            e["active"], e["model_version"] = self._best, self.version
        return events

    # -- internals -------------------------------------------------------------------------
    def _predict(self, k: str, x: Mapping[str, float]) -> float:
        model = self._models[k]
        if self.task == "regression":
            if self._seen[k] == 0:
                return self._y_mean
            value = float(model.predict_one(x))
            return value if math.isfinite(value) else self._y_mean
        proba = model.predict_proba_one(x)
        if True in proba:
            p = float(proba[True])
        elif False in proba:
            p = 1.0 - float(proba[False])
        else:
            p = self._y_mean
        return min(max(p, 0.0), 1.0) if math.isfinite(p) else self._y_mean

    def __setstate__(self, state: dict[str, Any]) -> None:  # checkpoints from before sampling
        state.setdefault("negative_stride", 1)
        state.setdefault("full_examples", 0)
        state.setdefault("_negatives", 0)
        state.setdefault("_sampling", False)
        self.__dict__.update(state)

    def _reset(self, k: str) -> None:
        self._models[k] = self._protos[k].clone()
        self._loss[k], self._weight[k], self._seen[k] = 0.0, 0.0, 0
        self._err_fast[k] = self._err_slow[k] = 0.0
        self._adwin[k] = drift.ADWIN(delta=self.drift_delta)

    def _watch(self, k: str, err: float, ts: int, w: int = 1) -> dict[str, Any] | None:
        seen = self._seen[k]
        if seen == w:  # the candidate's first example since its last reset
            self._err_fast[k] = self._err_slow[k] = err
        self._err_fast[k] += (err - self._err_fast[k]) * min(1.0, w / min(seen, FAST_WINDOW))
        self._err_slow[k] += (err - self._err_slow[k]) * min(1.0, w / min(seen, self.window))
        if seen <= self.drift_grace:  # a model still warming up is not watched
            return None
        detector = self._adwin[k]
        detector.update(err)
        if not detector.drift_detected:
            return None
        before, after = self._err_slow[k], self._err_fast[k]
        if after < before + self.drift_min_increase:  # error fell, or barely rose: no reset
            return None
        self._reset(k)
        self._resets += 1
        return {
            "kind": "drift", "ts": int(ts), "model": self.name, "candidate": k,
            "detector": "adwin", "error_before": float(before), "error_after": float(after),
            "candidate_updates": seen, "n_updates": self._n + 1, "action": "reset",
        }  # fmt: skip

    def _select(self) -> None:
        ready = {k: v for k, v in self.losses().items() if self._seen[k] >= self.min_select}
        if not ready:
            self._best = max(self._protos, key=lambda k: self._seen[k])
            return
        challenger = min(ready, key=lambda k: ready[k])
        incumbent = ready.get(self._best)
        if incumbent is None or ready[challenger] < incumbent * (1 - self.margin):
            self._best = challenger


def _takes_weight(model: base.Estimator) -> bool:
    """Whether ``model.learn_one`` takes a sample weight ``w`` (a pipeline: its last step)."""
    if isinstance(model, compose.Pipeline):
        model = list(model.steps.values())[-1]
    return "w" in inspect.signature(model.learn_one).parameters
