"""The engine itself as a benchmark agent: the worker's partition engine and the fleet's
learner, in-process.

``EngineAgent`` drives ``partitions`` ``PartitionSession``s (``partition/session.py``, the class
the worker runs for each of its partitions) over ``DictStore``s, customers split over them by
the Kafka client's partitioner (murmur2 of the customer id, as the producers and the worker
split them), and the fleet's learner (``fleet/local.py``: snapshots every
``snapshot_every_ms`` of event time). Every simulator message is encoded as the JSON a topic
would carry: every interaction goes through the session's interactions path (profiles, online
segments), every request through its decision path (segment, routing, business rules, policy)
and every answer through its outcomes path; every learning record the sessions send goes to
the learner. An offer the customer ignored is settled by the session's own attribution timer:
the agent moves the partition's event time to the end of the decision's attribution window
(``tick``), as the next message would in the worker.

A ``no_action`` decision (every offer removed by a business rule, e.g. "not the same offer
twice in 24 h") shows nothing: ``act`` returns ``None`` and the benchmark counts reward 0.

``suite`` swaps the fleet's River models for lighter ones (``LIGHT_SUITE``): decisions read
the profile, the online segments and the arms, never the engagement / churn / capacity /
propensity scores, so they are the same, several times faster (a test checks this).

>>> from stream_app.fleet import POPULATION_KEY
>>> from stream_app.simulator import Population, Simulation, default_engine_config
>>> sim = Simulation(Population(seed=4, n_customers=30), days=1.0)
>>> agent = EngineAgent(default_engine_config(), seed=1)
>>> req = next(iter(sim.requests()))
>>> offer, propensity = agent.act(req, sim.candidates(req), None)
>>> offer in sim.candidates(req) and 0.0 < propensity <= 1.0
True
>>> agent.learn_outcome(req, offer, None)   # ignored: its attribution timer fires
>>> pooled = agent.fleet.learner.population.arms[POPULATION_KEY]
>>> float(pooled.evidence(agent.decider.config.offer_keys, req["ts"], None)[1].sum())
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from stream_app.core.catalogue import EngineConfig, parse_config
from stream_app.core.decision import Decider, decision_id_for
from stream_app.core.feedback import window_end
from stream_app.core.population import PopulationState
from stream_app.fleet.local import SNAPSHOT_EVERY_MS, LocalFleet
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.keys import partition_of

Request = Mapping[str, Any]
# The cheapest candidates: one linear model per score, the running mean for capacity.
LIGHT_SUITE = SuiteConfig(classifiers=("logreg",), propensity_classifiers=("logreg",),
                          regressors=("mean",))


class EngineAgent:
    """``partitions`` ``PartitionSession``s on dicts and the fleet's learner, behind the
    benchmark's agent protocol."""

    def __init__(self, config: EngineConfig | Mapping[str, Any], seed: int = 0,
                 name: str = "engine", suite: SuiteConfig | None = None, partitions: int = 1,
                 snapshot_every_ms: int = SNAPSHOT_EVERY_MS) -> None:
        cfg = config if isinstance(config, EngineConfig) else parse_config(config)
        self.decider = Decider(cfg, seed)
        self.name = name
        population = PopulationState(
            ModelSuite(replace(suite, seed=seed)) if suite is not None else None, seed=seed)
        self.fleet = LocalFleet(lambda: self.decider, seed=seed, population=population,
                                snapshot_every_ms=snapshot_every_ms)
        self.stores = [DictStore() for _ in range(partitions)]
        self.sessions = [PartitionSession(p, store, lambda: self.decider, fleet=self.fleet,
                                          seed=seed, epoch=1)
                         for p, store in enumerate(self.stores)]
        self._expires: dict[str, tuple[int, int]] = {}  # request id -> (partition, window end)
        self.decisions = 0
        self.no_actions = 0

    @property
    def store(self) -> DictStore:
        """The first partition's store (the only one with ``partitions=1``)."""
        return self.stores[0]

    def _partition(self, customer_id: str) -> int:
        n = len(self.sessions)
        return 0 if n == 1 else partition_of(customer_id, n)

    def _send(self, source: str, message: Mapping[str, Any]) -> Any:
        cid = message["customer_id"]
        record = InputRecord(cid.encode(), orjson.dumps(message))
        emitted = self.sessions[self._partition(cid)].process(source, [record])
        if emitted.dead_letters:
            raise ValueError(f"{source}: the engine dead-lettered {dict(message)!r}: "
                             f"{orjson.loads(emitted.records[-1][2])['reason']}")
        self.fleet.take(emitted.records)
        return emitted

    # -- the agent protocol --------------------------------------------------------------------
    def observe(self, interaction: Mapping[str, Any]) -> None:
        self._send("interactions", interaction)

    def act(self, request: Request, candidates: tuple[str, ...], rng: Any
            ) -> tuple[str | None, float]:
        """The engine's offer and its propensity, or ``(None, 1.0)`` for ``no_action``."""
        decision = self._send("decision-requests", request).decisions[0]
        self.decisions += 1
        if decision["action"] != "offer":
            self.no_actions += 1
            return None, 1.0
        window = self.decider.config.use_cases[decision["use_case"]].attribution_window_s
        self._expires[request["request_id"]] = (self._partition(request["customer_id"]),
                                                window_end(int(decision["ts"]), window))
        return decision["offer_id"], float(decision["propensity"])

    def learn_outcome(self, request: Request, offer_id: str | None,
                      outcome: Mapping[str, Any] | None) -> None:
        """Send the simulator's answer for the engine's decision (``None``: ignored, settled
        when its attribution window ends)."""
        expires = self._expires.pop(request["request_id"], None)
        if expires is None:
            return
        if outcome is None:
            partition, end = expires
            self.fleet.take(self.sessions[partition].tick(end).records)
        else:
            self._send("outcomes", {**outcome,
                                    "decision_id": decision_id_for(request["request_id"])})

    def learn(self, request: Request, offer_id: str | None, reward: float) -> None:
        """Reward-only feedback (for callers without outcomes): 1 accepted, 0 ignored."""
        outcome = None if reward <= 0 else {
            "outcome_id": f"oc-{request['request_id']}", "customer_id": request["customer_id"],
            "ts": int(request["ts"]), "type": "accepted", "value": 0.0}
        self.learn_outcome(request, offer_id, outcome)

    @property
    def population(self) -> PopulationState:
        """The fleet learner's population learners."""
        return self.fleet.learner.population

    @property
    def no_action_rate(self) -> float:
        return self.no_actions / self.decisions if self.decisions else 0.0


__all__ = ["LIGHT_SUITE", "EngineAgent"]
