"""Small, exact quality measures used to judge the models: AUC, adjusted Rand index, MAE.

>>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
1.0
>>> round(adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]), 4)
0.2424
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["adjusted_rand_index", "auc", "mae"]


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half
    (the Mann-Whitney statistic, from average ranks). ``nan`` if one class is missing."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average rank over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _pairs(n: np.ndarray) -> float:
    return float((n * (n - 1) / 2).sum())


def adjusted_rand_index(truth: Sequence[int], predicted: Sequence[int]) -> float:
    """Hubert-Arabie adjusted Rand index: 1 for identical partitions (up to relabelling), about 0
    for independent ones."""
    a = np.unique(np.asarray(truth), return_inverse=True)[1]
    b = np.unique(np.asarray(predicted), return_inverse=True)[1]
    if len(a) != len(b):
        raise ValueError("both labellings must have the same length")
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    index = _pairs(table)
    rows, cols = _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))
    total = len(a) * (len(a) - 1) / 2
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def mae(truth: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(truth, float) - np.asarray(predicted, float))))
