"""The live dashboard in headless Chromium against a real broker and a real worker.

The simulator sends traffic for ~20 s (an A/B test of two policies with a random control group
in force, and two messages the engine must dead-letter) while ``stream-app dashboard`` serves
the topics and a headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium) watches the page: its figures move while the engine runs without a reload; once the
traffic is over, the decisions, outcome deltas and dead letters it shows are those the test
counts on the topics; its "of the oracle" figure is the traffic tool's own score; its charts are
drawn; the browser logged no error. The screenshot is kept in ``tests/artifacts/dashboard.png``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from stream_app.core.delta import outcome_rows
from stream_app.kafka.broker import free_port
from stream_app.kafka.client import TopicReader
from stream_app.kafka.topics import create_topics
from stream_app.kafka.traffic import run_traffic
from stream_app.settings import PROJECT_ROOT, Settings
from tests.integration.conftest import Engine

pytestmark = pytest.mark.integration

ARTIFACT = PROJECT_ROOT / "tests" / "artifacts" / "dashboard.png"
SEED, CUSTOMERS, DAYS = 7, 400, 3.0
TRAFFIC_S, RATE = 20.0, 300.0
EXPERIMENT = {"id": "policy-ab", "use_case": "default", "min_n": 20,
              "control": {"share": 0.2, "mode": "random"},
              "arms": [{"name": "thompson", "treatment": {"policy": "thompson"}},
                       {"name": "ucb", "treatment": {"policy": "ucb"}}]}


@pytest.fixture
def chromium_paths() -> tuple[str, str]:
    """Chromium and its driver; the test is skipped (never in CI) where they are missing."""
    found = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    missing = [name for name, path in found.items() if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the test extras)")
    if missing:
        reason = (f"no {', '.join(missing)}: scripts/setup.sh installs chromium and "
                  f"chromium-driver with apt-get when run as root")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found["chromium"], found["chromedriver"]


@pytest.fixture
def simulated_engine(kafka_bootstrap: str, tmp_path: Path):
    """A worker on fresh topics, with the demo's catalogue and an experiment in force."""
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({}).with_(
        bootstrap_servers=kafka_bootstrap, external_cluster=True, topic_prefix=f"dash{run}-",
        app_id=f"dash-{run}", partitions=2, data_dir=tmp_path / "state")
    create_topics(settings)
    engine = Engine(settings, tmp_path)
    config = orjson.loads((PROJECT_ROOT / "config" / "offers.json").read_bytes())
    engine.publish_config({**config, "version": "dashboard-it", "experiments": [EXPERIMENT]})
    engine.start()
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def dashboard(simulated_engine: Engine, tmp_path: Path):
    """``stream-app dashboard`` on a free port, as a process of its own; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(tmp_path / "dashboard.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "dashboard", "--port", str(port),
             "--refresh", "0.5", "--sim-seed", str(SEED), "--sim-customers", str(CUSTOMERS),
             "--sim-days", str(DAYS)],
            env=simulated_engine.env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "health", timeout=2) as r:
                    if orjson.loads(r.read())["status"] == "ok":
                        break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
            assert time.monotonic() < deadline, "the dashboard did not answer within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _browser(chromium: str, driver_path: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1440,1560"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


def _shown(driver, element_id: str) -> int | None:
    """The integer a tile shows (``1,234``), or None before the first figures."""
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.ID, element_id).text.replace(",", "").strip()
    return int(text) if text.isdigit() else None


def _wait(what: str, timeout_s: float, probe):
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.25)


class TopicCounts:
    """Decisions, outcome deltas and dead letters on the engine's topics, read from the start."""

    def __init__(self, settings: Settings) -> None:
        self.readers = {name: TopicReader(settings.bootstrap_servers, settings.topic(name),
                                          from_start=True)
                        for name in ("decisions", "delta-metrics", "dead-letter")}
        self.decisions = self.outcomes = self.dead_letters = 0

    def read(self) -> tuple[int, int, int]:
        self.decisions += len(self.readers["decisions"].poll(0.2, 5000))
        self.outcomes += sum(len(outcome_rows(orjson.loads(v)))
                             for _, v in self.readers["delta-metrics"].poll(0.2, 5000))
        self.dead_letters += len(self.readers["dead-letter"].poll(0.2, 5000))
        return self.decisions, self.outcomes, self.dead_letters

    def close(self) -> None:
        for r in self.readers.values():
            r.close()


def test_the_dashboard_shows_the_live_engine_in_chromium(chromium_paths, simulated_engine,
                                                         dashboard, tmp_path):
    engine = simulated_engine
    engine.send("decision-requests", "c-bad", b"not json")  # two dead letters, two reasons
    engine.send("outcomes", "c-0001", {"outcome_id": "oc-x", "decision_id": "dc-none",
                                       "customer_id": "c-0001", "ts": 1_764_000_000_000,
                                       "type": "clicked"})
    result: dict = {}

    def traffic() -> None:
        try:
            result["score"] = run_traffic(engine.settings, customers=CUSTOMERS,
                                          seconds=TRAFFIC_S, rate=RATE, seed=SEED, days=DAYS)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            result["error"] = exc

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    driver = _browser(*chromium_paths, tmp_path / "chromium-profile")
    counts = TopicCounts(engine.settings)
    try:
        driver.get(dashboard)
        # live: the figures move while the engine runs, with no reload
        first = _wait("the first decisions on the page", 45, lambda: _shown(driver, "decisions"))
        _wait("the page to update while the engine runs", 20,
              lambda: sender.is_alive() and (_shown(driver, "decisions") or 0) > first)
        sender.join(TRAFFIC_S + 90)
        assert "error" not in result, result.get("error")
        score = result["score"]
        assert score.decisions > 100 and score.requests == score.decisions

        # the page's totals are what is on the topics (once the page has caught up)
        def caught_up():
            on_topics = counts.read()
            on_page = tuple(_shown(driver, i) for i in ("decisions", "outcomes", "dead-letters"))
            return on_topics if on_page == on_topics else None

        decisions, outcomes, dead_letters = _wait("the page to show the topics' totals", 30,
                                                  caught_up)
        assert decisions == score.decisions and outcomes > 0 and dead_letters >= 2

        # the oracle figure is the traffic tool's own score of the same decisions
        summary = driver.execute_script(
            "return fetch('/api/summary').then((r) => r.json())")
        chosen, best = score.chosen_prob, score.oracle_prob
        assert summary["oracle"]["decisions"] == len(score.trace)
        assert summary["oracle"]["of_oracle"] == pytest.approx(chosen / best, rel=1e-9)
        tile = driver.find_element("id", "of-oracle").text
        assert abs(int(tile.split()[0]) - 100 * chosen / best) <= 0.5 + 1e-9, tile
        assert {row["name"] for row in summary["arms"]} == {"control", "thompson", "ucb"}
        assert summary["dead_letters"]["by_reason"][0]["count"] >= 1

        # every chart has lines on it: pixels that are neither blank nor the grid's grey
        for chart in ("chart-learning", "chart-policy", "chart-arm", "chart-exposure"):
            inked = driver.execute_script(
                "const c = document.getElementById(arguments[0]);"
                "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                "let n = 0; for (let i = 0; i < d.length; i += 4)"
                "  if (d[i + 3] > 200 && Math.max(d[i], d[i + 1], d[i + 2]) -"
                "      Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;"
                "return n;", chart)
            assert inked > 200, f"{chart}: {inked} coloured pixels"

        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACT))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        counts.close()
        driver.quit()
