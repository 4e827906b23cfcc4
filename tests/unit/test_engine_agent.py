"""The engine as a benchmark agent: light River models change nothing the decisions read."""

from __future__ import annotations

import numpy as np

from stream_app.evaluation.benchmark import run
from stream_app.evaluation.learning import make_agent, simulation


def test_light_models_give_the_same_decisions_as_the_worker_suite():
    # decisions read profiles, online segments, arms and the contextual state, never the River
    # scores, so the benchmark may run with LIGHT_SUITE (docs/benchmarks/learning.md); a
    # propensity prior reads the per-offer propensity models alone, the same in both suites
    for name in ("engine_best", "engine_segment_arms", "engine_segment_arms_propensity"):
        traces = []
        for light in (True, False):
            sim, _ = simulation(7, n_customers=120, days=1.0, drift_days=())
            agent = make_agent(name, sim, seed=7, light=light)
            traces.append(run(sim, agent, seed=7))
        light, full = traces
        assert len(light.ts) > 100
        np.testing.assert_array_equal(light.expected, full.expected)  # the same offers, in order
        np.testing.assert_array_equal(light.reward, full.reward)

