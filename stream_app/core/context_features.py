"""What the contextual policies (``linear_thompson``, ``linucb``) see of a request.

One vector per request, shared by every candidate offer (each offer has its own ridge regression
over it, ``LinearArms``):

- the customer's behaviour from the profile (``PROFILE_FEATURES``): spend mix by category (what a
  category offer speaks to), the online segment (one-hot), the spend personality, the response
  rates to neutral and to urgent framing (loss aversion shows there) and the channel;
- the request's intent: ``context.page`` naming one of the use case's offer categories, one-hot
  over those categories (a customer reading about travel is not the same request as one on the
  home page, whoever they are);
- a constant 1 (each offer's base rate).

The categories come from the use case's offers, so the width is fixed per configuration and a new
catalogue with other categories starts the contextual state afresh (``PopulationState.linear_for``
keys it by width). Everything is in [0, 1], so one ridge penalty fits all columns.

>>> from stream_app.profile import Profile
>>> cf = ContextFeatures.of(["travel", "groceries", "travel"])
>>> cf.names[-3:]
('page_groceries', 'page_travel', 'intercept')
>>> x = cf.vector(Profile.empty(), {"page": "travel"}, "app", now_ms=0)
>>> x.shape == (cf.dim,), x[-3:].tolist(), float(x[cf.names.index("ctx_chan_app")])
(True, [0.0, 1.0, 1.0], 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_app.policies.linear_arms import MAX_DIM
from stream_app.profile import FEATURE_NAMES, Profile, feature_vector

__all__ = ["PROFILE_FEATURES", "ContextFeatures"]

PROFILE_FEATURES: tuple[str, ...] = tuple(
    n for n in FEATURE_NAMES
    if n.startswith(("spend_", "seg_", "persona_", "ctx_chan_"))
    or n in ("resp_rate_neutral", "resp_rate_urgent")
)


@dataclass(frozen=True, slots=True)
class ContextFeatures:
    """The feature layout of one use case: profile features, page categories, intercept."""

    categories: tuple[str, ...]  # sorted, unique: the use case's offer categories
    names: tuple[str, ...]
    _page: Mapping[str, int]  # category -> column

    @classmethod
    def of(cls, categories: Iterable[str]) -> ContextFeatures:
        cats = tuple(sorted(set(categories)))
        names = (*PROFILE_FEATURES, *(f"page_{c}" for c in cats), "intercept")
        if len(names) > MAX_DIM:
            cats = cats[: MAX_DIM - len(PROFILE_FEATURES) - 1]  # the rest share "no page"
            names = (*PROFILE_FEATURES, *(f"page_{c}" for c in cats), "intercept")
        base = len(PROFILE_FEATURES)
        return cls(cats, names, {c: base + i for i, c in enumerate(cats)})

    @property
    def dim(self) -> int:
        return len(self.names)

    def vector(self, profile: Profile, context: Mapping[str, Any] | None, channel: str,
               now_ms: int) -> np.ndarray:
        """The request's features (``names`` order) at ``now_ms``."""
        ctx = {"channel": channel}
        x = np.zeros(self.dim)
        x[: len(PROFILE_FEATURES)] = feature_vector(profile, ctx, now_ms, names=PROFILE_FEATURES)
        page = (context or {}).get("page")
        col = self._page.get(page) if isinstance(page, str) else None
        if col is not None:
            x[col] = 1.0
        x[-1] = 1.0
        return x
