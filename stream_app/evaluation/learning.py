"""The learning-quality benchmark of the engine itself (``stream-app learn-bench``).

The real ``Decider`` (``EngineAgent``: profiles, online segments, hierarchical priors, business
rules, policy) against the baselines -- the oracle, the static best-on-average offer, random --
and River's Thompson sampling as an outside reference, on the simulator with a drift of every
segment's preferences, over several seeds with common random numbers (every agent of a seed faces
the same customers, requests and dice).

Figures per run (``run_learning``): the whole-run figures of ``benchmark.summarise``, the same
for fixed windows of the run (``horizons_for``: learning from scratch, converged before the drift,
after the drift, converged after it), and a learning curve (efficiency and response rate per
``bin_h`` hours) for the plot. The oracle does not know the business rules; the benchmark config
therefore turns "not the same offer twice in 24 h" off (``BENCH_RULES``), so the comparison
measures learning, not the rule (``engine_rules_on`` measures the engine with the rule on).

>>> runs = run_learning(seeds=(5,), n_customers=60, days=2.0, drift_days=(1.0,),
...                     agents=("random", "oracle"), horizons=(("all", 0.0, 2.0),))
>>> [r["agent"] for r in runs["runs"]], runs["summary"][1]["efficiency"]
(['random', 'oracle'], 1.0)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from typing import Any

import numpy as np

from stream_app.evaluation.benchmark import Trace, aggregate, default_agents, run, summarise
from stream_app.evaluation.engine_agent import LIGHT_SUITE, EngineAgent
from stream_app.simulator import Population, Simulation, default_engine_config
from stream_app.simulator.population import DAY_MS

BENCH_RULES: dict[str, Any] = {"fatigue": {"same_offer_s": 0}}  # the oracle ignores the 24 h rule
HALF_LIFE_S = 86_400.0

# Use-case settings on top of ``default_engine_config()``; ``engine_best`` was chosen on the tuning
# seed (101), never on the reported ones (docs/benchmarks/learning.md says how).
# contextual: per-offer ridge regressions on profile + page features, forgetting in 1 day
ENGINE_BEST: dict[str, Any] = {"policy": "linear_thompson", "params": {"exploration": 0.05},
                               "half_life_s": HALF_LIFE_S}
ENGINE_CONFIGS: dict[str, dict[str, Any]] = {
    "engine_default": {},
    "engine_best": ENGINE_BEST,
    # the best context-free configuration: Thompson on online-segment arms, forgetting in 1 day
    "engine_segment_arms": {"policy": "thompson", "half_life_s": HALF_LIFE_S,
                            "prior": {"segment_strength": 20.0, "prior_strength": 1000.0}},
    "engine_rules_on": {**ENGINE_BEST, "rules": {}},  # the default rules, 24 h rule on
    # engine_best, its pooled evidence forgetting faster for 12 h after a drift alarm
    "engine_best_drift": {**ENGINE_BEST, "prior": {"drift_half_life_s": 10_800.0,
                                                   "drift_window_s": 43_200.0}},
    # the fleet's per-offer propensity models as the customers' cold-start prior
    "engine_default_propensity": {"prior": {"propensity_strength": 10.0}},
    "engine_segment_arms_propensity": {
        "policy": "thompson", "half_life_s": HALF_LIFE_S,
        "prior": {"segment_strength": 20.0, "prior_strength": 1000.0,
                  "propensity_strength": 1000.0}},
}
BASELINES = ("oracle", "static_best", "random", "river_thompson")
DEFAULT_AGENTS = (*BASELINES, "engine_default", "engine_segment_arms", "engine_best",
                  "engine_rules_on")


def horizons_for(days: float, drift_days: Sequence[float] = ()) -> tuple[tuple[str, float, float], ...]:
    """Fixed windows ``(label, start day, end day)``: from the start (or a drift) to the next
    drift (or the end), the last day before each drift and before the end, and the whole run.

    >>> [h[0] for h in horizons_for(14.0, (7.0,))]
    ['days 0-7', 'day 6-7', 'days 7-14', 'day 7-8', 'day 8-9', 'day 13-14', 'days 0-14']
    """
    cuts = [0.0, *sorted(d for d in drift_days if 0.0 < d < days), float(days)]
    out: list[tuple[str, float, float]] = []
    for a, b in pairwise(cuts):
        out.append((f"days {a:g}-{b:g}", a, b))
        if a > 0.0 and b - a > 2.0:  # the first two days after a drift: re-learning
            out += [(f"day {a:g}-{a + 1:g}", a, a + 1.0), (f"day {a + 1:g}-{a + 2:g}", a + 1.0,
                                                            a + 2.0)]
        if b - a > 1.0:
            out.append((f"day {b - 1:g}-{b:g}", b - 1.0, b))
    if len(cuts) > 2:
        out.append((f"days 0-{days:g}", 0.0, float(days)))
    return tuple(out)


def engine_config(use_case: Mapping[str, Any]) -> dict[str, Any]:
    """The simulator's engine config with ``use_case`` settings (rules default: ``BENCH_RULES``)."""
    doc = default_engine_config()
    settings = copy.deepcopy(dict(use_case))
    settings.setdefault("rules", copy.deepcopy(BENCH_RULES))
    doc["use_cases"][0].update(settings)
    return doc


def make_agent(name: str, sim: Simulation, seed: int,
               engines: Mapping[str, Mapping[str, Any]] | None = None, light: bool = True,
               partitions: int = 1) -> Any:
    """A baseline of ``benchmark.default_agents`` or an engine configuration by name (on
    ``partitions`` partitions and the fleet's learner)."""
    engines = ENGINE_CONFIGS if engines is None else engines
    if name in engines:
        return EngineAgent(engine_config(engines[name]), seed=seed, name=name,
                           suite=LIGHT_SUITE if light else None, partitions=partitions)
    return default_agents()[name](sim, seed)


