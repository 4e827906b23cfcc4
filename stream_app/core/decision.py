"""Answering a decision request, learning from its outcome, observing behaviour: the engine's
state transitions, for one configuration version.

Each is a pure function of (state, message) -> (state, outputs). What the fleet learns from an
event (``fleet/``: River models, pooled and contextual arms, experiment statistics, shadow
estimators) is handed to the partition's ``FleetView`` as a lesson (``view.teach``): the
fleet's learner learns it, the view counts the evidence at once. The partition session loads
state, calls these, stores state and returns what to send; the benchmarks and the tests call
them without Kafka.

A decision, in order:

1. **segment**: ``context.segment`` when the caller names one, else the customer's online
   segment (``ModelSuite`` clustering of the profile), else ``"all"``;
2. **experiments**: sticky hash assignment of the customer to an arm of every experiment of the
   use case; a treatment may set the policy (``policy``/``params``), one offer (``offer``), a
   framing (``framing``), a message variant (``message``, passed through), or be the control
   group (``control``: ``no_action`` or ``random``); the customer is enrolled at their first
   exposure and measured as a customer (``experiments/enrolment.py``);
3. **routing** (unless a treatment set the policy): the router picks the policy;
4. **candidates**: the use case's offers on this channel, the request's ``candidates``, then the
   **business rules** (``stream_app.rules``: consent, eligibility, fatigue caps across channels,
   cool-down, same offer within 24 h, quiet hours in the customer's time zone, validity,
   budgets), every rule failing closed; what they removed, and why, is in ``rule_reasons``
   (an offer's budget is kept fleet-wide: ``fleet/budgets.py``; an offer shown is counted
   against it, ``fleet.budget.reserve``, until it is answered or expires);
5. **choice**: the policy over the eligible offers' hierarchical Beta posteriors (customer <-
   segment <- population; with ``prior.propensity_strength`` the customer level also starts
   from the fleet's per-offer propensity models), with the profile's feature vector for the
   contextual policies; for a while after a drift alarm of the use case (the fleet learner's,
   ``models/reward_drift.py``) its pooled evidence forgets faster (``prior.drift_half_life_s``),
   so its arms are explored again; ``propensity`` is the probability it had of choosing that
   offer;
6. **shadow**: each challenger of the use case is asked how likely *it* was to choose the same
   offer (Monte Carlo over ``SHADOW_DRAWS`` draws); outcomes feed their off-policy estimates.

No eligible offer gives ``no_action`` with the reasons, never silence.

Randomness comes from a generator seeded by (engine seed, request id), so replaying the same
request against the same state gives the same decision, at any speed and in any process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from stream_app.core.arms import Arms
from stream_app.core.catalogue import CHANNELS, FRAMINGS, ConfigError, EngineConfig, UseCase
from stream_app.core.context_features import ContextFeatures
from stream_app.core.customer import OPTED_OUT, CustomerState
from stream_app.core.feedback import Feedback, PendingDecision, ignored, resolve
from stream_app.core.population import PopulationState
from stream_app.fleet.lessons import encode_profile
from stream_app.fleet.view import FleetView
from stream_app.core.priors import HierarchicalPrior
from stream_app.core.rounding import rounded
from stream_app.core.router import Router
from stream_app.experiments import Assignment, Experiment, assign, parse_experiments
from stream_app.models import customer_scores, mark_emitted, should_emit
from stream_app.models.reward_drift import pooled_half_life
from stream_app.policies.base import PolicyInput
from stream_app.policies.loss_aversion import scarcity_affinity
from stream_app.policies.registry import CONTEXTUAL_POLICY_NAMES, make_policy
from stream_app.profile import Profile, apply_outcome, lifecycle_stage, record_contact
from stream_app.rules import OfferArrays, RequestContext, evaluate
from stream_app.rules import OUTBOUND_CHANNELS, parse_use_case_rules

MODEL_VERSION = "beta-arms-v3"
DEFAULT_SEGMENT = "all"
SHADOW_DRAWS = 32  # draws of a challenger per request to estimate its probability of the offer
SCORES_MIN_INTERVAL_S = 3600.0  # customer-scores: at most once per customer per hour


def stable_seed(seed: int, request_id: str) -> int:
    """63-bit seed from the engine seed and the request id (same request -> same draw)."""
    digest = hashlib.blake2b(f"{seed}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def decision_id_for(request_id: str) -> str:
    return "dc-" + hashlib.blake2b(request_id.encode(), digest_size=10).hexdigest()


def segment_of(request: Mapping[str, Any], profile_segment: int = -1) -> str:
    """The request's segment: ``context.segment`` when the caller knows it, else the customer's
    online segment, else one segment for everyone."""
    seg = (request.get("context") or {}).get("segment")
    if seg not in (None, ""):
        return str(seg)
    return str(profile_segment) if profile_segment >= 0 else DEFAULT_SEGMENT


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a decision reads: the customer's arms, the segment's and the population's (the
    pooled ones from the partition's ``FleetView``)."""

    customer: Arms
    segment: Arms
    population: Arms

    @classmethod
    def empty(cls) -> Evidence:
        return cls(Arms.empty(), Arms.empty(), Arms.empty())


