"""Bandit policies: pure functions of arm posteriors and a seeded generator, vectorised over
offers. ``make_policy(name, params)`` builds one by the name the configuration uses."""

from stream_app.policies.base import Choice, Policy, PolicyInput
from stream_app.policies.epsilon_greedy import EpsilonGreedy
from stream_app.policies.linear import LinearThompson, LinUCB
from stream_app.policies.linear_arms import LinearArms, LinearArmsCodecError
from stream_app.policies.loss_aversion import LossAversion, scarcity_affinity
from stream_app.policies.prospect_theory import ProspectTheory
from stream_app.policies.registry import CONTEXTUAL_POLICY_NAMES, POLICY_NAMES, make_policy
from stream_app.policies.risk_aversion import RiskAversion
from stream_app.policies.thompson import ThompsonSampling
from stream_app.policies.ucb import UpperConfidenceBound

__all__ = [
    "CONTEXTUAL_POLICY_NAMES",
    "POLICY_NAMES",
    "Choice",
    "EpsilonGreedy",
    "LinUCB",
    "LinearArms",
    "LinearArmsCodecError",
    "LinearThompson",
    "LossAversion",
    "Policy",
    "PolicyInput",
    "ProspectTheory",
    "RiskAversion",
    "ThompsonSampling",
    "UpperConfidenceBound",
    "make_policy",
    "scarcity_affinity",
]
