"""Policies by name, as the engine configuration refers to them (``use_cases[].policy/params``).

``make_policy`` raises ``ValueError`` with a one-line reason for an unknown name, an unknown
parameter or a bad value, so a configuration that names a broken policy is rejected as a whole.

>>> make_policy("epsilon_greedy", {"epsilon": 0.2}).epsilon
0.2
>>> make_policy("greedy", {})  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
ValueError: unknown policy 'greedy'; known: thompson, epsilon_greedy, ucb, ...
>>> make_policy("ucb", {"width": 2})
Traceback (most recent call last):
    ...
ValueError: policy 'ucb' has no parameter 'width'; accepts: variant, c, value_weighted
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from stream_app.policies.base import Policy
from stream_app.policies.epsilon_greedy import EpsilonGreedy
from stream_app.policies.linear import LinearThompson, LinUCB
from stream_app.policies.loss_aversion import LossAversion
from stream_app.policies.prospect_theory import ProspectTheory
from stream_app.policies.risk_aversion import RiskAversion
from stream_app.policies.thompson import ThompsonSampling
from stream_app.policies.ucb import UpperConfidenceBound

_POLICIES: dict[str, type] = {
    cls.name: cls
    for cls in (
        ThompsonSampling,
        EpsilonGreedy,
        UpperConfidenceBound,
        RiskAversion,
        LossAversion,
        ProspectTheory,
        LinearThompson,
        LinUCB,
    )
}
POLICY_NAMES: tuple[str, ...] = tuple(_POLICIES)
CONTEXTUAL_POLICY_NAMES: tuple[str, ...] = (LinearThompson.name, LinUCB.name)


def make_policy(name: str, params: Mapping[str, Any] | None = None) -> Policy:
    """Build the policy called ``name`` with constructor settings ``params``."""
    cls = _POLICIES.get(name)
    if cls is None:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    params = dict(params or {})
    accepted = list(inspect.signature(cls).parameters)
    for key in params:
        if key not in accepted:
            raise ValueError(
                f"policy {name!r} has no parameter {key!r}; accepts: {', '.join(accepted)}"
            )
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"policy {name!r}: {exc}") from None
