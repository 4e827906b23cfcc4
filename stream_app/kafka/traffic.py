"""The built-in traffic generator: the seeded simulator talking to the engine through Kafka.

It produces interactions and decision requests in event-time order, reads the engine's decisions,
answers them from the simulator's hidden ground truth on ``outcomes``, and keeps score: per
decision, the true response probability of the offer the engine chose, of the best offer (the
oracle) and of a uniformly random choice among the request's candidates (the random baseline).

Event time runs at most ``lockstep_ms`` ahead of the oldest request still waiting for its
decision: the answer to a decision must reach the engine before the decision's attribution
window has passed in event time, or the engine would rightly count it as ignored. Within that
bound the generator does not wait for the engine, so a long lockstep (the demo uses half the
attribution window) lets many requests be in flight and days of event time pass in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_app.core.delta import outcome_rows
from stream_app.kafka.client import TopicReader, producer, send
from stream_app.settings import Settings
from stream_app.simulator import Population, Simulation

__all__ = ["LOCKSTEP_MS", "Score", "run_traffic", "simulation_for"]

LOCKSTEP_MS = 60_000  # default: how far event time may run ahead of an unanswered request
ANSWER_WAIT_S = 10.0  # the longest the generator holds event time for a late decision
STARTUP_WAIT_S = 90.0  # ... for the first decision (a worker starting, joining its group)


@dataclass
class Score:
    requests: int = 0
    decisions: int = 0
    no_action: int = 0
    outcomes: int = 0
    responses: int = 0
    oracle_prob: float = 0.0
    chosen_prob: float = 0.0
    # per decision: (request ts, chosen, oracle, random) true response probabilities; a
    # no_action decision shows nothing: chosen 0
    trace: list[tuple[int, float, float, float]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    deltas: int = 0  # outcome deltas the engine published (rows of its ``outcomes`` records)
    dead_letters: int = 0
    unanswered: int = 0  # requests given up on: no decision within ANSWER_WAIT_S
    start_ms: int = 0  # the simulation's first and last event time
    end_ms: int = 0
    event_ms: int = 0  # event time of the last message sent


def simulation_for(customers: int, seed: int, days: float,
                   drift_at_days: tuple[float, ...] = ()) -> Simulation:
    """The simulation ``run_traffic`` plays (``dashboard/oracle.py`` builds the same one)."""
    from stream_app.simulator.population import DAY_MS, DEFAULT_START_MS

    drift = [DEFAULT_START_MS + int(d * DAY_MS) for d in drift_at_days]
    return Simulation(Population(seed=seed, n_customers=customers, drift_at_ms=drift), days=days,
                      seed=seed)


def run_traffic(settings: Settings, customers: int, seconds: float, rate: float, seed: int,
                days: float = 3.0, drift_at_days: tuple[float, ...] = (),
                lockstep_ms: int = LOCKSTEP_MS,
                progress: Callable[[Score, float], None] | None = None,
                progress_every_s: float = 10.0) -> Score:
    """Drive the engine with the simulator for ``days`` of event time or ``seconds`` of wall
    time, whichever ends first, at most ``rate`` messages per second (0: as fast as the engine
    answers). ``drift_at_days`` re-draws the customers' hidden preferences at those event times
    (days after the start), so re-convergence can be seen. ``progress(score, elapsed_s)`` is
    called every ``progress_every_s`` seconds."""
    sim = simulation_for(customers, seed, days, drift_at_days)
    offer_index = {o: i for i, o in enumerate(sim.population.offer_ids)}
    prod = producer(settings.bootstrap_servers)
    decisions = TopicReader(settings.bootstrap_servers, settings.topic("decisions"))
    deltas = TopicReader(settings.bootstrap_servers, settings.topic("delta-metrics"))
    dead = TopicReader(settings.bootstrap_servers, settings.topic("dead-letter"))
    requests: dict[str, dict[str, Any]] = {}  # in flight, in event-time order
    score = Score(start_ms=sim.start_ms, end_ms=sim.end_ms, event_ms=sim.start_ms)
    started = time.monotonic()
    next_progress = started + progress_every_s
    sent = 0

    def drain(timeout: float) -> None:
        for d in decisions.read_json(timeout):
            req = requests.pop(d["request_id"], None)
            if req is None:
                continue
            score.decisions += 1
            score.latencies.append(d["latency_ms"])
            probs = sim.true_probs(req)  # before the answer: it adds to the customer's fatigue
            best = float(probs.max())
            shown = [offer_index[o] for o in sim.candidates(req)]
            random = float(probs[shown].mean()) if shown else 0.0
            score.oracle_prob += best
            if d["action"] != "offer":
                score.no_action += 1
                score.trace.append((int(req["ts"]), 0.0, best, random))
                continue
            p = float(probs[offer_index[d["offer_id"]]])
            score.trace.append((int(req["ts"]), p, best, random))
            score.chosen_prob += p
            outcome = sim.respond(d)
            if outcome is not None:
                score.outcomes += 1
                score.responses += outcome["type"] in ("clicked", "accepted", "converted")
                send(prod, settings.topic("outcomes"), outcome["customer_id"], outcome)
        score.deltas += sum(len(outcome_rows(orjson.loads(raw))) for _, raw in deltas.poll(0.0))
        score.dead_letters += sum(1 for _ in dead.poll(0.0))

    def oldest() -> int | None:
        return next(iter(requests.values()))["ts"] if requests else None

    for topic, msg in sim.events():
        now = time.monotonic()
        if now - started > seconds:
            break
        if progress is not None and now >= next_progress:
            progress(score, now - started)
            next_progress = now + progress_every_s
        # keep event time honest: outcomes of earlier decisions go out before time moves on past
        # them, otherwise the engine would rightly count those decisions as ignored
        first = oldest()
        wait_until = now + (ANSWER_WAIT_S if score.decisions else STARTUP_WAIT_S)
        while first is not None and msg["ts"] - first > lockstep_ms:
            if time.monotonic() > wait_until:  # no decision came: stop holding time for them
                for late in [r for r, m in requests.items() if msg["ts"] - m["ts"] > lockstep_ms]:
                    del requests[late]
                    score.unanswered += 1
                break
            prod.poll(0)
            drain(0.02)
            first = oldest()
        if topic == "decision-requests":
            requests[msg["request_id"]] = msg
            score.requests += 1
        send(prod, settings.topic(topic), msg["customer_id"], msg)
        score.event_ms = msg["ts"]
        sent += 1
        if sent % 50 == 0:
            prod.poll(0)
            drain(0.0)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    prod.flush(30)
    deadline = time.monotonic() + 30
    while requests and time.monotonic() < deadline:
        drain(0.3)
        prod.flush(5)
    prod.flush(30)
    time.sleep(1.0)
    drain(0.5)
    score.unanswered += len(requests)
    for r in (decisions, deltas, dead):
        r.close()
    return score