def simulation(seed: int, n_customers: int, days: float, drift_days: Sequence[float]
               ) -> tuple[Simulation, list[int]]:
    pop = Population(seed=seed, n_customers=n_customers)
    drift = [pop.start_ms + int(d * DAY_MS) for d in drift_days]
    pop = Population(seed=seed, n_customers=n_customers, drift_at_ms=drift)
    return Simulation(pop, days=days), drift


def window(trace: Trace, start_ms: int, end_ms: int) -> dict[str, float | None]:
    """Efficiency and response rates of the requests in ``[start_ms, end_ms)``."""
    keep = (trace.ts >= start_ms) & (trace.ts < end_ms)
    if not keep.any():
        return {"efficiency": None, "response_rate": None, "expected_rate": None,
                "oracle_rate": None}
    best = float(trace.best[keep].sum())
    return {"efficiency": float(trace.expected[keep].sum() / best) if best else 1.0,
            "response_rate": float(trace.reward[keep].mean()),
            "expected_rate": float(trace.expected[keep].mean()),
            "oracle_rate": float(trace.best[keep].mean())}


def curve(trace: Trace, start_ms: int, days: float, bin_h: float) -> dict[str, list[float]]:
    """Per ``bin_h``-hour bin: efficiency (expected / oracle) and realised response rate."""
    edges = start_ms + np.arange(0.0, days * 24.0 + bin_h / 2, bin_h) * 3_600_000
    b = np.clip(np.searchsorted(edges, trace.ts, side="right") - 1, 0, len(edges) - 2)
    nbin = len(edges) - 1
    exp_, best = np.bincount(b, trace.expected, nbin), np.bincount(b, trace.best, nbin)
    rew, n = np.bincount(b, trace.reward, nbin), np.bincount(b, minlength=nbin)
    eff = np.divide(exp_, best, out=np.full(nbin, np.nan), where=best > 0)
    rate = np.divide(rew, n, out=np.full(nbin, np.nan), where=n > 0)
    return {"hours": [float(h) for h in (edges[:-1] - start_ms) / 3_600_000 + bin_h / 2],
            "efficiency": [float(v) for v in eff], "response_rate": [float(v) for v in rate]}


def _one(job: tuple) -> dict[str, Any]:
    name, seed, n_customers, days, drift_days, engines, horizons, bin_h, light, partitions = job
    sim, drift = simulation(seed, n_customers, days, drift_days)
    agent = make_agent(name, sim, seed, engines, light, partitions)
    trace = run(sim, agent, seed=seed)
    out = dict(summarise(trace, drift), agent=name)
    start = sim.start_ms
    out["horizons"] = {label: window(trace, start + int(a * DAY_MS), start + int(b * DAY_MS))
                       for label, a, b in horizons}
    out["curve"] = curve(trace, start, days, bin_h)
    return out


def run_learning(
    seeds: Sequence[int] = (1, 2, 3, 4, 5),
    n_customers: int = 1000,
    days: float = 14.0,
    drift_days: Sequence[float] = (7.0,),
    agents: Sequence[str] = DEFAULT_AGENTS,
    engines: Mapping[str, Mapping[str, Any]] | None = None,
    horizons: Sequence[tuple[str, float, float]] | None = None,
    bin_h: float = 12.0,
    processes: int = 1,
    light: bool = True,
    partitions: int = 1,
) -> dict[str, Any]:
    """Every agent on every seed; ``{"config", "runs", "summary"}`` (JSON-ready).

    ``light`` runs the engine with ``LIGHT_SUITE`` models (same decisions, faster);
    ``partitions`` splits the customers over that many partitions, as the worker does, with
    the fleet's learner in-process.
    """
    engines = dict(ENGINE_CONFIGS if engines is None else engines)
    horizons = horizons_for(days, drift_days) if horizons is None else tuple(horizons)
    jobs = [(a, s, n_customers, days, tuple(drift_days), engines, tuple(horizons), bin_h, light,
             partitions) for s in seeds for a in agents]
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            runs = list(pool.map(_one, jobs))
    else:
        runs = [_one(j) for j in jobs]
    summary = aggregate(runs)
    for row in summary:
        mine = [r for r in runs if r["agent"] == row["agent"]]
        row["horizons"] = {}
        for label, _, _ in horizons:
            effs = [r["horizons"][label]["efficiency"] for r in mine]
            rates = [r["horizons"][label]["response_rate"] for r in mine]
            oracle = [r["horizons"][label]["oracle_rate"] for r in mine]
            row["horizons"][label] = {"efficiency": _mean_sd(effs), "response_rate": _mean_sd(rates),
                                      "oracle_rate": _mean_sd(oracle)}
    config = {"seeds": list(seeds), "n_customers": n_customers, "days": days,
              "drift_days": list(drift_days), "horizons": [list(h) for h in horizons],
              "bin_h": bin_h, "engines": engines, "rules": BENCH_RULES, "light_models": light,
              "partitions": partitions}
    return {"config": config, "runs": runs, "summary": summary}


def _mean_sd(values: Sequence[float | None]) -> list[float | None]:
    vals = np.array([v for v in values if v is not None], np.float64)
    if not len(vals):
        return [None, None]
    return [float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0]


__all__ = ["BENCH_RULES", "DEFAULT_AGENTS", "ENGINE_CONFIGS", "curve", "engine_config",
           "horizons_for", "make_agent", "run_learning", "simulation", "window"]
