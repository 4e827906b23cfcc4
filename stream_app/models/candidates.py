"""The candidate River models a ``ModelSelector`` chooses among (River 0.26).

Defaults are one linear model (fast, calibrated, strong on smooth signals), one adaptive tree
(catches interactions and thresholds, and adapts to drift inside its branches) and, for
regression, the running mean (the baseline any model must beat, and a safe choice while the
others warm up). For regression the linear model is River's exact online Bayesian linear
regression (``blr``, with a bias feature): no learning rate to tune, and it does not diverge on
heavy-tailed targets as plain SGD can. An adaptive random forest is available by name; it is the
most accurate on rich data but several times slower per example than the linear model, so it is
not a default for per-event learning on a shared core.

>>> sorted(classifiers(seed=1))
['hat', 'logreg']
>>> sorted(regressors(seed=1))
['blr', 'hat', 'mean']
"""

from __future__ import annotations

from typing import Callable, Iterable

from river import base, compose, dummy, forest, linear_model, optim, preprocessing, stats, tree
from river.tree.nodes.hatc_nodes import AdaLeafClassifier
from river.tree.nodes.htc_nodes import LeafNaiveBayesAdaptive

__all__ = ["CLASSIFIERS", "REGRESSORS", "classifiers", "regressors"]

DEFAULT_CLASSIFIERS = ("logreg", "hat")
DEFAULT_REGRESSORS = ("blr", "hat", "mean")


def _logreg(seed: int) -> base.Classifier:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.01), l2=1e-4
    )


class _MajorityClassBookkeeping(LeafNaiveBayesAdaptive):
    """Learn like a leaf without the naive-Bayes-adaptive bookkeeping (scoring every example by
    majority class *and* naive Bayes, to choose between them); only ``leaf_prediction="nba"``
    reads it."""

    def learn_one(self, x, y, *, w=1.0, tree=None):  # type: ignore[no-untyped-def]
        super(LeafNaiveBayesAdaptive, self).learn_one(x, y, w=w, tree=tree)


class _MajorityClassLeaf(AdaLeafClassifier, _MajorityClassBookkeeping):
    """River's adaptive-tree leaf (MRO: its ``learn_one`` hands over to the one above)."""


class MajorityClassHAT(tree.HoeffdingAdaptiveTreeClassifier):
    """``HoeffdingAdaptiveTreeClassifier`` whose leaves, when they predict by majority class
    (``leaf_prediction="mc"``), do not score each example by naive Bayes as well. River's leaves
    do it whatever ``leaf_prediction`` says, to keep statistics only ``"nba"`` reads: 40-50 % of
    the tree's learning time on the engine's 71 features. The tree learns and predicts the same.
    """

    def _new_leaf(self, initial_stats=None, parent=None):  # type: ignore[no-untyped-def]
        if self.leaf_prediction != self._MAJORITY_CLASS:
            return super()._new_leaf(initial_stats, parent)
        return _MajorityClassLeaf(  # as River's, with the other class
            stats={} if initial_stats is None else initial_stats,
            depth=0 if parent is None else parent.depth + 1, splitter=self.splitter,
            drift_detector=self.drift_detector.clone(), rng=self._rng)


def _hat_classifier(seed: int) -> base.Classifier:
    return MajorityClassHAT(
        grace_period=200, delta=1e-3, leaf_prediction="mc", max_depth=8, seed=seed
    )


def _arf_classifier(seed: int) -> base.Classifier:
    return forest.ARFClassifier(n_models=5, max_depth=8, seed=seed)


def with_bias(x: dict) -> dict:
    """Add a constant feature: River's Bayesian linear regression has no intercept of its own."""
    return {**x, "_bias": 1.0}


def _blr(seed: int) -> base.Regressor:
    # No ``smoothing``: River's forgetting inverts a d x d matrix per example; drift is handled
    # by the selector's ADWIN reset instead.
    return compose.FuncTransformer(with_bias) | linear_model.BayesianLinearRegression(
        alpha=1.0, beta=1.0
    )


def _linreg(seed: int) -> base.Regressor:
    return preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.AdaGrad(0.1), clip_gradient=1.0
    )


def _hat_regressor(seed: int) -> base.Regressor:
    return tree.HoeffdingAdaptiveTreeRegressor(
        grace_period=200, delta=1e-3, max_depth=8, leaf_prediction="mean",
        splitter=tree.splitter.QOSplitter(), seed=seed,
    )


def _arf_regressor(seed: int) -> base.Regressor:
    return forest.ARFRegressor(n_models=5, max_depth=8, seed=seed)


def _mean(seed: int) -> base.Regressor:
    return dummy.StatisticRegressor(stats.Mean())


CLASSIFIERS: dict[str, Callable[[int], base.Classifier]] = {
    "logreg": _logreg, "hat": _hat_classifier, "arf": _arf_classifier,
    "prior": lambda seed: dummy.PriorClassifier(),
}  # fmt: skip
REGRESSORS: dict[str, Callable[[int], base.Regressor]] = {
    "blr": _blr, "linreg": _linreg, "hat": _hat_regressor, "arf": _arf_regressor, "mean": _mean,
}  # fmt: skip


def _build(table: dict, names: Iterable[str], seed: int) -> dict[str, base.Estimator]:
    out = {}
    for name in names:
        if name not in table:
            raise ValueError(f"unknown candidate {name!r}; known: {sorted(table)}")
        out[name] = table[name](seed)
    return out


def classifiers(
    seed: int = 0, names: Iterable[str] = DEFAULT_CLASSIFIERS
) -> dict[str, base.Classifier]:
    """Fresh binary classifiers by name (``logreg``, ``hat``, ``arf``, ``prior``)."""
    return _build(CLASSIFIERS, names, seed)


def regressors(
    seed: int = 0, names: Iterable[str] = DEFAULT_REGRESSORS
) -> dict[str, base.Regressor]:
    """Fresh regressors by name (``blr``, ``linreg``, ``hat``, ``arf``, ``mean``)."""
    return _build(REGRESSORS, names, seed)
