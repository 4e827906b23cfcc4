"""The HTTP gateway against a real broker and worker.

The client below is written from Azure AI Personalizer's public REST reference (v1.0: ``POST
{Endpoint}/personalizer/v1.0/rank`` answering 201 with ``ranking``, ``eventId`` and
``rewardActionId``; ``POST .../events/{eventId}/reward`` with ``{"value": v}`` and ``POST
.../events/{eventId}/activate``, both 204; errors as ``{"error": {"code", "message"}}``), with
httpx and nothing of this project: only its endpoint is the gateway's. It ranks and rewards a
planted population (one action answers far more often than the others) and the response rate
rises; a use case in apprentice mode serves the baseline until the engine beats it, then the
engine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from stream_app.kafka.broker import free_port
from stream_app.worker.process import spawn_worker, stop_worker

pytestmark = pytest.mark.integration

ACTIONS = ["plain-card", "travel-miles", "cashback", "insurance"]  # the first is the baseline
RESPONSE = {"plain-card": 0.08, "travel-miles": 0.12, "cashback": 0.65, "insurance": 0.08}
PLANTED = {
    "version": "gw-planted",
    "offers": [{"id": a, "category": "cards"} for a in ACTIONS],
    "use_cases": [{"id": uc, "policy": "thompson", "attribution_window_s": 600,
                   "rules": {"fatigue": {"same_offer_s": 0}}} for uc in ("default", "checkout")],
}


class PersonalizerError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.error = status, body.get("error", {})


class PersonalizerClient:
    """Rank / Reward / Activate as Personalizer's public REST reference (v1.0) describes them."""

    def __init__(self, endpoint: str, key: str = "not-checked") -> None:
        self.http = httpx.AsyncClient(base_url=endpoint, timeout=10.0,
                                      headers={"Ocp-Apim-Subscription-Key": key})

    async def _post(self, path: str, body: dict | None, expect: int) -> httpx.Response:
        response = await self.http.post(path, json=body) if body is not None else \
            await self.http.post(path)
        if response.status_code != expect:
            raise PersonalizerError(response.status_code, response.json())
        return response

    async def rank(self, actions: list[dict], context_features: list[dict] | None = None,
                   excluded_actions: list[str] | None = None, event_id: str | None = None,
                   defer_activation: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"actions": actions, "deferActivation": defer_activation}
        if context_features is not None:
            body["contextFeatures"] = context_features
        if excluded_actions is not None:
            body["excludedActions"] = excluded_actions
        if event_id is not None:
            body["eventId"] = event_id
        return (await self._post("/personalizer/v1.0/rank", body, 201)).json()

    async def reward(self, event_id: str, value: float) -> None:
        await self._post(f"/personalizer/v1.0/events/{event_id}/reward", {"value": value}, 204)

    async def activate(self, event_id: str) -> None:
        await self._post(f"/personalizer/v1.0/events/{event_id}/activate", None, 204)

    async def close(self) -> None:
        await self.http.aclose()


@pytest.fixture
def quiet_engine(monkeypatch, request):
    """The conftest's engine, its worker without a probe port of its own (tests run in
    parallel on one machine)."""
    monkeypatch.setenv("STREAM_APP_PROBE_PORT", "0")
    return request.getfixturevalue("engine")


@pytest.fixture
def gateway(quiet_engine):
    quiet_engine.publish_config(PLANTED)
    port, probes = free_port(), free_port()
    env = {**quiet_engine.env(), "STREAM_APP_GATEWAY_PORT": str(port),
           "STREAM_APP_GATEWAY_PROBE_PORT": str(probes), "STREAM_APP_GATEWAY_TIMEOUT_MS": "5000",
           "STREAM_APP_GATEWAY_APPRENTICE": "checkout", "STREAM_APP_GATEWAY_APPRENTICE_EXPLORE":
           "0.5", "STREAM_APP_GATEWAY_APPRENTICE_MIN_N": "20"}
    with open(quiet_engine.workdir / "gateway.log", "ab") as log:
        process = spawn_worker(env, log, ("-m", "stream_app.cli", "gateway"))
    try:
        _wait_until_engine_answers(f"http://127.0.0.1:{port}", quiet_engine.workdir, process)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{probes}"
    finally:
        stop_worker(process, 30.0)


