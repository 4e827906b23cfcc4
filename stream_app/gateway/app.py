"""The HTTP decision gateway (``stream-app gateway``): aiohttp routes over ``DecisionGateway``.

=======================================================  ======================================
route                                                    answers
=======================================================  ======================================
``POST /v1/decide``                                      200, the decision (``decisions`` JSON)
``POST /v1/outcomes``                                    202 once Kafka stored the outcome
``POST /personalizer/v1.0/rank``                         201, Personalizer's RankResponse
``POST /personalizer/v1.0/events/{eventId}/reward``      204
``POST /personalizer/v1.0/events/{eventId}/activate``    204
``GET /v1/gateway``                                      200, counts and apprentice status
=======================================================  ======================================

The Personalizer routes also live under ``/use-cases/{useCase}/`` (a Personalizer client's base
URL names the use case), and take ``?useCase=`` and ``?channel=``; without them, the configured
defaults. Every error is Personalizer's ``{"error": {"code", "message"}}`` with a 4xx or 503
status. Each answer that waited for the engine carries a ``Server-Timing`` header: ``engine``
(request produced -> decision produced, Kafka timestamps), ``return`` (decision produced -> read
here), ``gateway`` (the rest of the time spent here) and ``total``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from stream_app.gateway import metrics
from stream_app.gateway.engine import EngineUnavailable
from stream_app.gateway.personalizer import BadRequest, NotFound, error_body
from stream_app.gateway.service import Conflict, DecisionGateway, Reply, Unavailable
from stream_app.settings import Settings

__all__ = ["build_app", "run_gateway"]

log = structlog.get_logger("stream_app.gateway")

GATEWAY = web.AppKey("gateway", DecisionGateway)
PERSONALIZER = "/personalizer/v1.0"
_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (BadRequest, 400, "BadRequest"), (NotFound, 404, "ResourceNotFound"),
    (Conflict, 409, "Conflict"), (Unavailable, 503, "ServiceUnavailable"),
    (EngineUnavailable, 503, "ServiceUnavailable"),
)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def _reply(reply: Reply) -> web.Response:
    if reply.status == 204:
        return web.Response(status=204)
    headers = None
    if reply.timing:
        headers = {"Server-Timing": ", ".join(f"{name};dur={ms:.3f}"
                                              for name, ms in reply.timing.items())}
    return _json(reply.status, reply.body, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    resource = request.match_info.route.resource
    metrics.called(resource.canonical if resource is not None else "unmatched", response.status)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json(exc.status, error_body(exc.reason.replace(" ", ""), exc.text or exc.reason))
    except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a hang
        for kind, status, code in _ERRORS:
            if isinstance(exc, kind):
                return _json(status, error_body(code, str(exc)))
        log.exception("gateway_error", path=request.path)
        return _json(500, error_body("InternalServerError", f"{type(exc).__name__}: {exc}"))


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None


def _where(request: web.Request) -> tuple[str, str]:
    """(use case, channel) of a Personalizer call."""
    settings = request.app[GATEWAY].settings
    use_case = request.match_info.get("use_case") or request.query.get("useCase") or \
        settings.use_case
    return use_case, request.query.get("channel") or settings.channel


async def decide(request: web.Request) -> web.Response:
    return _reply(await request.app[GATEWAY].decide(await request.read()))


async def outcomes(request: web.Request) -> web.Response:
    return _reply(await request.app[GATEWAY].outcome(await request.read()))


async def rank(request: web.Request) -> web.Response:
    use_case, channel = _where(request)
    return _reply(await request.app[GATEWAY].rank(await _body(request), use_case, channel))


async def reward(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    return _reply(await gateway.reward(request.match_info["event_id"], await _body(request)))


async def activate(request: web.Request) -> web.Response:
    return _reply(await request.app[GATEWAY].activate(request.match_info["event_id"]))


async def status(request: web.Request) -> web.Response:
    return _json(200, request.app[GATEWAY].status())


def build_app(gateway: DecisionGateway, sweep_every_s: float = 1.0) -> web.Application:
    """The aiohttp application over ``gateway`` (its engine link started elsewhere); a task
    forgets events past their window every ``sweep_every_s``."""
    app = web.Application(middlewares=[_errors])
    app[GATEWAY] = gateway
    routes = [web.post("/v1/decide", decide), web.post("/v1/outcomes", outcomes),
              web.get("/v1/gateway", status)]
    for prefix in ("", "/use-cases/{use_case}"):
        routes += [web.post(f"{prefix}{PERSONALIZER}/rank", rank),
                   web.post(f"{prefix}{PERSONALIZER}/events/{{event_id}}/reward", reward),
                   web.post(f"{prefix}{PERSONALIZER}/events/{{event_id}}/activate", activate)]
    app.add_routes(routes)

    async def sweeping(app: web.Application):
        async def sweep() -> None:
            while True:
                await asyncio.sleep(sweep_every_s)
                gateway.sweep()

        task = asyncio.create_task(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sweeping)
    return app


def run_gateway(settings: Settings) -> None:
    """Serve until SIGINT / SIGTERM: the catalogue feed, the Kafka link, the HTTP routes, and
    ``/health``, ``/ready``, ``/metrics`` on ``gateway.probe_port`` (0: none)."""
    from stream_app.gateway.catalogue import CatalogueFeed
    from stream_app.gateway.engine import KafkaEngine
    from stream_app.kafka.topics import create_topics
    from stream_app.observability import serve_probes
    from stream_app.observability.metrics import config_applied
    from stream_app.schemas import Contract

    contract = Contract.load(max_bytes=settings.max_message_bytes)
    create_topics(settings)
    feed = CatalogueFeed(settings.bootstrap_servers, settings.topic("engine-config"),
                         settings.topic("dead-letter"), contract)
    feed.on_change.append(lambda config: config_applied(config.version))
    engine = KafkaEngine(settings)
    gateway = DecisionGateway(engine, lambda: feed.current, settings.gateway, contract)
    app = build_app(gateway)
    linked = asyncio.Event()

    def ready() -> dict[str, Any]:
        config = feed.current
        return {"ready": linked.is_set() and config is not None,
                "config_version": config.version if config is not None else None,
                "decisions_partitions": engine.correlator.partitions}

    async def link(app: web.Application):
        loop = asyncio.get_running_loop()
        probes = await serve_probes(settings.gateway.probe_port, ready, host=settings.probe_host)
        feed.start()
        if not await loop.run_in_executor(None, feed.loaded.wait, 30.0):
            log.warning("config_not_loaded", topic=feed.topic, waited_s=30)
        await engine.start()
        linked.set()
        log.info("gateway_serving", host=settings.gateway.host, port=settings.gateway.port,
                 config_version=feed.current.version if feed.current else None,
                 apprentice=list(settings.gateway.apprentice),
                 timeout_ms=settings.gateway.timeout_ms, probe_port=settings.gateway.probe_port)
        yield
        linked.clear()
        await engine.stop()
        await loop.run_in_executor(None, feed.stop)
        if probes is not None:
            await probes.cleanup()

    app.cleanup_ctx.insert(0, link)
    loop = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host=settings.gateway.host, port=settings.gateway.port, print=None,
                access_log=None, loop=loop)
