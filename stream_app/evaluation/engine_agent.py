"""The engine itself as a benchmark agent: the worker's partition engine, in-process.

``EngineAgent`` drives one ``PartitionSession`` (``partition/session.py``, the class the worker
runs for each of its partitions) over a ``DictStore``, with every simulator message encoded as
the JSON a topic would carry: every interaction goes through the session's interactions path
(profiles, online segments, models), every request through its decision path (segment,
routing, business rules, policy) and every answer through its outcomes path. An offer the
customer ignored is settled by the session's own attribution timer: the agent moves the
partition's event time to the end of the decision's attribution window (``tick``), as the next
message would in the worker.

A ``no_action`` decision (every offer removed by a business rule, e.g. "not the same offer
twice in 24 h") shows nothing: ``act`` returns ``None`` and the benchmark counts reward 0.

``suite`` swaps the partition's River models for lighter ones (``LIGHT_SUITE``): decisions read
the profile, the online segments and the arms, never the engagement / churn / capacity /
propensity scores, so they are the same, several times faster (a test checks this).

>>> from stream_app.core.arms import Arms
>>> from stream_app.partition.state import POPULATION_KEY
>>> from stream_app.simulator import Population, Simulation, default_engine_config
>>> sim = Simulation(Population(seed=4, n_customers=30), days=1.0)
>>> agent = EngineAgent(default_engine_config(), seed=1)
>>> req = next(iter(sim.requests()))
>>> offer, propensity = agent.act(req, sim.candidates(req), None)
>>> offer in sim.candidates(req) and 0.0 < propensity <= 1.0
True
>>> agent.learn_outcome(req, offer, None)   # ignored: its attribution timer fires
>>> pooled = Arms.decode(agent.store.get("arms", POPULATION_KEY))
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
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.partition import DictStore, InputRecord, PartitionSession

Request = Mapping[str, Any]
# The cheapest candidates: one linear model per score, the running mean for capacity.
LIGHT_SUITE = SuiteConfig(classifiers=("logreg",), propensity_classifiers=("logreg",),
                          regressors=("mean",))


class EngineAgent:
    """A ``PartitionSession`` on dicts behind the benchmark's agent protocol."""

    def __init__(self, config: EngineConfig | Mapping[str, Any], seed: int = 0,
                 name: str = "engine", suite: SuiteConfig | None = None) -> None:
        cfg = config if isinstance(config, EngineConfig) else parse_config(config)
        self.decider = Decider(cfg, seed)
        self.name = name
        self.store = DictStore()
        population = None if suite is None else PopulationState(
            ModelSuite(replace(suite, seed=seed)), seed=seed)
        self.session = PartitionSession(0, self.store, lambda: self.decider, seed=seed,
                                        population=population)
        self._expires: dict[str, int] = {}  # request id -> end of its decision's window
        self.decisions = 0
        self.no_actions = 0

    def _send(self, source: str, message: Mapping[str, Any]) -> Any:
        record = InputRecord(message["customer_id"].encode(), orjson.dumps(message))
        emitted = self.session.process(source, [record])
        if emitted.dead_letters:
            raise ValueError(f"{source}: the engine dead-lettered {dict(message)!r}: "
                             f"{orjson.loads(emitted.records[-1][2])['reason']}")
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
        self._expires[request["request_id"]] = window_end(int(decision["ts"]), window)
        return decision["offer_id"], float(decision["propensity"])

    def learn_outcome(self, request: Request, offer_id: str | None,
                      outcome: Mapping[str, Any] | None) -> None:
        """Send the simulator's answer for the engine's decision (``None``: ignored, settled
        when its attribution window ends)."""
        expires = self._expires.pop(request["request_id"], None)
        if expires is None:
            return
        if outcome is None:
            self.session.tick(expires)
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
        return self.session.population

    @property
    def no_action_rate(self) -> float:
        return self.no_actions / self.decisions if self.decisions else 0.0


__all__ = ["LIGHT_SUITE", "EngineAgent"]
