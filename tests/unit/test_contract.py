"""The schema files and the code agree: one source of truth for every topic."""

from __future__ import annotations

import ast

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from stream_app.core.arms import Arms, ArmsCodecError
from stream_app.core.catalogue import ConfigError, offer_key, parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, Evidence, decision_id_for
from stream_app.fleet import POPULATION_KEY, FleetView, segment_key
from stream_app.kafka.topics import CONTRACT
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import PROJECT_ROOT

CONTRACT_SCHEMAS = Contract.load()
CONFIG = orjson.loads((PROJECT_ROOT / "config" / "offers.json").read_bytes())


def test_every_contract_topic_has_exactly_one_schema():
    assert sorted(s.name for s in CONTRACT) == CONTRACT_SCHEMAS.topics()


@pytest.mark.parametrize("topic", CONTRACT_SCHEMAS.topics())
def test_schema_is_valid_and_its_examples_pass_both_validators(topic):
    schema = CONTRACT_SCHEMAS.schemas[topic]
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["examples"], f"{topic} has no example message"
    for example in schema["examples"]:
        jsonschema.validate(example, schema)
        assert CONTRACT_SCHEMAS.decode(topic, orjson.dumps(example)) == example


def test_shipped_config_is_a_valid_engine_config():
    CONTRACT_SCHEMAS.validate("engine-config", CONFIG)
    assert parse_config(CONFIG).version == CONFIG["version"]


def test_a_misplaced_config_key_is_refused_not_ignored():
    # rules belong to a use case: at the top level they would silently not apply
    doc = {**CONFIG, "rules": {"fatigue": {"same_offer_s": 0}}}
    with pytest.raises(InvalidMessage, match="must not contain {'rules'}") as exc:
        CONTRACT_SCHEMAS.decode("engine-config", orjson.dumps(doc))
    assert "\n" not in str(exc.value)
    described = {**CONFIG, "description": "spring campaign, reviewed by the risk team"}
    assert CONTRACT_SCHEMAS.decode("engine-config", orjson.dumps(described)) == described


def _decider() -> Decider:
    return Decider(parse_config(CONFIG), seed=3)


def _request(**extra) -> dict:
    return {"request_id": "r-1", "customer_id": "c-1", "ts": 1_000, "channel": "app",
            "use_case": "default", **extra}


def test_decisions_and_deltas_made_by_the_core_match_their_schemas():
    decided = _decider().decide(_request(), CustomerState.empty(), Evidence.empty(), FleetView("p0", 1))
    jsonschema.validate(decided.decision, CONTRACT_SCHEMAS.schemas["decisions"])
    view = FleetView("p0", 1)
    learned = _decider().learn(Evidence.empty(), decided.customer, decided.pending, {
        "outcome_id": "o", "decision_id": decided.pending.decision_id, "customer_id": "c-1",
        "ts": 2_000, "type": "converted", "value": 3.0}, view)
    (delta,) = [r for r in learned.records if r["kind"] == "outcome"]
    jsonschema.validate(delta, CONTRACT_SCHEMAS.schemas["delta-metrics"])
    assert delta["delta"] == pytest.approx(1.0 - decided.decision["predicted"])
    # the chosen offer gained one success at every level of evidence: the customer's at once,
    # the segment's and the population's in the partition's view of the fleet
    key = np.array([decided.pending.offer_key], np.uint32)
    segment = view.pooled(segment_key(decided.pending.segment))
    for level in (learned.evidence.customer, segment, view.pooled(POPULATION_KEY)):
        assert level.evidence(key, 2_000, None)[0].tolist() == [1.0]
    (record,) = view.records(2_000)
    CONTRACT_SCHEMAS.validate("learning", record)


def test_no_action_for_an_unknown_use_case_or_no_candidate_is_schema_valid():
    for req in (_request(use_case="nope"), _request(candidates=["not-an-offer"])):
        d = _decider().decide(req, CustomerState.empty(), Evidence.empty(), FleetView("p0", 1)).decision
        jsonschema.validate(d, CONTRACT_SCHEMAS.schemas["decisions"])
        assert d["action"] == "no_action" and d["offer_id"] is None and d["rule_reasons"]