@dataclass(frozen=True, slots=True)
class Decided:
    decision: dict[str, Any]  # the `decisions` message (latency is stamped by the caller)
    pending: PendingDecision | None  # what the outcome will be joined to; None for no_action
    customer: CustomerState  # with the contact recorded when an offer was made


@dataclass(frozen=True, slots=True)
class Learned:
    evidence: Evidence  # unchanged when the feedback carries no reward (late outcome)
    customer: CustomerState
    pending: PendingDecision  # settled
    records: tuple[dict[str, Any], ...]  # `delta-metrics` records (outcome, drift)

    def settled_customer(self) -> CustomerState:
        """The customer after it: their arms as learned, the decision kept, settled."""
        return self.customer.replace(arms=self.evidence.customer).with_decision(self.pending)


@dataclass(frozen=True, slots=True)
class Observed:
    customer: CustomerState
    records: tuple[dict[str, Any], ...]  # `delta-metrics` drift records
    scores: dict[str, Any] | None  # a `customer-scores` record when one is due
    duplicate: bool = False  # the interaction was applied already: nothing changed


@dataclass(frozen=True, slots=True)
class Challenger:
    label: str  # the name its estimates are published under
    policy: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Promotion:
    """A use case's rule for promoting a challenger (``promotion`` in the use case's config)."""

    auto: bool = False
    after_s: float = 3600.0
    min_n: int = 500


