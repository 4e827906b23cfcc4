"""The engine itself as a benchmark agent: the real ``Decider``, in-process, one partition.

State is kept in dicts exactly as the worker keys its tables (``worker/app.py``): customer state
and customer arms by customer id, segment arms by the decision's segment string
(``segment_of(request, profile.segment)``), one population arms object and one
``PopulationState`` (the partition's models, contextual arms). Every simulator interaction goes
through ``decider.observe`` (profiles, online segments, models), every request through
``decider.decide`` (segment, routing, business rules, policy) and every answer through
``decider.learn``; an offer the customer ignored is settled by ``decider.expire``, as the
attribution timer would (here at once: the benchmark measures learning, not the timer).

A ``no_action`` decision (every offer removed by a business rule, e.g. "not the same offer
twice in 24 h") shows nothing: ``act`` returns ``None`` and the benchmark counts reward 0.

``suite`` swaps the partition's River models for lighter ones (``LIGHT_SUITE``): decisions read
the profile, the online segments and the arms, never the engagement / churn / capacity /
propensity scores, so they are the same, several times faster (a test checks this).

>>> from stream_app.simulator import Population, Simulation, default_engine_config
>>> sim = Simulation(Population(seed=4, n_customers=30), days=1.0)
>>> agent = EngineAgent(default_engine_config(), seed=1)
>>> req = next(iter(sim.requests()))
>>> offer, propensity = agent.act(req, sim.candidates(req), None)
>>> offer in sim.candidates(req) and 0.0 < propensity <= 1.0
True
>>> agent.learn_outcome(req, offer, None)   # ignored: expired at once, arms learn a 0
>>> float(agent.pooled.evidence(agent.decider.config.offer_keys, req["ts"], None)[1].sum())
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from stream_app.core.arms import Arms
from stream_app.core.catalogue import EngineConfig, parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, Evidence, Learned, segment_of
from stream_app.core.feedback import PendingDecision
from stream_app.core.population import PopulationState
from stream_app.models.suite import ModelSuite, SuiteConfig

Request = Mapping[str, Any]
# The cheapest candidates: one linear model per score, the running mean for capacity.
LIGHT_SUITE = SuiteConfig(classifiers=("logreg",), propensity_classifiers=("logreg",),
                          regressors=("mean",))


class EngineAgent:
    """``Decider`` + dict-backed state of one partition, behind the benchmark's agent protocol."""

    def __init__(self, config: EngineConfig | Mapping[str, Any], seed: int = 0,
                 name: str = "engine", suite: SuiteConfig | None = None) -> None:
        cfg = config if isinstance(config, EngineConfig) else parse_config(config)
        self.decider = Decider(cfg, seed)
        self.name = name
        self.population = PopulationState(
            ModelSuite(replace(suite, seed=seed)) if suite is not None else None, seed=seed)
        self.customers: dict[str, CustomerState] = {}
        self.arms: dict[str, Arms] = {}  # customer id -> arms
        self.segments: dict[str, Arms] = {}  # segment -> arms
        self.pooled = Arms.empty()  # the partition's population arms
        self._pending: dict[str, PendingDecision] = {}  # request id -> open decision
        self.decisions = 0
        self.no_actions = 0

    # -- state, keyed as the worker keys its tables --------------------------------------------
    def _customer(self, cid: str) -> CustomerState:
        return self.customers.get(cid) or CustomerState.empty()

    def _evidence(self, cid: str, segment: str) -> Evidence:
        return Evidence(self.arms.get(cid, Arms.empty()),
                        self.segments.get(segment, Arms.empty()), self.pooled)

    def _store(self, learned: Learned) -> None:
        p = learned.pending
        self.arms[p.customer_id] = learned.evidence.customer
        self.segments[p.segment] = learned.evidence.segment
        self.pooled = learned.evidence.population
        self.customers[p.customer_id] = learned.customer

    # -- the agent protocol --------------------------------------------------------------------
    def observe(self, interaction: Mapping[str, Any]) -> None:
        cid = interaction["customer_id"]
        observed = self.decider.observe(self._customer(cid), interaction, self.population)
        self.customers[cid] = observed.customer

    def act(self, request: Request, candidates: tuple[str, ...], rng: Any
            ) -> tuple[str | None, float]:
        """The engine's offer and its propensity, or ``(None, 1.0)`` for ``no_action``."""
        cid = request["customer_id"]
        customer = self._customer(cid)
        segment = segment_of(request, customer.profile.segment)
        decided = self.decider.decide(request, customer, self._evidence(cid, segment),
                                      self.population)
        self.decisions += 1
        if decided.pending is None:
            self.no_actions += 1
            return None, 1.0
        self._pending[request["request_id"]] = decided.pending
        self.customers[cid] = decided.customer
        return decided.decision["offer_id"], float(decided.decision["propensity"])

    def learn_outcome(self, request: Request, offer_id: str | None,
                      outcome: Mapping[str, Any] | None) -> None:
        """Join the simulator's answer (``None``: ignored) to the engine's pending decision."""
        pending = self._pending.pop(request["request_id"], None)
        if pending is None:
            return
        cid = pending.customer_id
        evidence, customer = self._evidence(cid, pending.segment), self._customer(cid)
        if outcome is None:
            learned = self.decider.expire(evidence, customer, pending, self.population)
        else:
            outcome = {**outcome, "decision_id": pending.decision_id}
            learned = self.decider.learn(evidence, customer, pending, outcome, self.population)
        self._store(learned)

    def learn(self, request: Request, offer_id: str | None, reward: float) -> None:
        """Reward-only feedback (for callers without outcomes): 1 accepted, 0 ignored."""
        outcome = None if reward <= 0 else {
            "outcome_id": f"oc-{request['request_id']}", "customer_id": request["customer_id"],
            "ts": int(request["ts"]), "type": "accepted", "value": 0.0}
        self.learn_outcome(request, offer_id, outcome)

    @property
    def no_action_rate(self) -> float:
        return self.no_actions / self.decisions if self.decisions else 0.0


__all__ = ["LIGHT_SUITE", "EngineAgent"]