def test_candidates_and_channel_narrow_the_offers_and_say_why():
    cfg = parse_config({"version": "v", "use_cases": [{"id": "default"}], "offers": [
        {"id": "app-only", "channels": ["app"]}, {"id": "email-only", "channels": ["email"]},
        {"id": "anywhere"}]})
    decider = Decider(cfg)
    asked = _request(channel="app", candidates=["email-only", "anywhere", "ghost"])
    for seed in range(20):
        d = decider.decide({**asked, "request_id": f"r-{seed}"}, CustomerState.empty(), Evidence.empty(), FleetView("p0", 1)).decision
        assert d["offer_id"] == "anywhere"  # app-only was not asked for, email-only not on app
        assert [r["offer_id"] for r in d["ranked"]] == ["anywhere"]
        assert d["rule_reasons"] == {"email-only": ["channel: not offered on app"],
                                     "ghost": ["not an offer of this use case"]}
    plain = decider.decide(_request(channel="email", context={"consent_email": True}), CustomerState.empty(), Evidence.empty(), FleetView("p0", 1)).decision
    assert {r["offer_id"] for r in plain["ranked"]} == {"email-only", "anywhere"}
    assert plain["rule_reasons"] == {"app-only": ["channel: not offered on email"]}


def test_same_request_same_state_gives_the_same_decision():
    a = _decider().decide(_request(), CustomerState.empty(), Evidence.empty(), FleetView("p0", 1)).decision
    b = _decider().decide(_request(), CustomerState.empty(), Evidence.empty(), FleetView("p0", 1)).decision
    assert a == b and a["decision_id"] == decision_id_for("r-1")


@pytest.mark.parametrize("raw, reason", [
    (b"", "not JSON"), (b"nope", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"request_id": "r"}', "schema violation"), (None, "empty message"),
])
def test_bad_bytes_get_a_one_line_reason(raw, reason):
    with pytest.raises(InvalidMessage, match=reason) as exc:
        CONTRACT_SCHEMAS.decode("decision-requests", raw)
    assert "\n" not in str(exc.value)


def test_too_large_message_is_rejected_before_parsing():
    small = Contract.load(max_bytes=100)
    with pytest.raises(InvalidMessage, match="too large"):
        small.decode("decision-requests", orjson.dumps(_request(context={"x": "y" * 200})))


@pytest.mark.parametrize("doc, why", [
    ({"version": "v", "offers": [], "use_cases": [{"id": "u"}]}, "at least one offer"),
    ({"version": "v", "offers": [{"id": "a"}, {"id": "a"}], "use_cases": [{"id": "u"}]}, "unique"),
    ({"version": "v", "offers": [{"id": "a"}], "use_cases": [{"id": "u", "offers": ["b"]}]}, "unknown"),
    ({"offers": [{"id": "a"}], "use_cases": [{"id": "u"}]}, "version"),
    ({"version": "v", "offers": [{"id": "a", "framing": "shouty"}], "use_cases": [{"id": "u"}]}, "framing"),
])
def test_bad_config_raises_a_config_error(doc, why):
    with pytest.raises(ConfigError, match=why):
        parse_config(doc)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.floats(0, 1), st.integers(0, 10**9)),
                max_size=30),
       st.one_of(st.none(), st.floats(1, 1e6)))
def test_arm_codec_round_trips_and_stays_compact(updates, half_life):
    arms = Arms.empty()
    for offer, reward, ts in updates:
        arms = arms.updated(offer_key(offer), reward, ts, half_life)
    decoded = Arms.decode(arms.encode())
    assert decoded == arms
    assert len(arms.encode()) == 16 + 12 * len({offer_key(o) for o, _, _ in updates})


def test_corrupt_arm_state_raises_a_codec_error():
    with pytest.raises(ArmsCodecError):
        Arms.decode(b"\x09" + bytes(15))
    with pytest.raises(ArmsCodecError):
        Arms.decode(Arms.empty().updated(1, 1.0, 0, None).encode()[:-1])


def test_decay_halves_evidence_after_one_half_life():
    arms = Arms.empty().updated(7, 1.0, 0, 10.0)
    succ, fail = arms.evidence(np.array([7], np.uint32), 10_000, 10.0)
    assert succ[0] == pytest.approx(0.5) and fail[0] == 0.0


FORBIDDEN = {"faust", "aiokafka", "confluent_kafka", "mode"}
PLUMBING = {"worker", "kafka", "cli.py", "tools", "bench", "dashboard", "gateway"}  # Kafka-facing


def test_the_core_never_imports_kafka_or_faust():
    pkg = PROJECT_ROOT / "stream_app"
    offenders = []
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg)
        if rel.parts[0] in PLUMBING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN or any(
                        name.startswith(f"stream_app.{p.removesuffix('.py')}") for p in PLUMBING):
                    offenders.append(f"{rel}: {name}")
    assert not offenders, offenders



def test_the_configuration_reference_in_the_readme_is_a_working_config():
    import re

    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"```json\n(\{\n  \"version\": \"bank-v7\".*?)\n```", readme, re.S)
    assert block, "the README's configuration reference is missing"
    doc = orjson.loads(block.group(1))
    CONTRACT_SCHEMAS.validate("engine-config", doc)
    decider = Decider(parse_config(doc))
    assert set(decider.experiments) == {"framing"} and len(decider.challengers["default"]) == 2