class Decider:
    """The decision core for one configuration version (raises ConfigError if it cannot run it)."""

    def __init__(self, config: EngineConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.router = Router.from_config(config)
        self.rules = parse_use_case_rules(config)
        # use cases whose conditions read the lifecycle stage (the only costly profile fact)
        self._reads_stage = {uc: any(c.field == "profile.lifecycle_stage" for c in (
            *rs.eligibility, *(c for conds in rs.offer_eligibility.values() for c in conds)))
            for uc, rs in self.rules.items()}
        self.experiments: dict[str, Experiment] = parse_experiments(config.raw.get("experiments"))
        self._offers = OfferArrays.of(config.offers)
        # per (use case, channel): the offers it may show, their rule columns and why the others
        # are out; built once per configuration so a request pays nothing for channel availability
        self._candidates: dict[tuple[str, str], tuple[np.ndarray, OfferArrays, dict]] = {}
        self._offer_ids: dict[str, frozenset[str]] = {}
        self._priors: dict[str, HierarchicalPrior] = {}
        self._context: dict[str, ContextFeatures] = {}  # what contextual policies see, per use case
        self._policies: dict[tuple, Any] = {}
        self.challengers: dict[str, tuple[Challenger, ...]] = {}
        self.promotion: dict[str, Promotion] = {}
        raw_use_cases = {d.get("id"): d for d in config.raw.get("use_cases", ())
                         if isinstance(d, Mapping)}
        for uc in config.use_cases.values():
            ids = uc.offers if uc.offers is not None else config.offer_ids
            idx = np.array([config.index_of(o) for o in ids], np.intp)
            self._offer_ids[uc.id] = frozenset(ids)
            self._context[uc.id] = ContextFeatures.of(config.offers[i].category for i in idx)
            for channel in CHANNELS:
                shown = np.array([channel in config.offers[i].channels for i in idx], bool)
                reasons = {config.offer_ids[i]: [f"channel: not offered on {channel}"]
                           for i in idx[~shown]}
                self._candidates[uc.id, channel] = (idx[shown], self._offers.take(idx[shown]),
                                                    reasons)
            try:
                self._priors[uc.id] = HierarchicalPrior.from_params(uc.prior)
                self._policy(uc.policy, uc.params)
                self.challengers[uc.id] = tuple(self._challenger(c) for c in uc.challengers)
                self.promotion[uc.id] = _promotion(raw_use_cases.get(uc.id, {}).get("promotion"))
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"use case {uc.id!r}: {exc}") from None
        for rule in self.router.rules:
            self._policy(rule.policy, rule.params)
        for exp in self.experiments.values():
            if exp.use_case is not None and exp.use_case not in config.use_cases:
                raise ConfigError(f"experiment {exp.id!r}: unknown use case {exp.use_case!r}")
            for arm in exp.arms:
                self._check_treatment(exp, arm.name, arm.treatment)

    # -- configuration ----------------------------------------------------------------------
    def _policy(self, name: str, params: Mapping[str, Any]) -> Any:
        key = (name, tuple(sorted(params.items())))
        policy = self._policies.get(key)
        if policy is None:
            try:
                policy = self._policies[key] = make_policy(name, params)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return policy

    def _challenger(self, doc: Any) -> Challenger:
        if isinstance(doc, str):
            doc = {"policy": doc}
        if not isinstance(doc, Mapping) or not isinstance(doc.get("policy"), str):
            raise ConfigError(f"a challenger is a policy name or {{'policy': ..., 'params': ...}}:"
                              f" {doc!r}")
        params = dict(doc.get("params") or {})
        self._policy(doc["policy"], params)
        return Challenger(str(doc.get("name") or doc["policy"]), doc["policy"], params)

    def _check_treatment(self, exp: Experiment, arm: str, treatment: Mapping[str, Any]) -> None:
        where = f"experiment {exp.id!r} arm {arm!r}"
        if "policy" in treatment:
            self._policy(str(treatment["policy"]), dict(treatment.get("params") or {}))
        if "offer" in treatment and treatment["offer"] not in self.config.offer_ids:
            raise ConfigError(f"{where}: unknown offer {treatment['offer']!r}")
        if "framing" in treatment and treatment["framing"] not in FRAMINGS:
            raise ConfigError(f"{where}: framing must be one of {FRAMINGS}")

    # -- deciding ---------------------------------------------------------------------------
    def _candidate_indices(self, uc: UseCase, request: Mapping[str, Any]
                           ) -> tuple[np.ndarray, OfferArrays, dict]:
        idx, arrays, channel_reasons = self._candidates[uc.id, request["channel"]]
        asked = request.get("candidates")
        if not asked:
            return idx, arrays, {oid: list(r) for oid, r in channel_reasons.items()}
        wanted = set(asked)
        reasons = {oid: list(r) for oid, r in channel_reasons.items() if oid in wanted}
        for oid in asked:
            if oid not in self._offer_ids[uc.id]:
                reasons.setdefault(oid, []).append("not an offer of this use case")
        keep = np.fromiter((self.config.offer_ids[i] in wanted for i in idx), bool, len(idx))
        return idx[keep], arrays.take(np.flatnonzero(keep)), reasons

    def facts(self, customer: CustomerState, segment: str, now_ms: int,
              stage: bool = True) -> dict[str, Any]:
        """What rules may read as ``profile.*``: segment, lifecycle stage (only computed when
        ``stage``: it decays the whole profile), events, opt-out (an opt-out withdraws consent on
        every outbound channel, whatever the request says)."""
        p = customer.profile
        facts: dict[str, Any] = {"segment": segment, "n_events": p.n_events,
                                 "opted_out": customer.opted_out}
        if stage:
            facts["lifecycle_stage"] = lifecycle_stage(p, now_ms)
        if customer.opted_out:
            facts.update({f"consent_{ch}": False for ch in OUTBOUND_CHANNELS})
        return facts

    def with_segment(self, customer: CustomerState, now_ms: int, fleet: FleetView
                     ) -> CustomerState:
        """The customer with a segment: one is assigned at every interaction by the fleet's
        segmenter of the moment; a customer whose interactions all came before the segmenter
        had learned is assigned one now (and keeps it when the decision is stored)."""
        profile = customer.profile
        if profile.segment >= 0 or not profile.n_events or \
                not fleet.suite.segmenter.initialised:
            return customer
        segment = fleet.suite.segment_of(profile, now_ms)
        return customer.replace(profile=profile.replace(segment=segment)) if segment >= 0 \
            else customer

    def decide(self, request: Mapping[str, Any], customer: CustomerState, evidence: Evidence,
               fleet: FleetView) -> Decided:
        """Answer a (schema-valid) decision request given the customer's state."""
        cfg = self.config
        request_id, cid = request["request_id"], request["customer_id"]
        seed = stable_seed(self.seed, request_id)
        now = int(request["ts"])
        segment = segment_of(request, customer.profile.segment)
        base = {
            "schema_version": 1, "decision_id": decision_id_for(request_id),
            "request_id": request_id, "customer_id": cid, "ts": request["ts"],
            "use_case": request["use_case"], "channel": request["channel"],
            "config_version": cfg.version,
            "model_version": f"{MODEL_VERSION}+{fleet.model_version}", "seed": seed,
            "segment": segment, "experiment": None, "latency_ms": 0.0,
        }
        try:
            uc = cfg.use_case(request["use_case"])
        except ConfigError as exc:
            return Decided(_no_action(base, "none", str(exc), {"*": [str(exc)]}), None, customer)

        assignments = [assign(e, cid) for e in self.experiments.values() if e.applies_to(uc.id)]
        treatment: dict[str, Any] = {}
        customer = self._enrol(customer, assignments, uc, now, fleet)
        for a in assignments:
            for k, v in a.treatment.items():
                treatment.setdefault(k, v)
        if assignments:
            base["experiment"] = _experiment_field(assignments)
        if "policy" in treatment:
            a = next(a for a in assignments if "policy" in a.treatment)
            policy_name, params = str(treatment["policy"]), dict(treatment.get("params") or {})
            because = f"experiment {a.experiment_id}: arm {a.arm}"
        else:
            route = self.router.route(uc.id, segment=segment, channel=request["channel"],
                                      objective=(request.get("context") or {}).get("objective"))
            policy_name, params, because = route.policy, route.params, route.because
        if treatment.get("control") == "no_action":
            a = next(a for a in assignments if a.control)
            reason = f"experiment {a.experiment_id}: control group (no action)"
            return Decided(_no_action(base, "control", reason, {"*": [reason]}), None, customer)

        idx, arrays, reasons = self._candidate_indices(uc, request)
        keep = None  # the experiment arm's restriction of the candidates, if any
        if "offer" in treatment or "framing" in treatment:
            keep = np.ones(len(idx), bool)
            if "offer" in treatment:
                keep &= np.array([cfg.offer_ids[i] == treatment["offer"] for i in idx], bool)
            if "framing" in treatment:
                keep &= np.array([cfg.offers[i].framing == treatment["framing"] for i in idx],
                                 bool)
            for j in np.flatnonzero(~keep):
                reasons.setdefault(cfg.offer_ids[idx[j]], []).append(
                    f"experiment: not in arm {base['experiment']['arm']}")
        history = customer.history
        rules = self.rules[uc.id]
        if history.capacity != rules.history_capacity:
            history = history.resized(rules.history_capacity)
        facts = self.facts(customer, segment, now, stage=self._reads_stage[uc.id])
        eligibility = evaluate(rules, RequestContext.of(request, facts), arrays, history, now,
                               fleet.budget.gate(cfg, now) if cfg.budgets else None)
        for oid, why in eligibility.reasons.items():
            reasons.setdefault(oid, []).extend(why)
        eligible = eligibility.eligible if keep is None else keep & eligibility.eligible
        idx = idx[eligible]
        if len(idx) == 0:
            return Decided(_no_action(base, policy_name, because, reasons), None, customer)

        keys = cfg.offer_keys[idx]
        hl = uc.half_life_s
        all_own = evidence.customer.evidence(cfg.offer_keys, now, hl)  # whole catalogue, read once
        # a customer with no outcome yet has no evidence of their own (all_own is zeros): their
        # pulls and scarcity affinity are 0, as the sums over it would give
        has_own = len(evidence.customer) > 0
        own = (all_own[0][idx], all_own[1][idx])
        prior = self._priors[uc.id]
        hl_pooled = self._pooled_half_life(uc.id, hl, now, fleet)  # shorter after a drift alarm
        modelled = None
        if prior.propensity_strength > 0:  # the fleet's per-offer propensity models, cold start
            modelled = fleet.suite.offer_propensities(
                customer.profile, {"channel": request["channel"]},
                [(cfg.offer_ids[i], bool(cfg.offer_urgent[i])) for i in idx.tolist()], now)
        alpha, beta = prior.posterior(
            own, evidence.segment.evidence(keys, now, hl_pooled),
            evidence.population.evidence(keys, now, hl_pooled), modelled)
        challengers = () if treatment else self.challengers[uc.id]
        contextual = policy_name in CONTEXTUAL_POLICY_NAMES or any(
            c.policy in CONTEXTUAL_POLICY_NAMES for c in challengers)
        features = linear = None
        if contextual:
            layout = self._context[uc.id]
            features = layout.vector(customer.profile, request.get("context"), request["channel"],
                                     now)
            linear = fleet.linear_for(uc.id, layout.dim, half_life_s=hl_pooled)
        inp = PolicyInput(
            alpha=alpha, beta=beta, values=cfg.offer_values[idx], urgent=cfg.offer_urgent[idx],
            features=features, pulls=float(own[0].sum() + own[1].sum()) if has_own else 0.0,
            scarcity_affinity=scarcity_affinity(*all_own, cfg.offer_urgent) if has_own else 0.0,
            offer_keys=keys, linear=linear, now_ms=now,
        )
        rng = np.random.default_rng(seed)
        if treatment.get("control") == "random":
            policy_name, because = "random", f"{because}; control group (random offer)"
            index, propensity, se, explore = int(rng.integers(len(idx))), 1.0 / len(idx), 0.0, True
            scores = np.zeros(len(idx))
        else:
            choice = self._policy(policy_name, params).choose(inp, rng)
            index, propensity, se = choice.index, float(choice.propensity), choice.propensity_se
            scores, explore = choice.scores, bool(choice.explore)
        chosen = int(idx[index])
        mean = alpha / (alpha + beta)
        shadow = {c.label: self._probability(c, inp, index, seed) for c in challengers}
        order = np.argsort(-scores, kind="stable")  # the ranking, best first
        k = len(order)  # its scores and expected values, rounded in one pass
        figures = rounded(np.concatenate((np.asarray(scores, float)[order],
                                          (mean * cfg.offer_values[idx])[order])))
        decision = {
            **base, "action": "offer", "offer_id": cfg.offer_ids[chosen],
            "ranked": [{"offer_id": cfg.offer_ids[i], "score": score, "expected_value": expected}
                       for i, score, expected in zip(idx[order].tolist(), figures[:k],
                                                     figures[k:])],
            "propensity": propensity, "propensity_se": round(se, 6),
            "predicted": float(mean[index]), "policy": policy_name, "routed_because": because,
            "explore": explore, "rule_reasons": reasons, "shadow": shadow or None,
        }
        if "message" in treatment:
            decision["message"] = treatment["message"]
        pending = PendingDecision.from_decision(
            decision, segment=segment, attribution_window_s=uc.attribution_window_s,
            best_predicted=float(mean.max()),
            experiments=[[a.experiment_id, a.arm] for a in assignments], shadow=shadow,
            features=features)
        contacted = customer.replace(
            profile=record_contact(customer.profile, request["channel"], now),
            history=history.record(now, int(cfg.offer_keys[chosen]), request["channel"]))
        fleet.budget.reserve(cfg.offer_ids[chosen], now)  # open: counted against its budget
        return Decided(decision, pending, contacted)

    def _pooled_half_life(self, use_case: str, half_life_s: float | None, now_ms: int,
                          fleet: FleetView) -> float | None:
        """The half-life of the use case's pooled evidence now: its own, shorter for a while
        after a drift alarm of the fleet's learner (``models/reward_drift.py``)."""
        prior = self._priors.get(use_case)
        if prior is None or prior.drift_half_life_s is None:
            return half_life_s
        return pooled_half_life(half_life_s, prior.drift_half_life_s, prior.drift_window_s,
                                fleet.suite.reward_drift.alarm_ms(use_case), now_ms)

    def _probability(self, challenger: Challenger, inp: PolicyInput, index: int, seed: int) -> float:
        """How likely the challenger was to choose candidate ``index`` (Monte Carlo)."""
        policy = self._sampler(challenger)
        rng = np.random.default_rng(stable_seed(seed, challenger.label))
        first = policy.choose(inp, rng)
        if first.propensity_se == 0.0 and first.propensity == 1.0:  # deterministic, no ties
            return float(first.index == index)
        hits = int(first.index == index) + sum(
            policy.choose(inp, rng).index == index for _ in range(SHADOW_DRAWS - 1))
        return hits / SHADOW_DRAWS

    def _sampler(self, challenger: Challenger) -> Any:
        """The challenger's policy, without its own propensity estimate where it has one (each
        draw then costs one sample instead of hundreds: only the choice is needed here)."""
        try:
            return self._policy(challenger.policy, {**challenger.params, "propensity_draws": 1})
        except ConfigError:
            return self._policy(challenger.policy, challenger.params)

    def _enrol(self, customer: CustomerState, assignments: list[Assignment], uc: UseCase,
               now_ms: int, fleet: FleetView) -> CustomerState:
        """Enrol the customer in the experiments that expose them for the first time (an
        exposure of their arm, counted once per customer)."""
        enrolments = customer.enrolments
        for a in assignments:
            if enrolments.get(a.experiment_id) is None:
                exp = self.experiments[a.experiment_id]
                window_s = exp.window_s or uc.attribution_window_s
                enrolments = enrolments.enrolled(a.experiment_id, a.arm, now_ms,
                                                 int(window_s * 1000))
                fleet.teach({"k": "x", "exp": a.experiment_id, "arm": a.arm})
        return customer if enrolments is customer.enrolments else \
            customer.replace(enrolments=enrolments)

    def settle_enrolment(self, customer: CustomerState, experiment: str, fleet: FleetView
                         ) -> CustomerState:
        """A customer's measurement window in ``experiment`` closed: one outcome for their arm
        (converted or not), counted once."""
        e = customer.enrolments.get(experiment)
        if e is None or e.settled:
            return customer
        exp = self.experiments.get(experiment)
        if exp is not None and e.arm in exp.arm_names:
            fleet.teach({"k": "w", "exp": experiment, "arm": e.arm, "r": float(e.converted),
                         "v": e.value})
        return customer.replace(enrolments=customer.enrolments.settled(experiment))

    def silence(self, customer: CustomerState, now_ms: int, fleet: FleetView) -> CustomerState:
        """A customer's silence timer fired at ``now_ms``: when they have not interacted since
        it was set, teach the fleet their churn labels (a silence lesson, once) and mark them
        labelled; otherwise nothing."""
        suite, before = fleet.suite, customer.profile
        due = suite.silence_due_ms(before)
        if due is None or due > now_ms:  # active since, or labelled already
            return customer
        fleet.teach({"k": "s", "p": encode_profile(before), "ts": due})
        return customer.replace(profile=suite.profile_after_silence(before, due))

    def _converted(self, customer: CustomerState, experiments: Any, now_ms: int,
                   value: float) -> CustomerState:
        enrolments = customer.enrolments
        for exp_id in experiments:
            enrolments = enrolments.converted(exp_id, now_ms, value)
        return customer if enrolments is customer.enrolments else \
            customer.replace(enrolments=enrolments)

    # -- learning ---------------------------------------------------------------------------
    def learn(self, evidence: Evidence, customer: CustomerState, pending: PendingDecision,
              outcome: Mapping[str, Any], fleet: FleetView) -> Learned:
        """Join an outcome to its pending decision: update the customer's arms and profile once,
        measure the delta, and teach the fleet (pooled and contextual arms, models, the
        decision's experiments and challengers)."""
        value = float(outcome.get("value") or 0.0)
        return self._apply(evidence, customer, resolve(pending, outcome), int(outcome["ts"]),
                           value, fleet)

    def expire(self, evidence: Evidence, customer: CustomerState, pending: PendingDecision,
               fleet: FleetView) -> Learned:
        """The attribution window closed without an outcome: the offer was ignored (reward 0)."""
        return self._apply(evidence, customer, ignored(pending), pending.expires_at_ms, 0.0,
                           fleet)

    def lapse(self, customer: CustomerState, pending: PendingDecision,
              fleet: FleetView) -> CustomerState:
        """The customer's side of ``expire`` alone (their arms and profile, the decision settled
        as ignored), teaching nothing: a decision whose expiry was taught and published
        already, applied to a stored state that does not hold it yet."""
        return self._apply(Evidence(customer.arms, None, None), customer, ignored(pending),
                           pending.expires_at_ms, 0.0, fleet, teach=False).settled_customer()

    def _apply(self, evidence: Evidence, customer: CustomerState, fb: Feedback, now_ms: int,
               value: float, fleet: FleetView, teach: bool = True) -> Learned:
        records = list(fb.records)
        if fb.reward is not None:
            p, reward = fb.pending, fb.reward
            uc = self.config.use_cases.get(p.use_case)
            hl = uc.half_life_s if uc is not None else None
            evidence = Evidence(evidence.customer.updated(p.offer_key, reward, now_ms, hl),
                                evidence.segment, evidence.population)
            urgent = p.offer_id in self.config.offer_ids and \
                bool(self.config.offer_urgent[self.config.index_of(p.offer_id)])
            before = customer.profile
            if teach:
                self._teach(fleet, p, before, urgent, reward, now_ms, value, hl)
            customer = customer.replace(profile=apply_outcome(
                before, p.offer_key, urgent, float(reward > 0), now_ms,
                fleet.suite.profile_config))
            if reward > 0 and p.experiments:  # a response: the goal event of its experiments
                customer = self._converted(customer, (e for e, _ in p.experiments), now_ms,
                                           value)
        return Learned(evidence, customer, fb.pending, tuple(records))

    def _teach(self, fleet: FleetView, p: PendingDecision, before: Profile, urgent: bool,
               reward: float, now_ms: int, value: float, hl: float | None) -> None:
        """An outcome's lesson for the fleet (pooled and contextual arms, models, experiments,
        challengers, budgets)."""
        fleet.teach({
            "k": "o", "p": encode_profile(before), "offer": p.offer_id, "key": p.offer_key,
            "urgent": urgent, "r": reward, "ts": now_ms, "ch": p.channel,
            "at": p.decided_at_ms, "v": value, "seg": p.segment, "uc": p.use_case,
            "hl": self._pooled_half_life(p.use_case, hl, now_ms, fleet),
            "x": None if p.features is None else [float(v) for v in p.features],
            "pol": p.policy, "prop": p.propensity, "sh": p.shadow or None})

    # -- observing behaviour ----------------------------------------------------------------
    def observe(self, customer: CustomerState, interaction: Mapping[str, Any],
                fleet: FleetView) -> Observed:
        """An interaction: update the profile (O(1) in the number of customers) and teach the
        fleet's models, count guardrail events (an interaction type named by an experiment guardrail, e.g.
        ``opt_out`` or ``complaint``) and say whether the customer's scores are due. An
        interaction whose ``event_id`` is among the customer's last ones (a redelivery, a
        producer retry) changes nothing: ``duplicate``."""
        event_id = interaction.get("event_id")
        if event_id is not None and customer.recent_events.seen_before(event_id):
            return Observed(customer, (), None, duplicate=True)
        suite = fleet.suite
        before = customer.profile
        profile = suite.profile_after(before, interaction)
        kind, ts, cid = interaction["type"], int(interaction["ts"]), interaction["customer_id"]
        fleet.teach({"k": "i", "p": encode_profile(before), "s": profile.segment,
                     "e": {k: v for k, v in interaction.items()
                           if k not in ("customer_id", "event_id", "schema_version")}})
        flags = customer.flags | (OPTED_OUT if kind == "opt_out" else 0)
        for exp in self.experiments.values():
            if exp.enabled and any(g.metric == kind for g in exp.guardrails):
                fleet.teach({"k": "g", "exp": exp.id, "arm": assign(exp, cid).arm, "m": kind})
        if customer.enrolments:
            goals = [e.experiment for e in customer.enrolments.open()
                     if (x := self.experiments.get(e.experiment)) is not None and x.is_goal(
                         interaction)]
            if goals:
                amount = interaction.get("amount")
                customer = self._converted(customer, goals, ts, float(amount or 0.0))
        scores = None
        due = profile.emitted_dominant < 0 or \
            (ts - profile.last_emit_ms) >= SCORES_MIN_INTERVAL_S * 1000
        if due:
            candidate = customer_scores(profile, suite, ts, cid)
            if should_emit(profile, candidate, ts, min_interval_s=SCORES_MIN_INTERVAL_S):
                scores = {"schema_version": 1, **candidate}
                profile = mark_emitted(profile, candidate, ts)
        recent = customer.recent_events if event_id is None else customer.remembered(event_id)
        return Observed(customer.replace(profile=profile, flags=flags, recent_events=recent),
                        (), scores)

    # -- in-stream statistics ---------------------------------------------------------------
    def snapshots(self, population: PopulationState, ts: int
                  ) -> tuple[list[dict[str, Any]], list[str]]:
        """``delta-metrics`` records of the fleet's experiments, shadow estimators and segments
        at event time ``ts`` (the learner's), and the keys (``use case/challenger``) of challengers
        whose automatic promotion became due."""
        out: list[dict[str, Any]] = []
        due: list[str] = []
        for exp in self.experiments.values():
            stats = population.stats_for(exp)
            if stats.table[:, 0].sum() > 0:
                out.append({"schema_version": 1, **stats.snapshot(ts)})
        for key, est in population.shadow.items():
            use_case, _, label = key.partition("/")
            rule = self.promotion.get(use_case)
            if est.n == 0 or rule is None or label not in {c.label for c in
                                                           self.challengers.get(use_case, ())}:
                continue
            watch = population.watch_for(key, rule.after_s)
            watch.min_n = rule.min_n
            is_due = watch.observe(est, ts)
            record = {"schema_version": 1, **est.snapshot(ts, use_case),
                      "promotion": {"due": is_due, "auto": rule.auto, "after_s": rule.after_s,
                                    "beating_since_ms": watch.since_ms}}
            out.append(record)
            if is_due and rule.auto and key not in population.promoted:
                population.promoted[key] = ts
                due.append(key)
        for row in population.suite.segment_report(ts):
            if row["size"] or row["shown"]:
                out.append({"schema_version": 1, **row, "segment": str(row["segment"])})
        return out, due

    def promoted_config(self, key: str) -> dict[str, Any]:
        """The engine config with challenger ``key`` (``use case/label``) as the use case's
        policy and the old champion as a challenger: promotion is a config change, audited on
        ``engine-config`` like any other."""
        use_case, _, label = key.partition("/")
        challenger = next(c for c in self.challengers[use_case] if c.label == label)
        raw = dict(self.config.raw)
        use_cases = []
        for doc in raw.get("use_cases", ()):
            doc = dict(doc)
            if doc.get("id") == use_case:
                old = {"policy": doc.get("policy", "thompson"), "params": doc.get("params", {}),
                       "name": f"previous-{doc.get('policy', 'thompson')}"}
                doc["policy"], doc["params"] = challenger.policy, dict(challenger.params)
                doc["challengers"] = [c for c in doc.get("challengers", ())
                                      if (c if isinstance(c, str) else c.get("name") or
                                          c.get("policy")) != label] + [old]
            use_cases.append(doc)
        raw["use_cases"] = use_cases
        raw["version"] = f"{self.config.version}+promoted:{key}"
        return raw


