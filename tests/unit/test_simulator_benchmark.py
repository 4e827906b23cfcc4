"""The learning-quality harness: policies against the simulator, scored on ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from river import bandit, proba

from stream_app.evaluation.agents import OracleAgent, PolicyAgent, RandomAgent, RiverAgent
from stream_app.evaluation.benchmark import (
    Trace,
    default_agents,
    reconvergence,
    run,
    run_benchmark,
    summarise,
)
from stream_app.evaluation.report import benchmark_markdown, markdown_table
from stream_app.policies.thompson import ThompsonSampling
from stream_app.simulator import Population, Simulation

HOUR = 3_600_000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(Population(seed=31, n_customers=400), days=10.0)


def test_oracle_has_no_regret_and_random_has_plenty(sim):
    oracle = summarise(run(sim, OracleAgent(sim)))
    rand = summarise(run(sim, RandomAgent(), seed=1))
    assert oracle["efficiency"] == pytest.approx(1.0) and oracle["regret"] == pytest.approx(0.0)
    assert rand["efficiency"] < 0.6
    gap = rand["oracle_rate"] - rand["expected_rate"]
    assert rand["regret"] == pytest.approx(rand["requests"] * gap)
    assert oracle["response_rate"] > 1.8 * rand["response_rate"]
    # common random numbers: both faced the same requests and the same oracle
    assert oracle["requests"] == rand["requests"] == sim.n_requests
    assert oracle["oracle_rate"] == pytest.approx(rand["oracle_rate"])


def test_engine_thompson_learns_and_river_policies_run_deterministically(sim):
    rand = summarise(run(sim, RandomAgent(), seed=1))
    seg = lambda req: sim.population.segment_of(req["customer_id"])  # noqa: E731
    ts = PolicyAgent(ThompsonSampling(propensity_draws=16), sim.population.offers,
                     prior_strength=100.0, pool_by=seg, name="ts")  # fmt: skip
    learned = summarise(run(sim, ts, seed=1))
    assert learned["efficiency"] > rand["efficiency"] + 0.2

    def river_ts():
        return RiverAgent(bandit.ThompsonSampling(reward_obj=proba.Beta(), seed=5), "river_ts")

    first, second = run(sim, river_ts(), seed=2), run(sim, river_ts(), seed=2)
    np.testing.assert_array_equal(first.reward, second.reward)
    assert summarise(first)["efficiency"] > rand["efficiency"] + 0.1


def test_logged_records_carry_true_propensities(sim):
    trace = run(sim, RandomAgent(), seed=3, max_requests=200, log=True)
    assert len(trace.records) == 200
    for rec in trace.records:
        assert rec["action"] in rec["actions"]
        assert rec["propensity"] == pytest.approx(1 / len(rec["actions"]))


def _trace(bad_from_h: float, bad_to_h: float) -> Trace:
    """Ten requests an hour for six days; efficiency 0.8, except 0.4 between the two times."""
    ts = np.arange(0, 6 * 24 * 10) * HOUR // 10
    best = np.full(len(ts), 0.5)
    expected = np.where((ts >= bad_from_h * HOUR) & (ts < bad_to_h * HOUR), 0.2, 0.4)
    return Trace("t", 0, ts, expected, expected, best, np.zeros((len(ts), 1)))


def test_reconvergence_time_on_a_known_dip():
    out = reconvergence(_trace(48, 78), drift_ms=48 * HOUR, window_h=24.0, tolerance=0.025)
    # Back within 0.025 of 0.8 once at most 1/16 of the 24 h window is in the dip:
    # 30 h of dip + 24 h window - 1.5 h = 52.5 h after the drift.
    assert out["pre_efficiency"] == pytest.approx(0.8)
    assert out["dip"] == pytest.approx(0.4)
    assert 52.0 <= out["hours"] <= 53.0
    never = reconvergence(_trace(48, 1000), drift_ms=48 * HOUR)
    assert never["hours"] is None and never["dip"] == pytest.approx(0.4)
    too_early = reconvergence(_trace(48, 78), drift_ms=10 * HOUR)
    assert too_early["pre_efficiency"] is None


def test_benchmark_over_seeds_is_json_ready_and_renders():
    names = ("oracle", "random", "static_best", "thompson_segment", "river_ucb")
    agents = {k: v for k, v in default_agents().items() if k in names}
    result = run_benchmark(
        seeds=(1, 2), n_customers=150, days=6.0, drift_days=(3.0,), agents=agents
    )
    json.dumps(result)
    assert len(result["runs"]) == 10
    rows = {r["agent"]: r for r in result["summary"]}
    assert set(rows) == set(agents) and all(r["seeds"] == 2 for r in rows.values())
    assert rows["oracle"]["efficiency"] == pytest.approx(1.0)
    assert rows["random"]["efficiency"] < rows["static_best"]["efficiency"] < 1.0
    oracle_runs = [r for r in result["runs"] if r["agent"] == "oracle"]
    assert all(r["reconvergence"][0]["hours"] == pytest.approx(24.0, abs=0.5) for r in oracle_runs)
    text = benchmark_markdown(result)
    assert text.count("\n| ") == 1 + len(agents) and "thompson_segment" in text


def test_markdown_table_shape():
    text = markdown_table([{"a": "x", "b": 1.23456, "c": None}, {"a": "y", "b": 2, "c": 3.0}])
    assert text.splitlines() == ["| a | b | c |", "|---|---:|---:|",
                                 "| x | 1.235 | – |", "| y | 2 | 3.000 |"]  # fmt: skip
