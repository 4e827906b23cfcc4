"""The dashboard's web server (aiohttp): the page, its data, and the reader of the topics.

- ``GET /``: the page (``static/index.html`` and ``static/dashboard.js``: plain JavaScript, charts
  drawn on canvas, nothing fetched from elsewhere);
- ``GET /api/summary``: ``Board.summary()`` as JSON, plus the topics not found yet;
- ``GET /api/stream``: the same summary as server-sent events, sent again after it changes (at
  most once per ``refresh_s``), a comment line every 15 s when nothing happens;
- ``GET /health``: ``{"status": "ok", ...}`` while the server runs.

``run_dashboard`` serves until SIGINT / SIGTERM; the topic reader (``feed.TopicFeed``) runs as a
background task of the application and is stopped with it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from stream_app.dashboard.board import Board
from stream_app.dashboard.feed import TopicFeed
from stream_app.dashboard.oracle import SimulatorOracle
from stream_app.settings import Settings

__all__ = ["make_app", "run_dashboard"]

log = structlog.get_logger("stream_app.dashboard")

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0


class _Summaries:
    """The summary rendered once per board version, shared by every client."""

    def __init__(self, board: Board, feed: TopicFeed | None) -> None:
        self.board, self.feed = board, feed
        self._version = -1
        self._body = b""

    def body(self) -> tuple[int, bytes]:
        version = self.board.version
        if version != self._version:
            summary: dict[str, Any] = self.board.summary()
            summary["missing_topics"] = self.feed.missing if self.feed is not None else []
            self._body = orjson.dumps(summary)
            self._version = version
        return self._version, self._body


SUMMARIES = web.AppKey("summaries", _Summaries)
CLOSING = web.AppKey("closing", asyncio.Event)
REFRESH_S = web.AppKey("refresh_s", float)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _summary(request: web.Request) -> web.Response:
    _, body = request.app[SUMMARIES].body()
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    closing, summaries, refresh_s = app[CLOSING], app[SUMMARIES], app[REFRESH_S]
    sent, quiet_since = None, time.monotonic()
    try:
        await response.write(b"retry: 2000\n\n")
        while not closing.is_set():
            version, body = summaries.body()
            if version != sent:
                await response.write(b"data: " + body + b"\n\n")
                sent, quiet_since = version, time.monotonic()
            elif time.monotonic() - quiet_since > HEARTBEAT_S:
                await response.write(b": nothing new\n\n")
                quiet_since = time.monotonic()
            try:
                await asyncio.wait_for(closing.wait(), refresh_s)
            except TimeoutError:
                pass
    except ConnectionResetError:  # the page was closed
        pass
    return response


async def _health(request: web.Request) -> web.Response:
    summaries = request.app[SUMMARIES]
    feed = summaries.feed
    return web.json_response({"status": "ok", "messages": sum(summaries.board.read.values()),
                              "missing_topics": feed.missing if feed is not None else []})


def make_app(board: Board, feed: TopicFeed | None = None, refresh_s: float = 1.0
             ) -> web.Application:
    """The dashboard's application over ``board``; with a ``feed``, the feed runs (and stops)
    with the application."""
    app = web.Application()
    app[SUMMARIES] = _Summaries(board, feed)
    app[CLOSING] = asyncio.Event()
    app[REFRESH_S] = refresh_s
    app.router.add_get("/", _index)
    app.router.add_get("/api/summary", _summary)
    app.router.add_get("/api/stream", _stream)
    app.router.add_get("/health", _health)
    app.router.add_static("/static/", STATIC)

    async def closing(app: web.Application) -> None:  # lets open event streams end
        app[CLOSING].set()

    app.on_shutdown.append(closing)
    if feed is not None:
        async def reading(app: web.Application):
            task = asyncio.create_task(feed.run())
            yield
            feed.stop()
            await task

        app.cleanup_ctx.append(reading)
    return app


def run_dashboard(settings: Settings, host: str = "127.0.0.1", port: int = 8050,
                  oracle: SimulatorOracle | None = None, from_start: bool = True,
                  refresh_s: float = 1.0) -> None:
    """Serve the dashboard of the topics of ``settings`` until SIGINT / SIGTERM."""
    board = Board(oracle)
    app = make_app(board, TopicFeed(settings, board, from_start=from_start), refresh_s)

    async def announce(app: web.Application) -> None:
        print(f"dashboard: http://{host}:{port}/ (topics {settings.topic('decisions')}, "
              f"{settings.topic('delta-metrics')}, {settings.topic('dead-letter')} on "
              f"{settings.bootstrap_servers})", flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=5.0,
                access_log=None)
