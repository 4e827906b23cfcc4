"""Bandit policies: pure functions of arm posteriors and a seeded generator, vectorised over offers."""

from stream_app.policies.base import Choice, PolicyInput
from stream_app.policies.thompson import ThompsonSampling

__all__ = ["Choice", "PolicyInput", "ThompsonSampling"]