def _wait_until_engine_answers(url: str, workdir, process, timeout_s: float = 120.0) -> None:
    """Until the gateway runs, sees the planted catalogue, and the worker decides with it."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"gateway died: see {workdir / 'gateway.log'}"
            try:
                seen = http.get("/v1/gateway").json()["config_version"]
                d = http.post("/v1/decide", json={
                    "request_id": f"warm-{uuid.uuid4().hex}", "customer_id": "warm",
                    "ts": int(time.time() * 1000), "channel": "web", "use_case": "default",
                    "candidates": ACTIONS}).json()
                if seen == PLANTED["version"] and d.get("config_version") == PLANTED["version"]:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise AssertionError(f"the gateway never answered with the planted config; "
                         f"see {workdir / 'gateway.log'} and {workdir / 'worker.log'}")


async def _round(client: PersonalizerClient, rng: np.random.Generator, tag: str, n: int,
                 base: str = "") -> list[tuple[dict, float]]:
    """``n`` ranks at once, then each rewarded by the planted response model."""
    actions = [{"id": a, "features": [{"kind": a.split("-")[0]}]} for a in ACTIONS]
    answers = await asyncio.gather(*(client.rank(
        actions, [{"userId": f"u-{rng.integers(30)}"}, {"device": {"mobile": bool(i % 2)}}],
        event_id=f"{tag}-{i}") for i in range(n)))
    rewards = [float(rng.random() < RESPONSE[a["rewardActionId"]]) for a in answers]
    await asyncio.gather(*(client.reward(a["eventId"], r) for a, r in zip(answers, rewards)))
    return list(zip(answers, rewards))


def test_a_personalizer_client_ranks_rewards_and_sees_the_engine_learn(gateway):
    url, probes = gateway
    rng = np.random.default_rng(5)

    async def scenario():
        client = PersonalizerClient(url)
        try:
            rates = []
            for r in range(6):
                rows = await _round(client, rng, f"learn{r}", 50)
                assert all(a["servedBy"] == "engine" for a, _ in rows)
                assert all(abs(sum(x["probability"] for x in a["ranking"]) - 1) < 1e-3
                           for a, _ in rows)
                rates.append(np.mean([reward for _, reward in rows]))
                await asyncio.sleep(1.0)  # the outcomes reach the arms (and the fleet)
            with pytest.raises(PersonalizerError) as unknown:
                await client.rank([{"id": "cashback"}, {"id": "lottery"}])
            with pytest.raises(PersonalizerError) as missing:
                await client.reward("never-ranked", 1.0)
            deferred = await client.rank([{"id": a} for a in ACTIONS], event_id="later",
                                         defer_activation=True)
            await client.activate(deferred["eventId"])
            await client.reward(deferred["eventId"], 1.0)
            return rates, unknown.value, missing.value
        finally:
            await client.close()

    rates, unknown, missing = asyncio.run(scenario())
    print(f"response rate by round: {[round(float(r), 3) for r in rates]}")
    # uniform at first: about the mean of RESPONSE (0.23); then mostly cashback (0.65)
    assert np.mean(rates[4:]) > rates[0] + 0.15, rates
    assert np.mean(rates[4:]) > 0.4, rates
    assert unknown.status == 400 and "lottery" in unknown.error["message"]
    assert missing.status == 404 and missing.error["code"] == "ResourceNotFound"

    ready = httpx.get(f"{probes}/ready")
    metrics = httpx.get(f"{probes}/metrics").text
    assert ready.status_code == 200 and ready.json()["config_version"] == "gw-planted"
    assert 'stream_app_gateway_answers_total{api="rank",served_by="engine",use_case="default"}' \
        in metrics


def test_apprentice_mode_serves_the_baseline_until_the_engine_beats_it(gateway):
    url, _ = gateway
    rng = np.random.default_rng(9)

    async def scenario():
        client = PersonalizerClient(f"{url}/use-cases/checkout")
        try:
            served = []
            for r in range(12):
                served += await _round(client, rng, f"appr{r}", 40)
                async with httpx.AsyncClient(base_url=url) as http:
                    status = (await http.get("/v1/gateway")).json()["apprentice"]["checkout"]
                if status["mode"] == "online":
                    break
                await asyncio.sleep(0.5)
            after = await _round(client, rng, "online", 20)
            return served, status, after
        finally:
            await client.close()

    served, status, after = asyncio.run(scenario())
    print(f"apprentice switched after {status['switched_at_event']} rewarded events: {status}")
    assert status["mode"] == "online", status
    assert status["engine"]["low"] - status["baseline"]["high"] > 0
    shares = {a["servedBy"] for a, _ in served}
    assert shares <= {"baseline", "engine"} and "baseline" in shares
    assert {a["rewardActionId"] for a, _ in served if a["servedBy"] == "baseline"} == \
        {ACTIONS[0]}
    assert all(a["servedBy"] == "engine" for a, _ in after)
