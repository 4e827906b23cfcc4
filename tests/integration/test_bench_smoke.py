"""The benchmark harness end to end on the session broker: tiny load, sane report structure.
No timing targets: this machine's speed is not what the test is about."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_app.bench import BenchParams, run_bench

pytestmark = pytest.mark.integration


def test_bench_reports_throughput_latency_state_and_restart(kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    params = BenchParams(
        customers=60, bulk_customers=200, restart_from_changelog=True, offers=3, partitions=2, payload_bytes=200, rate=40.0, seconds=3.0,
        load_steps=(20.0,), step_seconds=2.0, outcome_fraction=0.5, attribution_s=2.0,
        window=50, serve_after_restart_s=2.0, out=tmp_path / "out", name="smoke", bootstrap_servers=kafka_bootstrap,
        cache_dir=tmp_path / "cache", drain_timeout_s=90.0,
    )
    report = run_bench(params, progress=lambda _: None)

    phases = {ph["tag"]: ph for ph in report["phases"]}
    assert set(phases) == {"p", "m", "s0", "a"}  # "a": serving again after the local restart
    assert phases["p"]["requests"] == 60  # one request per customer
    for ph in phases.values():
        assert ph["decisions"] == ph["requests"] > 0
        assert ph["throughput"] > 0
        lat = ph["latency_e2e_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert phases["m"]["outcomes"] > 0  # half the offers were answered

    assert report["cold_start_s"] > 0
    # bulk state: the 60 preloaded customers' rows cloned to customers 60..199 via the changelogs
    bulk = report["bulk"]
    assert bulk["customers"] == 140 and bulk["records"] == 140  # one value per customer
    assert bulk["to_serving_s"] > 0
    local, wiped = report["restarts"]
    assert local["to_serving_s"] > 0 and local["stop_s"] >= 0
    assert report["state"]["customers_with_state"] == 200  # the worker read the cloned rows
    assert wiped["customers_recovered"] == 200  # data dir wiped: all back from the changelogs
    assert report["state"]["logical_bytes_per_customer"] > 0
    assert report["rss"]["worker_peak_mb"] > 0 and report["rss"]["after_restart_serving_mb"] > 0
    assert report["lag"]["samples"] and report["lag"]["max_in_flight"] >= 1
    assert report["machine"]["cores"] >= 1

    out = tmp_path / "out"
    assert orjson.loads((out / "smoke.json").read_bytes())["params"]["customers"] == 60
    md = (out / "smoke.md").read_text()
    assert "| phase |" in md and "restart" in md
    assert not (tmp_path / "cache" / "bench-state").exists() or not any(
        (tmp_path / "cache" / "bench-state").iterdir())  # the sandbox's state is removed
