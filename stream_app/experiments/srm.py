"""Sample-ratio mismatch: are the arms as large as the configured shares say they should be?

A mismatch means something between assignment and measurement loses customers unevenly (a
treatment that crashes, a filter, a logging bug); every statistic of the experiment is then
suspect. The check is Pearson's chi-square of the exposure counts against the configured
shares, flagged when ``p < threshold`` (0.001 by default, the usual choice: the check runs on
every update, so it must be strict). It stays silent until every arm expects at least
``min_expected`` exposures, where the chi-square approximation starts to hold.

>>> sample_ratio_check([5000, 5000], [0.5, 0.5]).flagged
False
>>> r = sample_ratio_check([5000, 4600], [0.5, 0.5])
>>> round(r.chi2, 2), r.flagged
(16.67, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.special import chdtrc

__all__ = ["SampleRatio", "sample_ratio_check"]


@dataclass(frozen=True, slots=True)
class SampleRatio:
    chi2: float
    p_value: float
    flagged: bool
    observed_share: tuple[float, ...]
    expected_share: tuple[float, ...]
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"chi2": self.chi2, "p_value": self.p_value, "flagged": self.flagged,
                "observed_share": list(self.observed_share),
                "expected_share": list(self.expected_share), "n": self.n}  # fmt: skip


def sample_ratio_check(
    counts: Sequence[float] | np.ndarray,
    shares: Sequence[float] | np.ndarray,
    threshold: float = 0.001,
    min_expected: float = 5.0,
) -> SampleRatio:
    """Chi-square test of ``counts`` against ``shares`` (normalised to sum to one)."""
    obs = np.asarray(counts, np.float64)
    p = np.asarray(shares, np.float64)
    p = p / p.sum()
    n = float(obs.sum())
    expected = n * p
    if n == 0 or expected.min() < min_expected:
        return SampleRatio(0.0, 1.0, False, tuple((obs / max(n, 1)).tolist()), tuple(p.tolist()),
                           int(n))  # fmt: skip
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    p_value = float(chdtrc(len(obs) - 1, chi2))
    return SampleRatio(
        chi2, p_value, p_value < threshold, tuple((obs / n).tolist()), tuple(p.tolist()), int(n)
    )