def _promotion(doc: Any) -> Promotion:
    if doc is None:
        return Promotion()
    if not isinstance(doc, Mapping):
        raise ValueError("promotion must be an object {auto, after_s, min_n}")
    auto, after, min_n = doc.get("auto", False), doc.get("after_s", 3600.0), doc.get("min_n", 500)
    if not isinstance(auto, bool):
        raise ValueError("promotion.auto must be true or false")
    if isinstance(after, bool) or not isinstance(after, (int, float)) or after < 0:
        raise ValueError("promotion.after_s must be a number >= 0")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 1:
        raise ValueError("promotion.min_n must be an integer >= 1")
    return Promotion(auto, float(after), min_n)


def _experiment_field(assignments: list[Assignment]) -> dict[str, Any]:
    first = assignments[0].as_dict()
    if len(assignments) > 1:
        first["others"] = [a.as_dict() for a in assignments[1:]]
    return first


def _no_action(base: dict, policy: str, because: str, reasons: dict) -> dict[str, Any]:
    return {
        **base, "action": "no_action", "offer_id": None, "ranked": [], "propensity": 1.0,
        "propensity_se": 0.0, "predicted": 0.0, "policy": policy, "routed_because": because,
        "explore": False, "rule_reasons": reasons, "shadow": None,
    }


__all__ = ["Challenger", "Decided", "Decider", "Evidence", "Learned", "Observed", "Promotion",
           "decision_id_for", "segment_of", "stable_seed"]
