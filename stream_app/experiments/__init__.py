"""Experiments and shadow policies: A/B, multivariate and control-group tests with statistics
computed in the stream, and off-policy estimates of challenger policies running in shadow.

Pure Python + numpy (scipy for one distribution function); nothing here touches Kafka.
Typical use in the decision core::

    experiments = parse_experiments(config.raw.get("experiments"))   # once per config version
    for a in assignments_for(experiments, customer_id, use_case):    # sticky, stateless
        ...  # apply a.treatment; put a.as_dict() in the decision; stats[a.experiment_id]
    stats.add_exposure(a.arm); ...; stats.add_outcome(a.arm, reward, value)
    stats.snapshot(ts)                                               # -> delta-metrics
    shadow.add(decision_propensity, challenger_prob_of_same_offer, reward)
    if watch.observe(shadow, ts): ...                                # promotion is due
"""

from stream_app.experiments.assignment import (
    Assignment,
    assign,
    assign_index,
    assignments_for,
    bucket,
    buckets,
)
from stream_app.experiments.config import (
    CONTROL,
    Arm,
    Experiment,
    Guardrail,
    parse_experiment,
    parse_experiments,
)
from stream_app.experiments.promotion import PromotionWatch
from stream_app.experiments.sequential import Bounds, cs_half_width, diff_cs, mean_cs
from stream_app.experiments.shadow import Estimate, ShadowEstimator, shadow_estimates, shadow_terms
from stream_app.experiments.srm import SampleRatio, sample_ratio_check
from stream_app.experiments.stats import ExperimentStats, StatsCodecError

__all__ = [
    "Arm",
    "Assignment",
    "Bounds",
    "CONTROL",
    "Estimate",
    "Experiment",
    "ExperimentStats",
    "Guardrail",
    "PromotionWatch",
    "SampleRatio",
    "ShadowEstimator",
    "StatsCodecError",
    "assign",
    "assign_index",
    "assignments_for",
    "bucket",
    "buckets",
    "cs_half_width",
    "diff_cs",
    "mean_cs",
    "parse_experiment",
    "parse_experiments",
    "sample_ratio_check",
    "shadow_estimates",
    "shadow_terms",
]
