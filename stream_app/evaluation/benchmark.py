"""Learning quality: run policies against the simulator in-process and score them on ground truth.

``run(simulation, agent)`` answers every decision request of a ``Simulation`` with the agent,
lets the simulated customer respond, and feeds the reward straight back (no attribution delay:
this measures the learning rule, not the plumbing). It returns a ``Trace`` with, per request,
the realised reward, the true probability of the chosen offer (``expected``) and of the oracle's
(``best``). ``summarise`` turns a trace into JSON-ready figures:

- ``cumulative_reward`` and ``response_rate`` (realised), ``expected_rate`` (true mean),
- ``regret``: sum of ``best - expected`` (pseudo-regret, free of response noise),
- ``efficiency``: ``sum(expected) / sum(best)`` (1.0 is the oracle),
- ``no_action_rate``: share of requests the agent answered with no offer (reward 0),
- per drift time, ``reconvergence``: hours and requests after the drift until the efficiency
  over a sliding ``window_h``-hour window is back within ``tolerance`` of the window that ended
  at the drift (at least ``window_h`` by construction; ``null`` if it never gets there).

``run_benchmark`` does this for several agents over several seeds (every agent of a seed faces
the same customers, requests and dice: common random numbers) and ``report.py`` renders it.

>>> from stream_app.simulator import Population, Simulation
>>> sim = Simulation(Population(seed=2, n_customers=100), days=2.0)
>>> trace = run(sim, RandomAgent(), seed=0)
>>> s = summarise(trace)
>>> s["requests"] == sim.n_requests, 0.0 < s["efficiency"] < 1.0
(True, True)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from river import bandit, proba

from stream_app.evaluation.agents import (
    Agent,
    OracleAgent,
    PolicyAgent,
    RandomAgent,
    RiverAgent,
    StaticAgent,
)
from stream_app.evaluation.engine_logs import POSITIVE
from stream_app.policies.thompson import ThompsonSampling
from stream_app.simulator import Population, Simulation
from stream_app.simulator.population import DAY_MS

AgentFactory = Callable[[Simulation, int], Agent]


@dataclass
class Trace:
    agent: str
    seed: int
    ts: np.ndarray  # (n,) request times
    reward: np.ndarray  # (n,) realised 0 / 1
    expected: np.ndarray  # (n,) true probability of the chosen offer
    best: np.ndarray  # (n,) true probability of the oracle's offer
    probs: np.ndarray  # (n, offers) true probabilities at decision time
    records: list[dict[str, Any]] | None = None  # logged bandit records (``log=True``)
    shown: np.ndarray | None = None  # (n,) False where the agent took no action


def run(
    simulation: Simulation,
    agent: Agent,
    seed: int = 0,
    max_requests: int | None = None,
    log: bool = False,
) -> Trace:
    """Run ``agent`` on the simulation's requests (the simulation is ``reset`` first).

    An agent with an ``observe(interaction)`` method is also fed every behaviour event, in
    event-time order before the requests it precedes; one with ``learn_outcome(request, offer,
    outcome)`` gets the customer's outcome message (``None``: ignored) instead of ``learn``'s
    reward. An agent may answer ``None`` (no action): nothing is shown, the reward is 0 (and no
    bandit record is logged).
    """
    simulation.reset()
    rng = np.random.default_rng([seed, zlib.crc32(agent.name.encode())])
    n = simulation.n_requests if max_requests is None else min(max_requests, simulation.n_requests)
    ids = simulation.population.offer_ids
    ts, reward, expected, best = np.zeros(n, np.int64), np.zeros(n), np.zeros(n), np.zeros(n)
    probs = np.zeros((n, len(ids)))
    shown = np.ones(n, bool)
    records: list[dict[str, Any]] | None = [] if log else None
    observe = getattr(agent, "observe", None)
    learn_outcome = getattr(agent, "learn_outcome", None)
    for j, request in zip(range(n), _requests(simulation, observe)):
        candidates = simulation.candidates(request)
        p = simulation.true_probs(request)
        offer, propensity = agent.act(request, candidates, rng)
        ts[j], probs[j] = request["ts"], p
        best[j] = max(p[ids.index(c)] for c in candidates)
        if offer is None:  # no action: nothing shown, nothing learned, reward 0
            shown[j] = False
            continue
        decision = dict(
            decision_id=request["request_id"], request_id=request["request_id"],
            customer_id=request["customer_id"], ts=request["ts"], channel=request["channel"],
            action="offer", offer_id=offer,
        )  # fmt: skip
        outcome = simulation.respond(decision)
        r = 1.0 if outcome is not None and outcome["type"] in POSITIVE else 0.0
        if learn_outcome is not None:
            learn_outcome(request, offer, outcome)
        else:
            agent.learn(request, offer, r)
        reward[j], expected[j] = r, p[ids.index(offer)]
        if records is not None:
            context = dict(request["context"], channel=request["channel"])
            records.append({"context": context, "action": offer, "reward": r,
                            "propensity": propensity, "actions": list(candidates)})  # fmt: skip
    return Trace(agent.name, seed, ts, reward, expected, best, probs, records, shown)


def _requests(simulation: Simulation, observe: Callable[[Any], None] | None):
    """The simulation's requests; behaviour events go to ``observe`` on the way, if given."""
    if observe is None:
        yield from simulation.requests()
        return
    for topic, message in simulation.events():
        if topic == "interactions":
            observe(message)
        else:
            yield message


