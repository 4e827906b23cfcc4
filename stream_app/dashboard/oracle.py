"""The simulator's ground truth for decisions read off the ``decisions`` topic: the oracle line.

When the traffic comes from the seeded simulator (``stream-app demo``, ``stream-app simulate``),
the customers' true response probabilities are known to anyone who builds the same
``Simulation`` (``kafka.traffic.simulation_for``: same seed, customers, days and drift times).
``SimulatorOracle`` does that and scores every decision of that run as the traffic tool does
(``kafka/traffic.py``): the true response probability of the offer the engine chose (0 for a
no-action), of the best offer (the oracle) and of a uniformly random choice among the request's
candidates. The request is the simulation's own (found by its request id); the customer's
contact fatigue follows from answering each offer in turn, which depends on a customer's
decisions only, in their order on the topic (one customer, one partition). Nothing about the
ground truth travels on the engine's topics.

The figures are exact when every decision of the run is read from the start of the topic; a
decision whose request this simulation did not emit (other traffic, other parameters) is
counted in ``foreign`` and not scored.

>>> oracle = SimulatorOracle(seed=3, customers=50, days=0.5)
>>> request = next(oracle.simulation.requests())
>>> decision = {**request, "decision_id": "dc-1", "action": "offer",
...             "offer_id": oracle.simulation.oracle(request)[0]}
>>> chosen, best, random = oracle.score(decision)
>>> chosen == best and 0.0 < random <= best < 1.0
True
>>> oracle.score({**decision, "request_id": "rq-other-1"}), oracle.foreign
(None, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stream_app.kafka.traffic import simulation_for

__all__ = ["SimulatorOracle"]


class SimulatorOracle:
    """The ground truth of one seeded simulation run, for the decisions the engine made in it.

    Parameters
    ----------
    seed, customers, days, drift_at_days
        The run's parameters, as given to ``stream-app demo`` / ``stream-app simulate``.
    """

    def __init__(self, seed: int, customers: int, days: float = 3.0,
                 drift_at_days: Sequence[float] = ()) -> None:
        if customers < 1 or days <= 0:
            raise ValueError("the simulation needs at least one customer and some days")
        self.simulation = sim = simulation_for(customers, seed, days, tuple(drift_at_days))
        self._index = {sim.request(j)["request_id"]: j for j in range(sim.n_requests)}
        self._offers = {o: i for i, o in enumerate(sim.population.offer_ids)}
        self._scored: set[int] = set()
        self.foreign = 0  # decisions whose request this simulation did not emit

    def score(self, decision: Mapping[str, Any]) -> tuple[float, float, float] | None:
        """``(chosen, oracle, random)`` true response probabilities for a decision of this run
        (then the customer's answer to an offer, as the traffic tool gives it: its fatigue);
        None for a foreign request or one already scored."""
        sim = self.simulation
        j = self._index.get(str(decision.get("request_id")))
        request = sim.request(j) if j is not None else None
        offer = decision.get("offer_id") if decision.get("action") == "offer" else None
        if request is None or request["customer_id"] != decision.get("customer_id") \
                or (offer is not None and offer not in self._offers) \
                or not isinstance(decision.get("channel"), str) \
                or not isinstance(decision.get("decision_id"), str) \
                or not isinstance(decision.get("ts"), int):
            self.foreign += 1
            return None
        if j in self._scored:
            return None
        self._scored.add(j)
        probs = sim.true_probs(request)  # before the answer: it adds to the customer's fatigue
        shown = [self._offers[o] for o in sim.candidates(request)]
        random = float(probs[shown].mean()) if shown else 0.0
        if offer is None:
            return 0.0, float(probs.max()), random
        chosen = float(probs[self._offers[offer]])
        sim.respond(decision)
        return chosen, float(probs.max()), random
