"""What the HTTP gateway adds to a decision's latency, at a set request rate (``stream-app
gateway-bench``).

A sandbox (``sandbox.py``: a broker, fresh topics, one worker) and one ``stream-app gateway``
process; an open-loop HTTP client sends ``POST /v1/decide`` at ``rate`` requests per second (each
sent at its scheduled time, whether or not earlier ones were answered) for ``seconds``. Each
answer's ``Server-Timing`` header splits its time: ``engine`` (request produced -> decision
produced, the Kafka timestamps: what a Kafka-native channel waits for too, less its own return
hop), ``return`` (decision produced -> read by the gateway) and ``gateway`` (the rest, inside the
gateway). The client measures the round trip; the gateway's added latency is the round trip
minus ``engine``: HTTP, validation, the produce call, the return hop, the hand-over to the
waiting request, and the client's own event loop. ``worker="relay"`` answers with the relay
(``relay.py``: the worker's reads and writes without the engine), so the gateway's share is
measured at a rate the engine could not sustain on the machine at hand. Every process started
here is stopped by pid.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.kafka.broker import free_port
from stream_app.worker.process import spawn_worker, stop_worker

__all__ = ["GatewayBenchParams", "markdown", "run_gateway_bench"]

CHANNELS = ["app", "web", "email"]


@dataclass(frozen=True)
class GatewayBenchParams:
    rate: float = 500.0
    seconds: float = 20.0
    customers: int = 10_000
    offers: int = 20
    partitions: int = 4
    timeout_ms: float = 2000.0
    worker: str = "engine"  # or "relay": the engine taken out (bench/relay.py), the gateway alone
    cache_dir: Path = Path(".cache")
    bootstrap_servers: str | None = None  # None: start a broker of its own


def _config(offers: int) -> dict[str, Any]:
    return {"version": f"gateway-bench-{offers}",
            "offers": [{"id": f"o{i:03d}", "channels": CHANNELS, "value": 1.0 + i % 3}
                       for i in range(offers)],
            "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": 60,
                           "rules": {"fatigue": {"same_offer_s": 0}}}]}


def _timing(header: str) -> dict[str, float]:
    """``Server-Timing`` -> {name: ms}.

    >>> _timing("engine;dur=3.5, return;dur=0.4")
    {'engine': 3.5, 'return': 0.4}
    """
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


async def _drive(url: str, rate: float, seconds: float, customers: int,
                 tag: str) -> list[dict[str, float]]:
    import aiohttp

    rows: list[dict[str, float]] = []
    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    who = rng.integers(0, customers, n)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = {"request_id": f"{tag}-{i}", "customer_id": f"c{who[i]:07d}",
                "ts": int(time.time() * 1000), "channel": "web", "use_case": "default",
                "context": {"page": "home"}}
        started = time.perf_counter()
        async with session.post(url, json=body) as resp:
            answer = await resp.json()
            header = resp.headers.get("Server-Timing", "")
        row = {"round_trip": (time.perf_counter() - started) * 1000.0, **_timing(header),
               "fallback": float(answer.get("served_by") == "fallback"),
               "status": float(resp.status)}
        rows.append(row)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i)))
        await asyncio.gather(*tasks, return_exceptions=True)
    return rows


async def _until_decided(url: str, timeout_s: float) -> float:
    """Ask until the engine (not the fallback) answers; seconds it took."""
    import aiohttp

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        i = 0
        while time.monotonic() - started < timeout_s:
            i += 1
            body = {"request_id": f"warm-{uuid.uuid4().hex}-{i}", "customer_id": "c-warm",
                    "ts": int(time.time() * 1000), "channel": "web", "use_case": "default"}
            try:
                async with session.post(url, json=body) as resp:
                    if resp.status == 200 and (await resp.json()).get("served_by") == "engine":
                        return time.monotonic() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"no decision through the gateway within {timeout_s:.0f} s")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "mean": None}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 2),
            "p99": round(float(np.percentile(a, 99)), 2), "mean": round(float(a.mean()), 2)}


def run_gateway_bench(params: GatewayBenchParams) -> dict[str, Any]:
    """Broker (unless given), worker, gateway; a warm-up; ``rate`` req/s for ``seconds``."""
    from stream_app.bench.sandbox import Sandbox

    workdir = params.cache_dir / "bench-runs" / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}"
    if params.worker not in ("engine", "relay"):
        raise ValueError("worker must be 'engine' or 'relay'")
    relay = ["-m", "stream_app.bench.relay", "--consumer", "librdkafka"]
    with Sandbox(partitions=params.partitions, cache_dir=params.cache_dir,
                 bootstrap_servers=params.bootstrap_servers, broker_heap="1g",
                 max_message_bytes=64 * 1024, log_level="warning", workdir=workdir,
                 worker_command=relay if params.worker == "relay" else None) as box:
        box.publish_config(_config(params.offers))
        box.start_worker()
        port = free_port()
        env = {**box.env(), "STREAM_APP_GATEWAY_PORT": str(port),
               "STREAM_APP_GATEWAY_TIMEOUT_MS": str(params.timeout_ms)}
        with open(workdir / "gateway.log", "ab") as log:
            gateway = spawn_worker(env, log, ("-m", "stream_app.cli", "gateway"))
        try:
            url = f"http://127.0.0.1:{port}/v1/decide"
            warm_s = asyncio.run(_until_decided(url, 180.0))
            asyncio.run(_drive(url, params.rate, 5.0, params.customers, "warm"))
            started = time.perf_counter()
            rows = asyncio.run(_drive(url, params.rate, params.seconds, params.customers, "m"))
            elapsed = time.perf_counter() - started
        finally:
            stop_worker(gateway, 30.0)
    answered = [r for r in rows if r["status"] == 200 and not r["fallback"] and "engine" in r]
    return {
        "params": {"rate": params.rate, "seconds": params.seconds, "customers": params.customers,
                   "offers": params.offers, "partitions": params.partitions,
                   "timeout_ms": params.timeout_ms, "worker": params.worker},
        "requests": len(rows), "answered_by_engine": len(answered),
        "fallbacks": int(sum(r["fallback"] for r in rows)),
        "errors": sum(1 for r in rows if r["status"] != 200),
        "achieved_rate": round(len(rows) / elapsed, 1), "first_decision_s": round(warm_s, 1),
        "round_trip_ms": _percentiles([r["round_trip"] for r in answered]),
        "engine_ms": _percentiles([r["engine"] for r in answered]),
        "added_ms": _percentiles([r["round_trip"] - r["engine"] for r in answered]),
        "return_hop_ms": _percentiles([r["return"] for r in answered]),
        "inside_gateway_ms": _percentiles([r["gateway"] for r in answered]),
        "logs": str(workdir),
    }


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    title = (f"gateway bench ({p['worker']}): {p['rate']:g} req/s for {p['seconds']:g} s "
             f"({report['achieved_rate']} req/s sent), {report['requests']} requests, "
             f"{report['answered_by_engine']} answered by the engine, "
             f"{report['fallbacks']} fallbacks, {report['errors']} errors")
    lines = [title, "", "| latency (ms) | p50 | p99 | mean |", "|---|---:|---:|---:|"]
    for key, label in (("round_trip_ms", "HTTP round trip (client)"),
                       ("engine_ms", "engine: request produced -> decision produced"),
                       ("added_ms", "added by the gateway: round trip - engine"),
                       ("return_hop_ms", "  of which decision produced -> read by the gateway"),
                       ("inside_gateway_ms", "  of which inside the gateway process")):
        v = report[key]
        lines.append(f"| {label} | {v['p50']} | {v['p99']} | {v['mean']} |")
    return "\n".join(lines)
