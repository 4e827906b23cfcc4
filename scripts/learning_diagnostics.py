"""Diagnostics behind docs/benchmarks/learning.md: tuning runs and what bounds the engine.

Run with the project's interpreter (``.venv/bin/python scripts/learning_diagnostics.py ...``);
every figure is on the simulator, seeded, so it reproduces:

- ``tune CONFIG_JSON [--seed 101] [--customers 600] [--days 14]``: one engine use-case config
  (JSON, as in ``ENGINE_CONFIGS``) on a tuning seed, drift at day 7; efficiency over the run,
  before and after the drift and on the last day of each period. ``--true-segment`` passes the
  simulator's planted segment as ``context.segment`` (what perfect segmentation would give).
- ``segments [--seed 101] [--customers 600] [--days 7]``: how well behaviour recovers the planted
  segments: purity of the engine's online segments, of batch k-means on the same vectors (raw and
  standardised, best of 10 k-means++ starts) and the accuracy of a supervised LDA (2-fold).
- ``ceiling [--seed 101] [--customers 600] [--days 7]``: the best a policy keyed by the online
  segment (and channel) could do, in hindsight, against the same keyed by the planted segment
  and against one offer per channel for everyone.
- ``gap [--seed 101] [--customers 2000] [--days 7]``: where ``engine_best`` loses efficiency in
  the last two days, by profile maturity (events seen) and by planted segment.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
from scipy.cluster.vq import kmeans2

from stream_app.core.decision import segment_of
from stream_app.evaluation.benchmark import Trace, run
from stream_app.evaluation.engine_agent import LIGHT_SUITE, EngineAgent
from stream_app.evaluation.learning import (
    ENGINE_BEST,
    ENGINE_CONFIGS,
    engine_config,
    simulation,
    window,
)
from stream_app.models.segments import segment_vector
from stream_app.simulator.population import DAY_MS

Meta = Callable[[dict[str, Any], EngineAgent, Any], Any]  # request, agent, population


def _engine_run(use_case: dict[str, Any], seed: int, customers: int, days: float,
                drift: Sequence[float] = (), true_segment: bool = False,
                meta: Meta | None = None) -> tuple[Any, EngineAgent, Trace, list[Any]]:
    """Run one engine config; ``meta(request, agent, population)`` is recorded before each
    decision."""
    sim, _ = simulation(seed, customers, days, drift)
    agent = EngineAgent(engine_config(use_case), seed=seed, name="diagnostic", suite=LIGHT_SUITE)
    rows: list[Any] = []
    act = agent.act
    pop = sim.population

    def wrapped(request: dict[str, Any], candidates: tuple[str, ...], rng: Any):
        if true_segment:
            segment = pop.segment_names[pop.segment_of(request["customer_id"])]
            request = {**request, "context": {**(request.get("context") or {}),
                                              "segment": segment}}
        if meta is not None:
            rows.append(meta(request, agent, pop))
        return act(request, candidates, rng)

    agent.act = wrapped  # type: ignore[method-assign]
    return sim, agent, run(sim, agent, seed=seed), rows


def tune(args: argparse.Namespace) -> dict[str, Any]:
    use_case = orjson.loads(args.config)
    drift = (7.0,) if args.days > 7 else ()
    sim, _, trace, _ = _engine_run(use_case, args.seed, args.customers, args.days, drift,
                                   args.true_segment)
    start = sim.start_ms
    cuts = [("whole run", 0.0, args.days), ("day 6-7", 6.0, 7.0)]
    if args.days > 7:
        cuts += [("days 0-7", 0.0, 7.0), ("days 7-14", 7.0, args.days),
                 (f"day {args.days - 1:g}-{args.days:g}", args.days - 1.0, args.days)]
    return {"config": use_case, "seed": args.seed, "customers": args.customers,
            "true_segment": args.true_segment,
            **{label: round(window(trace, start + int(a * DAY_MS),
                                   start + int(b * DAY_MS))["efficiency"], 3)
               for label, a, b in cuts}}


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    table = Counter(zip(labels.tolist(), truth.tolist()))
    best = defaultdict(int)
    for (k, _), n in table.items():
        best[k] = max(best[k], n)
    return sum(best.values()) / len(labels)


def _kmeans_purity(x: np.ndarray, truth: np.ndarray, k: int) -> float:
    best: tuple[float, np.ndarray] | None = None
    for s in range(10):
        centres, labels = kmeans2(x, k, seed=s, minit="++")
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    assert best is not None
    return _purity(best[1], truth)


def _lda_accuracy(x: np.ndarray, truth: np.ndarray, k: int) -> float:
    idx = np.random.default_rng(0).permutation(len(truth))
    halves = (idx[: len(idx) // 2], idx[len(idx) // 2:])
    acc = []
    for train, test in (halves, halves[::-1]):
        means = np.array([x[train][truth[train] == c].mean(axis=0) for c in range(k)])
        resid = x[train] - means[truth[train]]
        prec = np.linalg.inv(np.cov(resid.T) + 1e-3 * np.eye(x.shape[1]))
        dist = [(((x[test] - m) @ prec) * (x[test] - m)).sum(axis=1) for m in means]
        acc.append(float((np.argmin(dist, axis=0) == truth[test]).mean()))
    return float(np.mean(acc))


def segments(args: argparse.Namespace) -> dict[str, Any]:
    sim, agent, trace, _ = _engine_run(ENGINE_CONFIGS["engine_segment_arms"], args.seed,
                                       args.customers, args.days)
    pop, now = sim.population, int(trace.ts[-1])
    ids = sorted(agent.customers)
    truth = np.array([pop.segment_of(c) for c in ids])
    online = np.array([agent.customers[c].profile.segment for c in ids])
    x = np.array([segment_vector(agent.customers[c].profile, now) for c in ids])
    k = len(pop.segment_names)
    assigned = online >= 0
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    return {"seed": args.seed, "customers": len(ids), "days": args.days,
            "assigned": int(assigned.sum()),
            "online_purity": round(_purity(online[assigned], truth[assigned]), 3),
            "batch_kmeans_purity": round(_kmeans_purity(x, truth, k), 3),
            "batch_kmeans_standardised_purity": round(_kmeans_purity(z, truth, k), 3),
            "supervised_lda_accuracy": round(_lda_accuracy(x, truth, k), 3)}


def _keyed_best(trace: Trace, keys: Sequence[Any], mask: np.ndarray) -> float:
    """Efficiency of always showing, per key, the offer best on average for that key."""
    rows: dict[Any, list[int]] = defaultdict(list)
    for i in np.flatnonzero(mask):
        rows[keys[i]].append(i)
    got = sum(trace.probs[r, trace.probs[r].mean(axis=0).argmax()].sum() for r in rows.values())
    return float(got / trace.best[mask].sum())


def ceiling(args: argparse.Namespace) -> dict[str, Any]:
    def meta(request: dict[str, Any], agent: EngineAgent, pop: Any) -> tuple[str, int, str]:
        cid = request["customer_id"]
        return (segment_of(request, agent._customer(cid).profile.segment),
                pop.segment_of(cid), request["channel"])

    _, _, trace, rows = _engine_run(ENGINE_CONFIGS["engine_segment_arms"], args.seed,
                                    args.customers, args.days, meta=meta)
    everything = np.ones(len(trace.ts), bool)
    late = trace.ts >= trace.ts[0] + 4 * DAY_MS
    out: dict[str, Any] = {"seed": args.seed, "customers": args.customers, "days": args.days}
    for name, key in (("channel only", lambda r: r[2]),
                      ("online segment", lambda r: r[0]),
                      ("online segment x channel", lambda r: (r[0], r[2])),
                      ("planted segment", lambda r: r[1]),
                      ("planted segment x channel", lambda r: (r[1], r[2]))):
        keys = [key(r) for r in rows]
        out[name] = {"whole run": round(_keyed_best(trace, keys, everything), 3),
                     "days 4+": round(_keyed_best(trace, keys, late), 3)}
    return out


def gap(args: argparse.Namespace) -> dict[str, Any]:
    def meta(request: dict[str, Any], agent: EngineAgent, pop: Any) -> tuple[int, int]:
        cid = request["customer_id"]
        return agent._customer(cid).profile.n_events, pop.segment_of(cid)

    sim, _, trace, rows = _engine_run(ENGINE_BEST, args.seed, args.customers, args.days, meta=meta)
    late = trace.ts >= trace.ts[0] + (args.days - 2.0) * DAY_MS
    lost = float((trace.best[late] - trace.expected[late]).sum())
    out: dict[str, Any] = {"seed": args.seed, "customers": args.customers,
                           "efficiency (last 2 days)": round(float(
                               trace.expected[late].sum() / trace.best[late].sum()), 3)}
    for name, key in (("events seen", lambda r: min(r[0] // 10 * 10, 60)),
                      ("planted segment", lambda r: sim.population.segment_names[r[1]])):
        groups: dict[Any, list[int]] = defaultdict(list)
        for i in np.flatnonzero(late):
            groups[key(rows[i])].append(i)
        out[name] = {str(k): {"requests": len(ix),
                              "efficiency": round(float(trace.expected[ix].sum()
                                                        / trace.best[ix].sum()), 3),
                              "share of the loss": round(float(
                                  (trace.best[ix] - trace.expected[ix]).sum()) / lost, 2)}
                     for k, ix in sorted(groups.items())}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, customers, days in (("tune", tune, 600, 14.0),
                                        ("segments", segments, 600, 7.0),
                                        ("ceiling", ceiling, 600, 7.0),
                                        ("gap", gap, 2000, 7.0)):
        p = sub.add_parser(name)
        if name == "tune":
            p.add_argument("config", help="use-case settings as JSON")
            p.add_argument("--true-segment", action="store_true")
        p.add_argument("--seed", type=int, default=101)
        p.add_argument("--customers", type=int, default=customers)
        p.add_argument("--days", type=float, default=days)
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    if args.command == "tune":
        try:
            config = orjson.loads(args.config)
        except orjson.JSONDecodeError as exc:
            config = exc
        if not isinstance(config, dict):
            print(f"config must be a JSON object of use-case settings: {config}", file=sys.stderr)
            return 2
    print(orjson.dumps(args.func(args), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
