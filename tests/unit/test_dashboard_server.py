"""The dashboard's web server without Kafka: the page and its script are served, and nothing on
the page comes from another host; /api/summary and /api/stream carry the board's figures and
follow it; the CLI refuses bad options in one line."""

from __future__ import annotations

import asyncio
import re

import orjson
from aiohttp.test_utils import TestClient, TestServer

from stream_app.cli import main
from stream_app.dashboard.board import Board
from stream_app.dashboard.server import STATIC, make_app


def _decision(ts: int, offer: str) -> bytes:
    return orjson.dumps({"ts": ts, "action": "offer", "offer_id": offer, "policy": "thompson"})


async def _with_client(board: Board, check) -> None:
    async with TestClient(TestServer(make_app(board, refresh_s=0.05))) as client:
        await check(client)


def test_the_page_and_its_script_are_served_and_fetch_nothing_from_elsewhere():
    async def check(client: TestClient) -> None:
        page = await client.get("/")
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        html = await page.text()
        assert '<script src="/static/dashboard.js">' in html and 'id="decisions"' in html
        script = await client.get("/static/dashboard.js")
        assert script.status == 200 and "EventSource" in await script.text()
        assert (await client.get("/static/nothing.js")).status == 404

    asyncio.run(_with_client(Board(), check))
    for name in ("index.html", "dashboard.js"):  # no CDN, no web font: the page works offline
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", (STATIC / name).read_text())


def test_the_summary_is_the_boards_and_the_stream_follows_it():
    board = Board()
    board.add("decisions", _decision(1_000, "a"))

    async def check(client: TestClient) -> None:
        summary = await (await client.get("/api/summary")).json()
        assert summary["totals"]["decisions"] == 1 and summary["missing_topics"] == []
        health = await (await client.get("/health")).json()
        assert health == {"status": "ok", "messages": 1, "missing_topics": []}
        stream = await client.get("/api/stream")
        assert stream.headers["Content-Type"] == "text/event-stream"
        seen = []
        while len(seen) < 2:
            line = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
            if line.startswith("data: "):
                seen.append(orjson.loads(line[6:])["totals"]["decisions"])
                board.add("decisions", _decision(2_000, "b"))  # the next event shows it
        assert seen == [1, 2]
        stream.close()

    asyncio.run(_with_client(board, check))


def test_the_cli_refuses_a_bad_port_or_simulation_in_one_line(capsys):
    assert main(["dashboard", "--port", "0"]) == 2
    assert main(["dashboard", "--sim-seed", "1", "--sim-customers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "stream-app: --port must be in 1..65535 and --refresh a positive number of seconds",
        ("stream-app: simulator parameters: "
         "the simulation needs at least one customer and some days"),
    ]
