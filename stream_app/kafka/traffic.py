"""The built-in traffic generator: the seeded simulator talking to the engine through Kafka.

It produces interactions and decision requests in event-time order, reads the engine's decisions,
answers them from the simulator's hidden ground truth on ``outcomes``, and keeps score: how often
customers responded, against what the oracle (best offer per request) would have got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_app.core.delta import outcome_rows
from stream_app.kafka.client import TopicReader, producer, send
from stream_app.settings import Settings
from stream_app.simulator import Population, Simulation


LOCKSTEP_MS = 60_000  # how far event time may run ahead of an unanswered request


@dataclass
class Score:
    requests: int = 0
    decisions: int = 0
    no_action: int = 0
    outcomes: int = 0
    responses: int = 0
    oracle_prob: float = 0.0
    chosen_prob: float = 0.0
    trace: list[tuple[float, float]] = field(default_factory=list)  # (chosen, oracle) true probs
    latencies: list[float] = field(default_factory=list)
    deltas: int = 0  # outcome deltas the engine published (rows of its ``outcomes`` records)
    dead_letters: int = 0


def run_traffic(settings: Settings, customers: int, seconds: float, rate: float, seed: int,
                days: float = 3.0, drift_at_days: tuple[float, ...] = ()) -> Score:
    """Drive the engine with the simulator; ``drift_at_days`` re-draws the customers' hidden
    preferences at those event times (days after the start), so re-convergence can be seen."""
    from stream_app.simulator.population import DAY_MS, DEFAULT_START_MS

    drift = [DEFAULT_START_MS + int(d * DAY_MS) for d in drift_at_days]
    sim = Simulation(Population(seed=seed, n_customers=customers, drift_at_ms=drift), days=days,
                     seed=seed)
    prod = producer(settings.bootstrap_servers)
    decisions = TopicReader(settings.bootstrap_servers, settings.topic("decisions"))
    deltas = TopicReader(settings.bootstrap_servers, settings.topic("delta-metrics"))
    dead = TopicReader(settings.bootstrap_servers, settings.topic("dead-letter"))
    requests: dict[str, dict[str, Any]] = {}
    score = Score()
    started = time.monotonic()
    sent = 0

    def drain(timeout: float) -> None:
        for d in decisions.read_json(timeout):
            req = requests.pop(d["request_id"], None)
            if req is None:
                continue
            score.decisions += 1
            score.latencies.append(d["latency_ms"])
            if d["action"] != "offer":
                score.no_action += 1
                continue
            _, best = sim.oracle(req)
            p = sim.true_prob(req, d["offer_id"])
            score.trace.append((p, best))
            score.oracle_prob += best
            score.chosen_prob += p
            outcome = sim.respond(d)
            if outcome is not None:
                score.outcomes += 1
                score.responses += outcome["type"] in ("clicked", "accepted", "converted")
                send(prod, settings.topic("outcomes"), outcome["customer_id"], outcome)
        score.deltas += sum(len(outcome_rows(orjson.loads(raw))) for _, raw in deltas.poll(0.0))
        score.dead_letters += sum(1 for _ in dead.poll(0.0))

    for topic, msg in sim.events():
        elapsed = time.monotonic() - started
        if elapsed > seconds:
            break
        # keep event time honest: outcomes of earlier decisions go out before time moves on past
        # them, otherwise the engine would rightly count those decisions as ignored
        oldest = min((r["ts"] for r in requests.values()), default=None)
        wait_until = time.monotonic() + 10
        while oldest is not None and msg["ts"] - oldest > LOCKSTEP_MS and time.monotonic() < wait_until:
            prod.poll(0)
            drain(0.05)
            oldest = min((r["ts"] for r in requests.values()), default=None)
        if topic == "decision-requests":
            requests[msg["request_id"]] = msg
            score.requests += 1
        send(prod, settings.topic(topic), msg["customer_id"], msg)
        sent += 1
        if sent % 50 == 0:
            prod.poll(0)
            drain(0.0)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    prod.flush(30)
    deadline = time.monotonic() + 60
    while requests and time.monotonic() < deadline:
        drain(0.3)
        prod.flush(5)
    prod.flush(30)
    time.sleep(1.0)
    drain(0.5)
    for r in (decisions, deltas, dead):
        r.close()
    return score
