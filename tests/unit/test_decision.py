"""The decision core end to end, without Kafka: rules before the policy, experiments, shadow
challengers, contextual policies, profiles and models, and the records they publish."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from stream_app.core.catalogue import ConfigError, parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, Evidence
from stream_app.core.population import PopulationState
from stream_app.fleet import FleetSnapshot, FleetView
from stream_app.fleet.learner import FleetLearner
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.schemas import Contract

SCHEMAS = Contract.load().schemas
_VALIDATORS = {name: jsonschema.Draft7Validator(schema) for name, schema in SCHEMAS.items()}


def _valid(message: dict, topic: str) -> None:
    _VALIDATORS[topic].validate(message)

T0 = 1_764_000_000_000
HOUR = 3_600_000

OFFERS = [{"id": "cashback", "value": 1.0}, {"id": "travel", "value": 3.0, "framing": "urgency"},
          {"id": "dining", "value": 2.0}]


def _config(**use_case) -> dict:
    return {"version": "t1", "offers": OFFERS,
            "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": 600,
                           **use_case}]}


def _population() -> PopulationState:
    return PopulationState(ModelSuite(SuiteConfig(classifiers=("logreg",), regressors=("mean",))))


def _request(i: int = 0, customer: str = "c-1", ts: int = T0, channel: str = "app", **extra):
    return {"request_id": f"r-{customer}-{i}", "customer_id": customer, "ts": ts,
            "channel": channel, "use_case": "default", **extra}


class World:
    """Dict-backed state, keyed as the worker keys its tables (one partition), and the fleet's
    learner fed at once; the partition reads the learner's models as they are (one process
    owning both sides)."""

    def __init__(self, config: dict, seed: int = 0) -> None:
        self.decider = Decider(parse_config(config), seed=seed)
        self.learner = FleetLearner(lambda: self.decider, population=_population())
        self.population = self.learner.population
        self.view = FleetView("p0", 1, FleetSnapshot(1, {}, None, self.population))
        self.customers: dict[str, CustomerState] = {}
        self.arms: dict[str, Evidence] = {}

    def _teach(self) -> None:
        for record in self.view.records(None):
            _valid(record, "learning")
            self.learner.apply(record)

    def decide(self, request: dict):
        customer = self.customers.get(request["customer_id"], CustomerState.empty())
        evidence = self.arms.get(request["customer_id"], Evidence.empty())
        decided = self.decider.decide(request, customer, evidence, self.view)
        self._teach()
        _valid(decided.decision, "decisions")
        self.customers[request["customer_id"]] = decided.customer
        return decided

    def answer(self, decided, kind: str = "clicked", dt: int = 5_000):
        p = decided.pending
        outcome = {"outcome_id": f"o-{p.decision_id}", "decision_id": p.decision_id,
                   "customer_id": p.customer_id, "ts": p.decided_at_ms + dt, "type": kind}
        learned = self.decider.learn(self.arms.get(p.customer_id, Evidence.empty()),
                                     self.customers[p.customer_id], p, outcome, self.view)
        self._teach()
        for record in learned.records:
            _valid(record, "delta-metrics")
        self.arms[p.customer_id] = learned.evidence
        self.customers[p.customer_id] = learned.customer
        return learned

    def settle(self, customer_id: str, experiment: str) -> None:
        """The customer's measurement window in ``experiment`` closed (the worker's timer)."""
        self.customers[customer_id] = self.decider.settle_enrolment(
            self.customers[customer_id], experiment, self.view)
        self._teach()

    def observe(self, interaction: dict):
        customer = self.customers.get(interaction["customer_id"], CustomerState.empty())
        observed = self.decider.observe(customer, interaction, self.view)
        self._teach()
        self.customers[interaction["customer_id"]] = observed.customer
        return observed


# -- rules ----------------------------------------------------------------------------------

def test_outbound_channel_without_consent_gets_no_action_with_the_reason():
    world = World(_config())
    d = world.decide(_request(channel="sms")).decision
    assert d["action"] == "no_action" and d["offer_id"] is None
    assert all(any(r.startswith("consent: sms consent missing") for r in why)
               for why in d["rule_reasons"].values())
    ok = world.decide(_request(1, channel="sms", context={"consent_sms": True})).decision
    assert ok["action"] == "offer"


def test_an_opt_out_withdraws_consent_whatever_the_request_says():
    world = World(_config())
    world.observe({"event_id": "e1", "customer_id": "c-1", "ts": T0, "type": "opt_out"})
    d = world.decide(_request(channel="email", ts=T0 + 1, context={"consent_email": True})).decision
    assert d["action"] == "no_action"
    assert "consent: email consent withdrawn (consent_email)" in d["rule_reasons"]["cashback"]
    assert world.decide(_request(2, channel="app", ts=T0 + 2)).decision["action"] == "offer"


def test_the_same_offer_is_not_shown_twice_within_24_hours():
    world = World(_config(offers=["cashback", "dining"]))
    first = world.decide(_request(0)).decision
    second = world.decide(_request(1, ts=T0 + HOUR)).decision
    assert second["offer_id"] != first["offer_id"]
    assert second["rule_reasons"][first["offer_id"]] == ["fatigue: same offer within 24h"]
    third = world.decide(_request(2, ts=T0 + 2 * HOUR)).decision
    assert third["action"] == "no_action"  # both shown within the day: never silence
    assert world.decide(_request(3, ts=T0 + 25 * HOUR)).decision["action"] == "offer"


def test_a_global_cap_across_channels_limits_contacts():
    cap = {"fatigue": {"global_cap": {"max": 2, "window_s": 86400}, "same_offer_s": 0}}
    world = World(_config(rules=cap))
    ctx = {"consent_email": True, "consent_sms": True}
    answers = [world.decide(_request(i, ts=T0 + i * 1000, channel=ch, context=ctx)).decision
               for i, ch in enumerate(["email", "sms", "app"])]
    assert [a["action"] for a in answers] == ["offer", "offer", "no_action"]
    assert any("cap" in r for r in answers[2]["rule_reasons"]["cashback"])


def test_a_rule_on_the_lifecycle_stage_reads_the_profile():
    rules = {"eligibility": [{"field": "profile.lifecycle_stage", "op": "==",
                              "value": "purchase"}], "fatigue": {"same_offer_s": 0}}
    world = World(_config(rules=rules))
    assert world.decide(_request(0)).decision["action"] == "no_action"  # no events: orientation
    world.observe({"event_id": "e", "customer_id": "c-1", "ts": T0, "type": "transaction",
                   "amount": 20.0, "category": "groceries"})
    assert world.decide(_request(1, ts=T0 + 1)).decision["action"] == "offer"


def test_bad_rules_are_a_config_error():
    with pytest.raises(ConfigError, match="cooldown_s"):
        Decider(parse_config(_config(rules={"fatigue": {"cooldown_s": -5}})))


# -- experiments ----------------------------------------------------------------------------

def _experiment(**extra) -> dict:
    return {"id": "exp", "use_case": "default", "min_n": 2,
            "arms": [{"name": "ts", "treatment": {}},
                     {"name": "greedy", "treatment": {"policy": "epsilon_greedy",
                                                      "params": {"epsilon": 0.0}}}], **extra}


def test_experiment_arms_are_sticky_and_their_treatment_is_applied():
    world = World({**_config(), "experiments": [_experiment(control={"share": 0.2})]})
    seen: dict[str, set] = {}
    for i in range(300):
        cid = f"c-{i % 60}"
        d = world.decide(_request(i, customer=cid, ts=T0 + i)).decision
        seen.setdefault(cid, set()).add(d["experiment"]["arm"])
        if d["experiment"]["arm"] == "control":
            assert d["action"] == "no_action" and "control group" in d["routed_because"]
        elif d["experiment"]["arm"] == "greedy":
            assert d["policy"] == "epsilon_greedy" and d["routed_because"] == "experiment exp: arm greedy"
        elif d["action"] == "offer":
            assert d["policy"] == "thompson"
    assert all(len(arms) == 1 for arms in seen.values())  # sticky
    stats = world.population.stats_for(world.decider.experiments["exp"])
    # customers are the unit: each is exposed (enrolled) once, in the arm of all its requests
    assert stats.table[:, 0].sum() == 60
    assert stats.table[:, 0].tolist() == [sum(arms == {a} for arms in seen.values())
                                          for a in ("control", "ts", "greedy")]


def test_experiment_statistics_are_published_in_the_stream():
    world = World({**_config(rules={"fatigue": {"same_offer_s": 0}}),
                   "experiments": [_experiment()]})
    for i in range(200):
        decided = world.decide(_request(i, customer=f"c-{i % 50}", ts=T0 + i * 1000))
        if decided.pending is not None:
            world.answer(decided, "clicked" if i % 3 == 0 else "dismissed")
    for c in range(50):  # every customer's window closes: one outcome each
        world.settle(f"c-{c}", "exp")
        world.settle(f"c-{c}", "exp")  # a second time counts nothing
    records, due = world.decider.snapshots(world.population, T0 + 900_000)
    (exp,) = [r for r in records if r["kind"] == "experiment"]
    _valid(exp, "delta-metrics")
    assert exp["experiment_id"] == "exp" and exp["anytime_valid"] and due == []
    assert sum(a["outcomes"] for a in exp["arms"]) == 50
    assert sum(a["exposures"] for a in exp["arms"]) == 50
    # converted: a response inside the window (600 s from the first exposure)
    converted = {c for c in range(50) for i in range(c, 200, 50)
                 if i % 3 == 0 and i - c < 600}
    assert sum(a["responses"] for a in exp["arms"]) == len(converted)
    assert "lift" in exp["arms"][1] and exp["srm"] is not None


def test_guardrail_events_are_counted_from_interactions():
    exp = _experiment(guardrails=[{"metric": "opt_out", "max_rate": 0.01}])
    world = World({**_config(), "experiments": [exp]})
    world.decide(_request(0, customer="c-9"))
    world.observe({"event_id": "e", "customer_id": "c-9", "ts": T0 + 1, "type": "opt_out"})
    stats = world.population.stats_for(world.decider.experiments["exp"])
    assert stats.table[:, -1].sum() == 1


def test_experiment_treatments_are_checked_with_the_config():
    bad = {"id": "x", "arms": [{"name": "a"}, {"name": "b", "treatment": {"offer": "ghost"}}]}
    with pytest.raises(ConfigError, match="unknown offer 'ghost'"):
        Decider(parse_config({**_config(), "experiments": [bad]}))


# -- shadow challengers ---------------------------------------------------------------------

def test_challengers_are_scored_on_every_request_and_judged_off_policy():
    world = World(_config(challengers=["ucb", {"policy": "epsilon_greedy", "name": "eg",
                                                "params": {"epsilon": 0.2}}],
                          rules={"fatigue": {"same_offer_s": 0}},
                          promotion={"auto": True, "after_s": 0, "min_n": 10}))
    rng = np.random.default_rng(0)
    for i in range(400):
        decided = world.decide(_request(i, customer=f"c-{i % 40}", ts=T0 + i * 1000))
        shadow = decided.decision["shadow"]
        assert set(shadow) == {"ucb", "eg"} and all(0 <= q <= 1 for q in shadow.values())
        assert decided.pending.shadow == shadow
        good = decided.decision["offer_id"] == "travel"
        world.answer(decided, "clicked" if rng.random() < (0.6 if good else 0.1) else "dismissed")
    records, due = world.decider.snapshots(world.population, T0 + 500_000)
    shadows = {r["challenger"]["policy"]: r for r in records if r["kind"] == "shadow"}
    assert set(shadows) == {"ucb", "eg"}
    for r in shadows.values():
        _valid(r, "delta-metrics")
        assert r["n"] == 400 and "partition" not in r and r["champion"]["policy"] == "thompson"
        assert r["challenger"]["snips"]["value"] is not None
    assert all(k.startswith("default/") for k in due)


def test_promotion_is_a_config_change_that_swaps_champion_and_challenger():
    world = World(_config(challengers=["ucb"]))
    doc = world.decider.promoted_config("default/ucb")
    uc = doc["use_cases"][0]
    assert uc["policy"] == "ucb" and uc["challengers"][0]["policy"] == "thompson"
    assert doc["version"] == "t1+promoted:default/ucb"
    Decider(parse_config(doc))  # a valid config


# -- contextual policies, profiles and models -----------------------------------------------

def test_contextual_policy_decides_on_profile_features_and_learns_from_outcomes():
    offers = [{**o, "category": c} for o, c in zip(OFFERS, ("cards", "travel", "dining"))]
    world = World({**_config(policy="linear_thompson", half_life_s=3600,
                             rules={"fatigue": {"same_offer_s": 0}}), "offers": offers})
    decided = world.decide(_request(0, context={"page": "travel"}))
    x = decided.pending.features
    names = world.decider._context["default"].names
    assert x is not None and len(x) == len(names)
    assert names[-4:] == ("page_cards", "page_dining", "page_travel", "intercept")
    assert x[-4:] == [0.0, 0.0, 1.0, 1.0]  # the page names the travel category; intercept
    assert x[names.index("ctx_chan_app")] == 1.0
    world.answer(decided)
    arms = world.population.linear["default"]
    assert len(arms) == 1 and arms.half_life_s == 3600
    other = world.decide(_request(1, ts=T0 + 1000, context={"page": "home"}))
    assert other.pending.features[-4:] == [0.0, 0.0, 0.0, 1.0]  # not a category: no page column


def test_interactions_build_the_profile_segment_and_scores():
    world = World(_config())
    scores = []
    n = 140 * 22  # the segmenter starts after 125 customers reached their 10th event
    for i in range(n):
        cid = f"c-{i % 140}"
        kind = "transaction" if (i // 140) % 2 else "login"
        event = {"event_id": f"e{i}", "customer_id": cid, "ts": T0 + i * 60_000, "type": kind,
                 "channel": "app"}
        if kind == "transaction":
            event.update(amount=float(10 + i % 7 + 50 * (i % 3 == 0)),
                         category="groceries" if i % 2 else "travel")
        observed = world.observe(event)
        if observed.scores is not None:
            _valid(observed.scores, "customer-scores")
            scores.append(observed.scores)
    assert {s["customer_id"] for s in scores} == {f"c-{i}" for i in range(140)}
    profile = world.customers["c-1"].profile
    assert profile.n_events == 22 and profile.segment >= 0
    d = world.decide(_request(0, customer="c-1", ts=T0 + n * 60_000)).decision
    assert d["segment"] == str(profile.segment)
    assert d["model_version"].endswith(world.view.model_version)


def test_contextual_state_forgets_with_the_use_case_half_life_and_survives_a_checkpoint():
    world = World(_config(policy="linear_thompson", half_life_s=3600,
                          rules={"fatigue": {"same_offer_s": 0}}))
    for i in range(40):
        decided = world.decide(_request(i, customer=f"c-{i % 4}", ts=T0 + i * 1000))
        world.answer(decided, kind="clicked" if decided.decision["offer_id"] == "dining"
                     else "dismissed")
    arms = world.population.linear["default"]
    x = np.asarray(decided.pending.features)
    keys = np.array(sorted(arms.keys), np.uint32)
    restored = PopulationState.from_chunks(world.population.to_chunks(max_bytes=4096))
    back = restored.linear_for("default", len(x), half_life_s=3600)
    now = T0 + 60_000
    for got, want in zip(back.estimate(keys, x, now), arms.estimate(keys, x, now)):
        np.testing.assert_array_equal(got, want)
    # a day later (24 half-lives) the evidence is gone: every offer is back at the prior
    mean, var = arms.estimate(keys, x, now + 86_400_000)
    assert np.allclose(mean, 0.0, atol=1e-4) and np.allclose(var, x @ x, rtol=1e-4)


def test_population_checkpoint_keeps_what_was_learned():
    world = World(_config(challengers=["ucb"], rules={"fatigue": {"same_offer_s": 0}}))
    for i in range(60):
        world.answer(world.decide(_request(i, customer=f"c-{i % 6}", ts=T0 + i * 1000)))
    restored = PopulationState.from_chunks(world.population.to_chunks(max_bytes=4096))
    assert restored.suite.version == world.population.suite.version
    est = restored.shadow_for("default/ucb", "ucb", "thompson")
    assert est.n == 60
    profile = world.customers["c-1"].profile
    ctx = {"channel": "app"}
    offers = [("cashback", False), ("travel", True)]
    assert np.allclose(restored.suite.propensities(profile, ctx, offers, T0),
                       world.population.suite.propensities(profile, ctx, offers, T0))


def test_a_checkpoint_written_with_zlib_by_an_earlier_version_is_still_restored():
    import zlib

    from stream_app.models import checkpoint

    world = World(_config(rules={"fatigue": {"same_offer_s": 0}}))
    for i in range(20):
        world.answer(world.decide(_request(i, customer=f"c-{i % 4}", ts=T0 + i * 1000)))
    old = zlib.compress(checkpoint.dumps(world.population, kind="partition-state"), 1)
    restored = PopulationState.from_chunks([old[:1000], old[1000:]])
    assert restored.suite.version == world.population.suite.version
    new = b"".join(world.population.to_chunks())
    assert new.startswith(b"\x28\xb5\x2f\xfd") and len(new) < len(
        checkpoint.dumps(world.population, kind="partition-state"))  # zstd, compressed
    for corrupt in (new[:-7], b"\x28\xb5\x2f\xfd" + b"\x00" * 40, old[:-7], b"junk"):
        with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
            PopulationState.from_chunks([corrupt])


# -- interactions are applied once ------------------------------------------------------------

def test_a_redelivered_interaction_changes_neither_the_profile_nor_the_models():
    world = World(_config())
    tx = {"event_id": "tx-1", "customer_id": "c-1", "ts": T0, "type": "transaction",
          "amount": 40.0, "category": "dining"}
    first = world.observe(tx)
    version = world.population.suite.version
    again = world.observe(tx)  # a redelivery: same event id
    assert not first.duplicate and again.duplicate
    assert again.customer is first.customer and again.records == () and again.scores is None
    assert world.population.suite.version == version
    other = world.observe({**tx, "event_id": "tx-2", "ts": T0 + 1})
    assert not other.duplicate and other.customer.profile.n_events == 2
    assert world.population.suite.version != version


def test_the_interaction_window_is_bounded_and_kept_through_decisions_and_outcomes():
    world = World(_config())
    for i in range(12):  # more than the window (8): the oldest ids fall out
        world.observe({"event_id": f"e{i}", "customer_id": "c-1", "ts": T0 + i, "type": "login"})
    answered = world.answer(world.decide(_request(0, ts=T0 + 100)))
    assert answered.customer.recent_events.seen_before("e11")
    assert world.observe({"event_id": "e11", "customer_id": "c-1", "ts": T0 + 11,
                          "type": "login"}).duplicate
    assert not world.observe({"event_id": "e0", "customer_id": "c-1", "ts": T0,
                              "type": "login"}).duplicate  # too old to be recognised
    assert world.customers["c-1"].profile.n_events == 13
    # an interaction without an id (not from the topic: the schema requires one) is applied
    observed = world.observe({"customer_id": "c-1", "ts": T0 + 200, "type": "login"})
    assert not observed.duplicate and observed.customer.profile.n_events == 14
