"""``stream-app evaluate`` on generated logs whose truth is known by hand, and on bad input."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream_app.cli import main
from stream_app.tools.ranges import record_of

ACTIONS = ("a", "b", "c")
MU = {"home": (0.1, 0.3, 0.5), "travel": (0.6, 0.2, 0.1)}  # true response rates
LOGGING = {"home": (0.6, 0.3, 0.1), "travel": (0.2, 0.2, 0.6)}  # prefers the worse offers
TARGET = {"key": "page", "map": {"home": "c", "travel": "a"}, "epsilon": 0.1}
# truth of TARGET, by hand: home 0.9 * 0.5 + 0.1 * 0.3 = 0.48; travel 0.9 * 0.6 + 0.1 * 0.3 = 0.57
TRUTH = 0.525


def bandit_log(path, n: int, seed: int = 1) -> float:
    """Write a logged bandit data set; returns the logging policy's true value."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        page = ("home", "travel")[rng.integers(2)]
        k = rng.choice(3, p=LOGGING[page])
        lines.append(orjson.dumps({"context": {"page": page}, "action": ACTIONS[k],
                                   "reward": float(rng.random() < MU[page][k]),
                                   "propensity": LOGGING[page][k]}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return 0.5 * np.dot(MU["home"], LOGGING["home"]) + 0.5 * np.dot(MU["travel"], LOGGING["travel"])


def run_json(capsys, *argv) -> dict:
    assert main(["evaluate", *argv, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_every_estimate_covers_a_hand_derived_truth(tmp_path, capsys):
    logged_truth = bandit_log(tmp_path / "log.jsonl", 8000)
    out = run_json(capsys, "--logs", str(tmp_path / "log.jsonl"), "--policy", "by_context",
                   "--params", orjson.dumps(TARGET).decode())
    rows = {r["method"]: r for r in out["estimates"]}
    assert set(rows) == {"ips", "snips", "dr", "replay", "logging policy (on-policy)"}
    for name in ("ips", "snips", "dr", "replay"):
        assert rows[name]["ci_low"] <= TRUTH <= rows[name]["ci_high"], rows[name]
        assert rows[name]["ci_high"] - rows[name]["ci_low"] < 0.1
    assert rows["replay"]["n_matched"] < out["n_logged"] == 8000
    # the logged average answers a different question, and the estimators are not fooled by it
    assert abs(logged_truth - TRUTH) > 0.2
    assert rows["logging policy (on-policy)"]["ci_low"] <= logged_truth <= rows[
        "logging policy (on-policy)"]["ci_high"]


def test_table_output_is_readable(tmp_path, capsys):
    bandit_log(tmp_path / "log.jsonl", 300)
    assert main(["evaluate", "--logs", str(tmp_path / "log.jsonl"), "--policy", "uniform"]) == 0
    text = capsys.readouterr().out
    assert "| method | value | se | ci_low | ci_high | n | ess | n_matched |" in text
    assert "| snips |" in text and "| replay |" in text


def test_an_engine_policy_can_be_the_target(tmp_path, capsys):
    bandit_log(tmp_path / "log.jsonl", 600)
    out = run_json(capsys, "--logs", str(tmp_path / "log.jsonl"), "--policy", "thompson",
                   "--draws", "10")
    values = [r["value"] for r in out["estimates"]]
    assert out["target"] == "thompson" and all(0.0 <= v <= 1.0 for v in values)
    # having learned from the log, Thompson mostly plays the offer best on average (a: 0.35,
    # c: 0.3, b: 0.25), so it should beat uniform (0.3167) by its DR estimate
    dr = next(r for r in out["estimates"] if r["method"] == "dr")
    assert dr["value"] > 0.3


def test_engine_logs_are_joined_and_read(tmp_path, capsys):
    recs = []
    for i in range(40):
        offer = ACTIONS[i % 3]
        recs.append(record_of("replay-x-decisions", 0, i, 0, b"c1", orjson.dumps({
            "decision_id": f"d{i}", "request_id": f"r{i}", "customer_id": f"c{i % 5}", "ts": i,
            "use_case": "default", "channel": "app", "action": "offer", "offer_id": offer,
            "propensity": 1 / 3, "ranked": [{"offer_id": a, "score": 0.1} for a in ACTIONS]})))
        if i % 4 == 0:
            recs.append(record_of("outcomes", 0, i, 0, b"c1", orjson.dumps({
                "outcome_id": f"o{i}", "decision_id": f"d{i}", "customer_id": f"c{i % 5}",
                "ts": i + 1, "type": "clicked"})))
    recs.append(record_of("decisions", 0, 99, 0, b"c1", orjson.dumps(
        {"decision_id": "dn", "request_id": "rn", "action": "no_action"})))
    path = tmp_path / "engine.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    out = run_json(capsys, "--logs", str(path), "--policy", "uniform")
    assert out["n_logged"] == 40 and out["actions"] == list(ACTIONS)
    logged = next(r for r in out["estimates"] if r["method"].startswith("logging"))
    assert logged["value"] == pytest.approx(10 / 40)
    ips = next(r for r in out["estimates"] if r["method"] == "ips")
    assert ips["value"] == pytest.approx(10 / 40)  # uniform target, uniform logger: weights 1


@pytest.mark.parametrize("content, argv, message", [
    (b'{"context": {}, "action": "a", "reward": 1, "propensity": 0.5}\n{nope\n', [],
     "line 2: not valid JSON"),
    (b'{"context": {}, "action": "a", "reward": 1, "propensity": 0}\n', [],
     "line 1: propensity must be in (0, 1]"),
    (b'{"context": {}, "action": "a", "reward": 1, "propensity": 0.5}\n', ["--policy", "nope"],
     "unknown policy 'nope'"),
    (b'{"context": {}, "action": "a", "reward": 1, "propensity": 0.5}\n',
     ["--policy", "static", "--params", "[1]"], "--params must be a JSON object"),
    (b'{"topic": "decisions", "value": {"action": "no_action"}}\n', [],
     "no usable logged decisions"),
])
def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys, content, argv, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    argv = argv or ["--policy", "uniform"]
    assert main(["evaluate", "--logs", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--logs", str(tmp_path / "none.jsonl"), "--policy", "uniform"]) == 2
    assert "cannot read" in capsys.readouterr().err