def _window_efficiency(trace: Trace, window_h: float) -> np.ndarray:
    """Efficiency over the ``window_h`` hours of requests ending at each request."""
    ce = np.concatenate([[0.0], np.cumsum(trace.expected)])
    cb = np.concatenate([[0.0], np.cumsum(trace.best)])
    start = np.searchsorted(trace.ts, trace.ts - int(window_h * 3_600_000), side="right")
    end = np.arange(1, len(trace.ts) + 1)
    num, den = ce[end] - ce[start], cb[end] - cb[start]
    return np.divide(num, den, out=np.ones_like(num), where=den > 0)


def reconvergence(
    trace: Trace, drift_ms: int, window_h: float = 24.0, tolerance: float = 0.02
) -> dict[str, Any]:
    """How long after ``drift_ms`` the agent is back to its pre-drift efficiency.

    Efficiency is measured over sliding windows of ``window_h`` hours (a whole day by default,
    so the daily rhythm of who is active does not masquerade as learning); the pre-drift level
    is the window ending at the drift, and only windows wholly after the drift count, so the
    answer is at least ``window_h``.
    """
    window_ms = int(window_h * 3_600_000)
    out: dict[str, Any] = {"drift_at_ms": int(drift_ms), "pre_efficiency": None,
                           "dip": None, "hours": None, "requests": None}  # fmt: skip
    d = int(np.searchsorted(trace.ts, drift_ms))
    if d == 0 or len(trace.ts) == 0 or drift_ms - window_ms < trace.ts[0]:
        return out
    eff = _window_efficiency(trace, window_h)
    first = int(np.searchsorted(trace.ts, drift_ms + window_ms))
    if first >= len(eff):
        return out
    pre, post = float(eff[d - 1]), eff[first:]
    back = np.flatnonzero(post >= pre - tolerance)
    out["pre_efficiency"] = pre
    out["dip"] = float(post[: back[0] + 1].min() if len(back) else post.min())
    if len(back):
        t = first + int(back[0])
        out["hours"] = float((trace.ts[t] - drift_ms) / 3_600_000.0)
        out["requests"] = t - d + 1
    return out


def summarise(
    trace: Trace, drift_at_ms: Sequence[int] = (), window_h: float = 24.0, tolerance: float = 0.02
) -> dict[str, Any]:
    """JSON-ready figures of one run (see the module docstring)."""
    n = len(trace.reward)
    best_sum = float(trace.best.sum())
    return {
        "agent": trace.agent,
        "seed": trace.seed,
        "requests": n,
        "cumulative_reward": float(trace.reward.sum()),
        "response_rate": float(trace.reward.mean()) if n else 0.0,
        "expected_rate": float(trace.expected.mean()) if n else 0.0,
        "oracle_rate": float(trace.best.mean()) if n else 0.0,
        "regret": float(best_sum - trace.expected.sum()),
        "efficiency": float(trace.expected.sum() / best_sum) if best_sum else 1.0,
        "no_action_rate": float(1.0 - trace.shown.mean()) if trace.shown is not None and n
        else 0.0,
        "reconvergence": [reconvergence(trace, t, window_h, tolerance) for t in drift_at_ms],
    }


