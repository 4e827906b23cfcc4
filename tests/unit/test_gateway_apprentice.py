"""Apprentice mode's switch: planted engines better and worse than the baseline, many seeds."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.gateway.apprentice import BASELINE, ENGINE, Apprentice, ApprenticeRule


def run(engine_rate: float, baseline_rate: float, rule: ApprenticeRule, events: int,
        seed: int) -> Apprentice:
    """Events until the switch or ``events``: each served by its share, reward drawn from the
    planted response rate of whoever served it."""
    rng = np.random.default_rng(seed)
    app = Apprentice("checkout", rule)
    for i in range(events):
        arm = app.arm(f"s{seed}-ev{i}")
        if arm is None:
            break
        rate = engine_rate if arm == ENGINE else baseline_rate
        app.record(arm, float(rng.random() < rate), now_ms=i)
    return app


def test_the_share_of_an_event_is_stable_and_close_to_explore():
    rule = ApprenticeRule(explore=0.2)
    a, b = Apprentice("checkout", rule), Apprentice("checkout", rule)
    arms = [a.arm(f"ev-{i}") for i in range(20_000)]
    assert arms == [b.arm(f"ev-{i}") for i in range(20_000)]  # another gateway picks the same
    share = arms.count(ENGINE) / len(arms)
    assert abs(share - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20_000)
    assert set(arms) == {ENGINE, BASELINE}


def test_a_clearly_better_engine_takes_over_and_only_after_enough_evidence():
    rule = ApprenticeRule(margin=0.02, explore=0.2, alpha=0.05, min_n=200)
    for seed in range(3):
        app = run(engine_rate=0.30, baseline_rate=0.10, rule=rule, events=20_000, seed=seed)
        status = app.status()
        assert app.switched, status
        assert status["mode"] == "online" and app.arm("any") is None
        # not before min_n rewards in each share, and the bounds say why it switched
        assert status["engine"]["rewards"] >= 200 and status["baseline"]["rewards"] >= 200
        assert status["engine"]["low"] - status["baseline"]["high"] > rule.margin
        assert status["engine"]["low"] <= 0.30 and status["baseline"]["high"] >= 0.10


def test_a_worse_engine_never_takes_over():
    rule = ApprenticeRule(margin=0.0, explore=0.3, alpha=0.05, min_n=50)
    for seed in range(20):
        app = run(engine_rate=0.08, baseline_rate=0.12, rule=rule, events=2_000, seed=seed)
        assert not app.switched, (seed, app.status())
        assert app.arm("next") in (ENGINE, BASELINE)


def test_an_engine_only_as_good_as_the_baseline_does_not_beat_a_margin():
    rule = ApprenticeRule(margin=0.02, explore=0.5, alpha=0.05, min_n=50)
    switched = sum(run(0.2, 0.2, rule, 2_000, seed).switched for seed in range(12))
    assert switched == 0


def test_rewards_after_the_switch_are_not_counted():
    rule = ApprenticeRule(margin=0.0, explore=0.5, alpha=0.05, min_n=5)
    app = Apprentice("checkout", rule)
    i = 0
    while not app.switched:
        app.record(ENGINE, 1.0, i)
        app.record(BASELINE, 0.0, i)
        i += 1
    before = app.status()
    assert app.record(BASELINE, 1.0, i + 1) is False
    assert app.status() == before
    assert before["switched_at_ms"] == i - 1


@pytest.mark.parametrize("bad", [{"explore": 0.0}, {"explore": 1.0}, {"alpha": 0.0},
                                 {"margin": -0.1}, {"min_n": 0}])
def test_rules_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        ApprenticeRule(**bad)
