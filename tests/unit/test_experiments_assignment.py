"""Experiment configuration and assignment: sticky, balanced, independent across experiments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from stream_app.core.catalogue import ConfigError
from stream_app.experiments import (
    assign,
    assign_index,
    assignments_for,
    bucket,
    buckets,
    parse_experiment,
    parse_experiments,
)

CUSTOMERS = [f"cust-{i}" for i in range(100_000)]
AB = {"id": "ab", "arms": [{"name": "A", "treatment": {"policy": "thompson"}},
                           {"name": "B", "treatment": {"policy": "ucb"}}]}  # fmt: skip


# -- configuration -----------------------------------------------------------------------------
def test_control_share_comes_first_and_arms_split_the_rest_by_weight():
    arms = [{"name": "A", "weight": 1}, {"name": "B", "weight": 3}]
    exp = parse_experiment({"id": "e", "control": {"share": 0.1, "mode": "random"}, "arms": arms})
    assert exp.arm_names == ("control", "A", "B")
    assert exp.shares.tolist() == pytest.approx([0.1, 0.9 * 0.25, 0.9 * 0.75])
    assert exp.arms[0].control and dict(exp.arms[0].treatment) == {"control": "random"}
    assert exp.baseline == 0 and parse_experiment(AB).baseline == 0


def test_factors_build_a_full_factorial():
    exp = parse_experiment({"id": "mvt", "factors": {"framing": ["neutral", "urgency"],
                                                     "message": ["m1", "m2", "m3"]}})  # fmt: skip
    assert len(exp.arms) == 6 and exp.shares.tolist() == pytest.approx([1 / 6] * 6)
    assert exp.arms[4].name == "framing=urgency|message=m2"
    assert dict(exp.arms[4].treatment) == {"framing": "urgency", "message": "m2"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"id": "e", "arms": [{"name": "A"}]}, "at least two arms"),
        ({"id": "e", "arms": [{"name": "A"}], "factors": {"f": [1]}}, "either 'arms' or 'factors'"),
        ({"id": "e", "arms": [{"name": "A"}, {"name": "A"}]}, "unique"),
        ({"id": "e", "arms": [{"name": "A"}, {"name": "control"}], "control": {}}, "unique"),
        ({"id": "e", "arms": [{"name": "A", "weight": 0}, {"name": "B"}]}, "weight must be > 0"),
        ({"id": "e", "arms": [{"name": "A"}], "control": {"share": 1.0}}, "share must be"),
        ({"id": "e", "arms": [{"name": "A"}], "control": {"mode": "x"}}, "control mode"),
        ({"id": "e", "factors": {"f": []}}, "non-empty lists"),
        ({**AB, "alpha": 0.7}, "alpha must be"),
        ({**AB, "guardrails": [{"metric": "opt_out"}]}, "needs max_rate or max_increase"),
        ({**AB, "guardrails": [{"metric": "x", "max_rate": -1}]}, "must be a number >= 0"),
        ({**AB, "min_n": 1}, "min_n"),
        ({**AB, "enabled": "no"}, "enabled"),
        ({"arms": []}, "non-empty string id"),
    ],
)
def test_bad_experiments_raise_one_line(doc, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_experiment(doc)
    assert "\n" not in str(info.value)


def test_duplicate_experiment_ids_are_refused():
    with pytest.raises(ConfigError, match="defined twice"):
        parse_experiments([AB, AB])


# -- assignment ----------------------------------------------------------------------------------
def test_bucket_is_uniform():
    u = buckets("salt", CUSTOMERS[:20_000])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 0.01


def test_assignment_is_sticky_across_calls_and_config_reloads():
    exp = parse_experiment(AB)
    again = parse_experiment(dict(AB))  # a fresh object, as after a config reload or restart
    first = [assign(exp, c).arm for c in CUSTOMERS[:2000]]
    assert first == [assign(again, c).arm for c in CUSTOMERS[:2000]]
    assert first == [assign(exp, c).arm for c in CUSTOMERS[:2000]]
    assert assign_index(exp, CUSTOMERS[:2000]).tolist() == [("A", "B").index(a) for a in first]


def test_assignment_follows_the_bucket_and_cumulative_shares():
    arms = [{"name": "A"}, {"name": "B"}]
    exp = parse_experiment({"id": "e", "control": {"share": 0.2}, "arms": arms})
    for c in CUSTOMERS[:500]:
        u = bucket("e", c)
        expected = "control" if u < 0.2 else ("A" if u < 0.6 else "B")
        assert assign(exp, c).arm == expected


def test_fifty_fifty_is_balanced_within_one_percent():
    idx = assign_index(parse_experiment(AB), CUSTOMERS)
    share_b = idx.mean()
    assert 0.49 <= share_b <= 0.51  # binomial sd is 0.0016: +-1% is over 6 sd
    # and the counts are statistically compatible with 50/50
    assert stats.binomtest(int(idx.sum()), len(idx), 0.5).pvalue > 0.001


def test_unequal_weights_and_control_share_are_respected():
    arms = [{"name": "A", "weight": 1}, {"name": "B", "weight": 2}]
    exp = parse_experiment({"id": "w", "control": {"share": 0.1}, "arms": arms})
    counts = np.bincount(assign_index(exp, CUSTOMERS), minlength=3)
    assert counts / counts.sum() == pytest.approx([0.1, 0.3, 0.6], abs=0.01)
    assert stats.chisquare(counts, exp.shares * counts.sum()).pvalue > 0.001


def test_experiments_are_independent_of_each_other():
    first = assign_index(parse_experiment(AB), CUSTOMERS)
    second = assign_index(parse_experiment({**AB, "id": "another"}), CUSTOMERS)
    table = np.zeros((2, 2))
    np.add.at(table, (first, second), 1)
    assert stats.chi2_contingency(table, correction=False).pvalue > 0.01
    # the check has teeth: two experiments sharing a salt are perfectly dependent
    same = assign_index(parse_experiment({**AB, "id": "another", "salt": "ab"}), CUSTOMERS)
    assert np.array_equal(same, first)


def test_a_new_salt_reshuffles_about_half():
    old = assign_index(parse_experiment(AB), CUSTOMERS[:20_000])
    new = assign_index(parse_experiment({**AB, "salt": "ab-restart"}), CUSTOMERS[:20_000])
    assert 0.48 < np.mean(old != new) < 0.52


def test_assignments_for_a_request_pick_the_experiments_of_its_use_case():
    exps = parse_experiments([
        {**AB, "id": "z-all"},
        {**AB, "id": "a-retention", "use_case": "retention"},
        {**AB, "id": "m-growth", "use_case": "growth"},
        {**AB, "id": "off", "enabled": False},
    ])  # fmt: skip
    got = assignments_for(exps, "cust-1", "retention")
    assert [a.experiment_id for a in got] == ["a-retention", "z-all"]
    d = got[0].as_dict()
    assert d["id"] == "a-retention" and d["arm"] in ("A", "B") and d["control"] is False
    assert d["treatment"] == {"policy": "thompson" if d["arm"] == "A" else "ucb"}