def default_agents() -> dict[str, AgentFactory]:
    """Baselines, the engine's Thompson sampling and River's (population-wide) policies.

    ``thompson_customer``: per-customer arms, flat prior; ``thompson_pooled``: shrunk toward
    population arms (100 pseudo-observations, 3-day half-life); ``thompson_segment``: shrunk
    toward arms of the customer's *true* segment -- what perfect online segmentation could give.
    """

    def thompson(name: str, prior: float, by_segment: bool = False) -> AgentFactory:
        def make(sim: Simulation, seed: int) -> Agent:
            pop = sim.population
            group = (lambda req: pop.segment_of(req["customer_id"])) if by_segment else None
            return PolicyAgent(
                ThompsonSampling(propensity_draws=32), pop.offers, half_life_s=3 * 86_400.0,
                prior_strength=prior, name=name, pool_by=group,
            )  # fmt: skip

        return make

    def static(sim: Simulation, seed: int) -> Agent:
        order = np.argsort(-sim.mean_true_probs(), kind="stable")
        return StaticAgent([sim.population.offer_ids[i] for i in order])

    return {
        "oracle": lambda sim, seed: OracleAgent(sim),
        "static_best": static,
        "random": lambda sim, seed: RandomAgent(),
        "thompson_customer": thompson("thompson_customer", 0.0),
        "thompson_pooled": thompson("thompson_pooled", 100.0),
        "thompson_segment": thompson("thompson_segment", 100.0, by_segment=True),
        "river_thompson": lambda sim, seed: RiverAgent(
            bandit.ThompsonSampling(reward_obj=proba.Beta(), seed=seed), "river_thompson"),
        "river_epsilon_greedy": lambda sim, seed: RiverAgent(
            bandit.EpsilonGreedy(epsilon=0.1, seed=seed), "river_epsilon_greedy"),
        "river_ucb": lambda sim, seed: RiverAgent(bandit.UCB(delta=1.0, seed=seed), "river_ucb"),
    }  # fmt: skip


def run_benchmark(
    seeds: Sequence[int] = (1, 2, 3),
    n_customers: int = 1000,
    days: float = 14.0,
    drift_days: Sequence[float] = (7.0,),
    agents: Mapping[str, AgentFactory] | None = None,
    window_h: float = 24.0,
    tolerance: float = 0.02,
) -> dict[str, Any]:
    """Every agent on every seed; returns ``{"config", "runs", "summary"}`` (JSON-ready)."""
    agents = dict(agents or default_agents())
    runs = []
    for seed in seeds:
        pop = Population(seed=seed, n_customers=n_customers)
        drift = [pop.start_ms + int(d * DAY_MS) for d in drift_days]
        pop = Population(seed=seed, n_customers=n_customers, drift_at_ms=drift)
        sim = Simulation(pop, days=days)
        for name, factory in agents.items():
            trace = run(sim, factory(sim, seed), seed=seed)
            runs.append(dict(summarise(trace, drift, window_h, tolerance), agent=name))
    config = dict(
        seeds=list(seeds), n_customers=n_customers, days=days, drift_days=list(drift_days),
        window_h=window_h, tolerance=tolerance,
    )  # fmt: skip
    return {"config": config, "runs": runs, "summary": aggregate(runs)}


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, one row per agent (in first-seen order)."""
    names = list(dict.fromkeys(r["agent"] for r in runs))
    rows = []
    for name in names:
        mine = [r for r in runs if r["agent"] == name]
        row: dict[str, Any] = {"agent": name, "seeds": len(mine)}
        for key in ("cumulative_reward", "response_rate", "expected_rate", "regret", "efficiency",
                    "no_action_rate"):
            vals = np.array([r.get(key, 0.0) for r in mine], np.float64)
            row[key] = float(vals.mean())
            row[f"{key}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        hours = [c["hours"] for r in mine for c in r["reconvergence"]]
        done = [h for h in hours if h is not None]
        row["reconverge_hours"] = float(np.mean(done)) if done else None
        row["never_reconverged"] = len(hours) - len(done)
        rows.append(row)
    return rows
