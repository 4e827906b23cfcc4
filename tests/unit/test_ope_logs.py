"""The JSONL bandit-log format and the adapter from the engine's own decisions and outcomes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_app.evaluation import (
    BanditLogError,
    LoggedBandit,
    engine_records,
    ips,
    read_jsonl,
    write_jsonl,
)

GOOD = {"context": {"page": "home", "n": 2, "vip": True, "x": None}, "action": "a",
        "reward": 1, "propensity": 0.25, "actions": ["a", "b"]}  # fmt: skip


def _line(**changes) -> str:
    rec = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            rec.pop(key)
        else:
            rec[key] = value
    return json.dumps(rec)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (_line(action=...), "action must be a non-empty string"),
        (_line(action=""), "action must be a non-empty string"),
        (_line(reward="1"), "reward must be a finite number"),
        (_line(reward=True), "reward must be a finite number"),
        (_line(propensity=0), "propensity must be in (0, 1]"),
        (_line(propensity=1.5), "propensity must be in (0, 1]"),
        (_line(propensity=...), "propensity must be in (0, 1]"),
        (_line(context=[1]), "context must be an object"),
        (_line(context={"nested": {"a": 1}}), "context values must be"),
        (_line(actions=["b"]), "is not among actions"),
        (_line(actions="ab"), "actions must be a list"),
    ],
)
def test_bad_line_is_rejected_with_its_line_number(bad, reason):
    lines = [_line(), "", _line(action="b", reward=0), bad, _line()]
    with pytest.raises(BanditLogError) as err:
        read_jsonl(lines)
    assert str(err.value).startswith("line 4: ") and reason in str(err.value)


def test_skip_mode_keeps_good_lines_and_lists_the_bad(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [_line(), _line(propensity=-1), "", "oops", _line(action="b")]
    path.write_text("\n".join(lines) + "\n")
    data = read_jsonl(path, on_error="skip")
    assert len(data) == 2
    assert [e.split(":")[0] for e in data.errors] == ["line 2", "line 4"]
    with pytest.raises(BanditLogError, match="^line 2: propensity"):
        read_jsonl(path)


def test_round_trip_and_action_sets(tmp_path):
    recs = [
        dict(GOOD),
        {"context": {}, "action": "c", "reward": 0.0, "propensity": 1.0, "actions": ["c"]},
        {"context": {"page": "x"}, "action": "b", "reward": 0.5, "propensity": 0.5},
    ]
    path = tmp_path / "out.jsonl"
    assert write_jsonl(recs, path) == 3
    data = read_jsonl(path)
    assert data.action_space == ("a", "b", "c")
    T, F = True, False
    assert data.available.tolist() == [[T, T, F], [F, F, T], [T, T, T]]
    assert data.rewards.tolist() == [1.0, 0.0, 0.5]
    assert data.propensities.tolist() == [0.25, 1.0, 0.5]
    again = LoggedBandit.from_records(data.records())
    np.testing.assert_array_equal(again.available, data.available)
    assert again.contexts == data.contexts
    with pytest.raises(BanditLogError):
        write_jsonl([{"action": "a"}], tmp_path / "bad.jsonl")


def _decision(i: int, offer: str | None, p: float | None = 0.5, ts: int = 100) -> dict:
    return {"decision_id": f"d{i}", "request_id": f"r{i}", "customer_id": "c1", "ts": ts,
            "use_case": "default", "channel": "app", "action": "offer" if offer else "no_action",
            "offer_id": offer, "ranked": [{"offer_id": "a", "score": 0.6},
                                          {"offer_id": "b", "score": 0.4}],
            "propensity": p, "propensity_se": 0.0, "predicted": 0.1, "policy": "thompson"}


def _outcome(i: int, kind: str, value: float = 0.0) -> dict:
    return {"outcome_id": f"o{i}-{kind}", "decision_id": f"d{i}", "customer_id": "c1", "ts": 200,
            "type": kind, "value": value}


def test_engine_decisions_and_outcomes_become_records():
    decisions = [_decision(1, "a"), _decision(2, "b"), _decision(3, "a"), _decision(4, None),
                 _decision(5, "a", p=0.0), _decision(6, "b", ts=900), _decision(7, "c")]
    outcomes = [_outcome(1, "clicked"), _outcome(1, "converted", 7.0), _outcome(2, "dismissed"),
                _outcome(6, "accepted", 2.0), _outcome(99, "clicked")]
    requests = [{"request_id": "r1", "context": {"page": "travel"}}]
    recs = engine_records(decisions, outcomes, requests, cutoff_ms=900)
    assert [r["action"] for r in recs] == ["a", "b", "a", "c"]  # no_action, p=0, late: left out
    assert [r["reward"] for r in recs] == [1.0, 0.0, 0.0, 0.0]  # d3: no outcome = ignored
    assert recs[0]["context"] == {"page": "travel", "channel": "app", "use_case": "default"}
    assert recs[3]["actions"] == ["a", "b", "c"]
    values = engine_records(decisions, outcomes, reward="value")
    assert [r["reward"] for r in values] == [7.0, 0.0, 0.0, 2.0, 0.0]
    data = LoggedBandit.from_records(recs)
    # always-"a" under a 0.5 / 0.5 logger: (1 / 0.5 * 1 + 1 / 0.5 * 0) / 4 rows
    always_a = lambda ctx, actions: [float(x == "a") for x in actions]  # noqa: E731
    assert ips(data, always_a).value == pytest.approx(0.5)
