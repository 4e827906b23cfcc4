"""The gateway's HTTP routes over a stand-in engine: Rank / Reward / Activate, the engine's own
API, errors, timeouts and apprentice mode. (Against a real broker and worker:
tests/integration/test_gateway.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream_app.core.catalogue import parse_config
from stream_app.core.decision import decision_id_for
from stream_app.gateway.app import build_app
from stream_app.gateway.engine import Answered
from stream_app.gateway.service import DecisionGateway
from stream_app.schemas import Contract
from stream_app.settings import GatewaySettings

CONFIG = parse_config({
    "version": "t-1",
    "offers": [{"id": "news"}, {"id": "sports"}, {"id": "music"}, {"id": "email-only",
                                                                  "channels": ["email"]}],
    "use_cases": [{"id": "default", "attribution_window_s": 60},
                  {"id": "checkout", "offers": ["news", "sports"]}],
})
CONTRACT = Contract.load()
RANK = "/personalizer/v1.0/rank"


class StandInEngine:
    """Answers like the engine (a schema-valid decision) with a planted choice, or not at all."""

    def __init__(self, choose: Callable[[list[str]], str] | None = None, answers: bool = True):
        self.choose = choose or (lambda candidates: candidates[-1])
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []

    async def decide(self, request: dict[str, Any], timeout_s: float) -> Answered | None:
        self.requests.append(request)
        if not self.answers:
            await asyncio.sleep(timeout_s)
            return None
        candidates = request.get("candidates") or ["news", "sports", "music"]
        offer = self.choose(candidates)
        decision = {
            "schema_version": 1, "decision_id": decision_id_for(request["request_id"]),
            "request_id": request["request_id"], "customer_id": request["customer_id"],
            "ts": request["ts"], "use_case": request["use_case"], "channel": request["channel"],
            "action": "offer", "offer_id": offer,
            "ranked": [{"offer_id": o, "score": 0.5} for o in [offer] + [
                c for c in candidates if c != offer]],
            "propensity": 0.7 if len(candidates) > 1 else 1.0, "propensity_se": 0.01,
            "predicted": 0.3, "policy": "thompson", "routed_because": "use case",
            "config_version": "t-1", "model_version": "m", "explore": False, "seed": 1,
            "rule_reasons": {}, "latency_ms": 0.4}
        CONTRACT.validate("decisions", decision)
        return Answered(decision, engine_ms=3.0, return_ms=0.5)

    async def send_outcome(self, outcome: dict[str, Any]) -> None:
        CONTRACT.validate("outcomes", outcome)
        self.outcomes.append(outcome)


def serve(engine: StandInEngine, **settings: Any):
    gateway = DecisionGateway(engine, lambda: CONFIG,
                              replace(GatewaySettings(), timeout_ms=50, **settings), CONTRACT)
    return gateway, TestClient(TestServer(build_app(gateway, sweep_every_s=3600)))


def run(engine: StandInEngine, scenario, **settings: Any):
    async def go():
        gateway, client = serve(engine, **settings)
        async with client:
            return await scenario(client, gateway)
    return asyncio.run(go())


def rank_body(event_id: str = "ev-1", **extra: Any) -> dict[str, Any]:
    return {"contextFeatures": [{"userId": "u-7"}, {"device": {"mobile": True, "os": "ios"}}],
            "actions": [{"id": "news", "features": [{"topic": "world"}]}, {"id": "sports"},
                        {"id": "music"}],
            "eventId": event_id, **extra}


def test_rank_answers_the_engines_choice_in_personalizers_shape():
    engine = StandInEngine()

    async def scenario(client, gateway):
        resp = await client.post(RANK, json=rank_body(excludedActions=["music"]))
        return resp.status, await resp.json(), resp.headers.get("Server-Timing", "")

    status, body, timing = run(engine, scenario)
    assert status == 201
    assert body["eventId"] == "ev-1" and body["rewardActionId"] == "sports"
    assert body["servedBy"] == "engine" and body["decisionId"] == decision_id_for("ev-1")
    probs = {r["id"]: r["probability"] for r in body["ranking"]}
    assert body["ranking"][0]["id"] == "sports"
    assert probs == {"sports": 0.7, "news": 0.3, "music": 0.0}
    assert "engine;dur=3.000" in timing and "total;dur=" in timing
    (request,) = engine.requests
    assert request["candidates"] == ["news", "sports"]  # excluded actions are not candidates
    assert request["customer_id"] == "u-7" and request["channel"] == "web"
    assert request["context"] == {"device.mobile": True, "device.os": "ios"}
    CONTRACT.validate("decision-requests", request)


def test_rank_refuses_what_it_cannot_map_with_a_readable_400():
    async def scenario(client, gateway):
        out = []
        for body in (rank_body() | {"actions": [{"id": "news"}, {"id": "weather"}]},
                     {"contextFeatures": []}, rank_body(excludedActions=["news", "sports",
                                                                         "music"])):
            resp = await client.post(RANK, json=body)
            out.append((resp.status, (await resp.json())["error"]))
        resp = await client.post(RANK, data=b"{not json")
        out.append((resp.status, (await resp.json())["error"]))
        resp = await client.post("/use-cases/checkout" + RANK, json=rank_body())
        out.append((resp.status, (await resp.json())["error"]))
        resp = await client.post(RANK + "?channel=fax", json=rank_body())
        out.append((resp.status, (await resp.json())["error"]))
        return out

    engine = StandInEngine()
    out = run(engine, scenario)
    assert [s for s, _ in out] == [400] * 6
    assert all(e["code"] == "BadRequest" for _, e in out)
    assert "unknown actions ['weather']" in out[0][1]["message"]
    assert "actions must be a non-empty list" in out[1][1]["message"]
    assert "every action is excluded" in out[2][1]["message"]
    assert "not JSON" in out[3][1]["message"]
    assert "unknown actions ['music']" in out[4][1]["message"]  # not an offer of checkout
    assert "unknown channel 'fax'" in out[5][1]["message"]
    assert engine.requests == []  # nothing reached Kafka


def test_reward_becomes_an_outcome_on_the_decision_and_activation_holds_it():
    engine = StandInEngine()

    async def scenario(client, gateway):
        await client.post(RANK, json=rank_body("ev-1"))
        await client.post(RANK, json=rank_body("ev-2", deferActivation=True))
        statuses = [(await client.post("/personalizer/v1.0/events/ev-1/reward",
                                       json={"value": 0.8})).status]
        statuses.append((await client.post("/personalizer/v1.0/events/ev-2/reward",
                                           json={"value": 0})).status)
        held = len(engine.outcomes)
        statuses.append((await client.post("/personalizer/v1.0/events/ev-2/activate")).status)
        missing = await client.post("/personalizer/v1.0/events/nope/reward", json={"value": 1})
        bad = await client.post("/personalizer/v1.0/events/ev-1/reward", json={"value": 3})
        return statuses, held, missing.status, (await missing.json())["error"], bad.status

    statuses, held, missing, error, bad = run(engine, scenario)
    assert statuses == [204, 204, 204]
    assert held == 1  # ev-2's reward waited for its activation
    first, second = engine.outcomes
    assert first["decision_id"] == decision_id_for("ev-1") and first["customer_id"] == "u-7"
    assert (first["type"], first["value"]) == ("accepted", 0.8)
    assert (second["decision_id"], second["type"]) == (decision_id_for("ev-2"), "dismissed")
    assert missing == 404 and error["code"] == "ResourceNotFound" and "nope" in error["message"]
    assert bad == 400


def test_no_decision_in_time_answers_the_baseline_says_so_and_learns_nothing():
    engine = StandInEngine(answers=False)

    async def scenario(client, gateway):
        resp = await client.post(RANK, json=rank_body())
        body = await resp.json()
        await client.post("/personalizer/v1.0/events/ev-1/reward", json={"value": 1})
        return resp.status, body, gateway.status()["counts"]

    status, body, counts = run(engine, scenario)
    assert status == 201
    assert body["rewardActionId"] == "news" and body["servedBy"] == "fallback"
    assert "within 50 ms" in body["fallbackReason"]
    assert body["ranking"][0] == {"id": "news", "probability": 1.0}
    assert engine.outcomes == []  # the engine did not decide what was shown
    assert counts["fallbacks"] == 1 and counts["rewards_not_attributed"] == 1

    status, body, _ = run(StandInEngine(answers=False), scenario, fallback="no_action")
    assert body["rewardActionId"] is None and body["servedBy"] == "fallback"


def test_decide_and_outcomes_speak_the_contract():
    engine = StandInEngine()
    request = {"request_id": "rq-1", "customer_id": "c-1", "ts": 1_764_000_000_000,
               "channel": "app", "use_case": "default"}

    async def scenario(client, gateway):
        ok = await client.post("/v1/decide", json=request)
        bad = await client.post("/v1/decide", json={**request, "channel": "fax"})
        again = await client.post("/v1/decide", json=request)  # answered and forgotten: fine
        outcome = {"outcome_id": "oc-1", "decision_id": decision_id_for("rq-1"),
                   "customer_id": "c-1", "ts": 1_764_000_001_000, "type": "clicked"}
        sent = await client.post("/v1/outcomes", json=outcome)
        refused = await client.post("/v1/outcomes", json={"outcome_id": "oc-2"})
        return ([ok.status, bad.status, again.status, sent.status, refused.status],
                await ok.json(), (await bad.json())["error"], (await refused.json())["error"])

    statuses, decision, bad, refused = run(engine, scenario)
    assert statuses == [200, 400, 200, 202, 400]
    CONTRACT.validate("decisions", decision)
    assert decision["offer_id"] == "music" and decision["served_by"] == "engine"
    assert bad["message"].startswith("schema violation (decision-requests v1)")
    assert refused["message"].startswith("schema violation (outcomes v1)")
    assert [o["outcome_id"] for o in engine.outcomes] == ["oc-1"]


def test_decide_without_a_decision_in_time_is_a_valid_no_action():
    request = {"request_id": "rq-9", "customer_id": "c-1", "ts": 1_764_000_000_000,
               "channel": "app", "use_case": "default", "candidates": ["news"]}

    async def scenario(client, gateway):
        resp = await client.post("/v1/decide", json=request)
        return resp.status, await resp.json()

    status, decision = run(StandInEngine(answers=False), scenario)
    assert status == 200
    CONTRACT.validate("decisions", decision)
    assert decision["action"] == "no_action" and decision["offer_id"] is None
    assert decision["served_by"] == "fallback" and "within 50 ms" in decision["fallback_reason"]
    assert decision["decision_id"] == decision_id_for("rq-9")


def test_a_repeated_event_is_a_conflict_and_unknown_routes_answer_json():
    async def scenario(client, gateway):
        first = await client.post(RANK, json=rank_body())
        again = await client.post(RANK, json=rank_body())
        lost = await client.get("/personalizer/v1.0/nothing")
        return first.status, again.status, (await again.json())["error"], lost.status, \
            (await lost.json())["error"]["code"]

    first, again, error, lost, code = run(StandInEngine(), scenario)
    assert (first, again, error["code"], lost, code) == (201, 409, "Conflict", 404, "NotFound")


def test_apprentice_serves_the_baseline_share_and_the_engine_share_and_counts_rewards():
    engine = StandInEngine(choose=lambda candidates: candidates[-1])

    async def scenario(client, gateway):
        answers = []
        for i in range(40):
            resp = await client.post("/use-cases/checkout" + RANK, json={
                "actions": [{"id": "news"}, {"id": "sports"}], "eventId": f"ev-{i}",
                "contextFeatures": [{"customerId": f"c-{i % 5}"}]})
            body = await resp.json()
            answers.append(body)
            await client.post(f"/use-cases/checkout/personalizer/v1.0/events/ev-{i}/reward",
                              json={"value": 1.0 if body["rewardActionId"] == "sports" else 0.0})
        return answers, await (await client.get("/v1/gateway")).json()

    answers, status = run(engine, scenario, apprentice=("checkout",), apprentice_explore=0.5,
                          apprentice_min_n=1000)
    by = {"baseline": [], "engine": []}
    for a in answers:
        by[a["servedBy"]].append(a["rewardActionId"])
    assert set(by["baseline"]) == {"news"} and set(by["engine"]) == {"sports"}
    assert 10 <= len(by["engine"]) <= 30  # explore = 0.5
    # the baseline share asked the engine among the baseline action alone: its decision is
    # what was shown, so its reward teaches the baseline's arm
    asked = {r["request_id"]: r["candidates"] for r in engine.requests}
    for a in answers:
        expected = ["news"] if a["servedBy"] == "baseline" else ["news", "sports"]
        assert asked[a["eventId"]] == expected
    assert len(engine.outcomes) == 40
    shares = status["apprentice"]["checkout"]
    assert shares["mode"] == "apprentice"
    assert shares["engine"]["rewards"] == len(by["engine"]) and shares["engine"]["mean"] == 1.0
    assert shares["baseline"]["rewards"] == len(by["baseline"])
    assert shares["baseline"]["mean"] == 0.0


def test_an_activated_event_without_reward_counts_zero_for_its_share_when_it_expires():
    clock = [1_000.0]
    engine = StandInEngine()
    gateway = DecisionGateway(engine, lambda: CONFIG, replace(
        GatewaySettings(), apprentice=("default",), apprentice_explore=0.5), CONTRACT,
        clock=lambda: clock[0])

    async def go():
        for i in range(10):
            await gateway.rank(rank_body(f"ev-{i}", deferActivation=i >= 5), "default", "web")
        clock[0] += 59.0
        early = gateway.sweep()
        clock[0] += 2.0  # past the use case's 60 s window
        return early, gateway.sweep()

    early, late = asyncio.run(go())
    assert (early, late) == (0, 10)
    shares = gateway.status()["apprentice"]["default"]
    assert shares["engine"]["rewards"] + shares["baseline"]["rewards"] == 5  # activated only
    assert shares["engine"]["mean"] in (0.0, None) and shares["baseline"]["mean"] in (0.0, None)


def test_the_gateway_refuses_an_unknown_fallback():
    with pytest.raises(ValueError, match="fallback"):
        DecisionGateway(StandInEngine(), lambda: CONFIG,
                        replace(GatewaySettings(), fallback="random"), CONTRACT)


def test_status_is_json():
    async def scenario(client, gateway):
        await client.post(RANK, json=rank_body())
        return await (await client.get("/v1/gateway")).read()

    status = orjson.loads(run(StandInEngine(), scenario))
    assert status["config_version"] == "t-1" and status["events"] == 1
    assert status["counts"]["decisions"] == 1
