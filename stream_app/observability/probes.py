"""The probe server every long-running process serves: ``/health``, ``/ready``, ``/metrics``.

A small aiohttp server on the process's own event loop:

- ``GET /health`` answers ``200 {"status": "alive"}`` while the event loop runs;
- ``GET /ready`` answers the process's ``ready()`` details as JSON, ``200`` when their ``ready``
  is true, ``503`` otherwise (also when ``ready()`` itself fails: the error is in the answer);
- ``GET /metrics`` answers the Prometheus text format of ``prometheus_client``'s default
  registry (OpenMetrics when the scraper asks for it), after ``on_scrape()`` has refreshed the
  gauges a process reads from elsewhere (consumer lag, store sizes).

Port 0 turns the server off.

>>> import asyncio, urllib.request
>>> from structlog.testing import capture_logs
>>> from stream_app.kafka.broker import free_port
>>> async def probe(port):
...     runner = await serve_probes(port, lambda: {"ready": False, "config_loaded": False})
...     loop = asyncio.get_running_loop()
...     def get(path):
...         try:
...             with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as answer:
...                 return answer.status, answer.read()
...         except urllib.error.HTTPError as refused:
...             return refused.code, refused.read()
...     try:
...         return [await loop.run_in_executor(None, get, p) for p in ("/health", "/ready")]
...     finally:
...         await runner.cleanup()
>>> with capture_logs():
...     asyncio.run(probe(free_port()))
[(200, b'{"status":"alive"}'), (503, b'{"ready":false,"config_loaded":false}')]
>>> asyncio.run(serve_probes(0, dict)) is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["serve_probes"]

log = structlog.get_logger("stream_app.observability")


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=str), status=status,
                        content_type="application/json")


async def serve_probes(port: int, ready: Callable[[], Mapping[str, Any]], *,
                       host: str = "127.0.0.1", on_scrape: Callable[[], None] | None = None,
                       registry: CollectorRegistry = REGISTRY) -> web.AppRunner | None:
    """Serve ``/health``, ``/ready`` and ``/metrics`` on ``host:port`` from the running loop.

    Parameters
    ----------
    port
        The TCP port; 0 serves nothing (and returns ``None``).
    ready
        Returns the readiness details: a boolean ``ready`` and whatever explains it.
    host
        The address to bind (``0.0.0.0`` for probes from outside the host or container).
    on_scrape
        Called before ``/metrics`` renders (refreshes gauges read from elsewhere); an error in
        it is logged and the metrics are rendered all the same.
    registry
        The metrics to render.

    Returns
    -------
    The running ``aiohttp.web.AppRunner`` (``await runner.cleanup()`` stops it), or ``None``
    when ``port`` is 0. A port already in use raises ``OSError``.
    """
    if port == 0:
        return None

    async def health(request: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def readiness(request: web.Request) -> web.Response:
        try:
            details = dict(ready())
        except Exception as exc:  # noqa: BLE001 - not ready, and the answer says why
            return _json({"ready": False, "error": f"{type(exc).__name__}: {exc}"}, 503)
        return _json(details, 200 if details.get("ready") is True else 503)

    async def metrics(request: web.Request) -> web.Response:
        if on_scrape is not None:
            try:
                on_scrape()
            except Exception:  # noqa: BLE001 - stale gauges are better than no metrics
                log.exception("metrics_refresh_failed")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    server = web.Application()
    server.router.add_get("/health", health)
    server.router.add_get("/ready", readiness)
    server.router.add_get("/metrics", metrics)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("probes_serving", host=host, port=port)
    return runner
