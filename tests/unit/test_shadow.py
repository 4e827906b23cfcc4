"""Shadow challengers: IPS / SNIPS estimates and their intervals on synthetic logged data with a
known truth, betting confidence sequences that hold at every look, and the promotion rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stream_app.experiments import PromotionWatch, ShadowEstimator, shadow_estimates, shadow_terms
from stream_app.experiments.betting import BettingLowerBound
from stream_app.experiments.shadow import Estimate

ALPHA = 0.05


class World:
    """Contexts x offers with known response rates, a logging (champion) policy and a challenger.

    True values are exact expectations over the uniform context distribution:
    ``V(pi) = mean_x sum_a pi(a|x) mu(x, a)``.
    """

    def __init__(self, seed: int, temperature: float, contexts: int = 4, offers: int = 5):
        rng = np.random.default_rng(seed)
        self.mu = rng.uniform(0.05, 0.4, (contexts, offers))
        logits = rng.normal(0, 1, (contexts, offers)) / temperature
        self.p_log = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        self.p_new = np.full((contexts, offers), 0.3 / offers)  # mostly the best offer
        self.p_new[np.arange(contexts), self.mu.argmax(1)] += 0.7
        self.v_new = float((self.p_new * self.mu).sum(1).mean())
        self.v_log = float((self.p_log * self.mu).sum(1).mean())

    def log(self, rng, shape):
        """Logged (propensity, challenger probability, reward) arrays of ``shape``."""
        x = rng.integers(0, self.mu.shape[0], shape)
        a = (rng.random(shape)[..., None] > self.p_log[x].cumsum(-1)).sum(-1)
        a = np.minimum(a, self.mu.shape[1] - 1)
        r = (rng.random(shape) < self.mu[x, a]).astype(float)
        return self.p_log[x, a], self.p_new[x, a], r


MILD = World(seed=123, temperature=3.0)  # propensities >= ~0.08: weights at most ~10
WILD = World(seed=123, temperature=1.0)  # propensities down to ~0.01: weights up to ~80


def test_worlds_are_what_the_tests_claim():
    assert MILD.p_log.min() > 0.07 and WILD.p_log.min() < 0.01
    assert MILD.v_new > MILD.v_log + 0.05  # the challenger is really better
    assert np.allclose(MILD.p_new.sum(1), 1) and np.allclose(MILD.p_log.sum(1), 1)


def test_streaming_ips_and_snips_cover_the_challengers_true_value():
    rng = np.random.default_rng(1)
    p, q, r = MILD.log(rng, 20_000)
    sh = ShadowEstimator("greedy-ish", champion="thompson")
    sh.add_many(p, q, r)
    est = sh.estimates()
    w = q / p
    assert est["ips"].value == pytest.approx(np.mean(w * r))  # independent recomputation
    assert est["snips"].value == pytest.approx(np.sum(w * r) / np.sum(w))
    assert est["champion"].value == pytest.approx(r.mean())
    for name in ("ips", "snips"):
        e = est[name]
        assert e.ci_low <= MILD.v_new <= e.ci_high, name
        assert e.cs_low <= MILD.v_new <= e.cs_high, name
        assert e.cs_low <= e.ci_low and e.ci_high <= e.cs_high  # anytime costs width
    assert est["champion"].ci_low <= MILD.v_log <= est["champion"].ci_high
    assert sh.ess == pytest.approx(np.sum(w) ** 2 / np.sum(w * w))


def test_normal_intervals_cover_at_close_to_the_nominal_rate():
    rng = np.random.default_rng(2)
    runs = 300
    sums = np.stack([shadow_terms(*MILD.log(rng, 5000)).sum(0) for _ in range(runs)])
    est = shadow_estimates(sums, ALPHA)
    for name, truth in (("ips", MILD.v_new), ("snips", MILD.v_new), ("champion", MILD.v_log)):
        _, _, lo, hi = est[name]
        coverage = np.mean((lo <= truth) & (truth <= hi))
        assert coverage >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / runs), name


def test_betting_sequences_hold_at_every_look_even_with_heavy_weights():
    """With propensities down to 1% the weights are heavy-tailed; the betting sequence must still
    cover the truth at all 2000 looks in at least 1 - alpha of the runs."""
    rng = np.random.default_rng(3)
    runs, looks = 200, 2000
    p, q, r = WILD.log(rng, (runs, looks))
    w = q / p
    assert w.max() > 30
    bets = BettingLowerBound(ALPHA / 2, shape=(runs, 2))
    missed = np.zeros(runs, bool)
    for t in range(looks):
        bets.update(np.stack([w[:, t] * r[:, t], w[:, t] * (1 - r[:, t])], axis=-1))
        low = bets.lower()
        missed |= (low[:, 0] > WILD.v_new) | (1 - low[:, 1] < WILD.v_new)
    assert missed.mean() <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert np.mean(1 - low[:, 1] - low[:, 0]) < 0.6  # and it does learn something


def test_vectorised_betting_equals_separate_runs_and_the_estimator_uses_it():
    rng = np.random.default_rng(4)
    p, q, r = MILD.log(rng, (3, 400))
    together = BettingLowerBound(0.025, shape=(3,))
    apart = [BettingLowerBound(0.025) for _ in range(3)]
    shadows = [ShadowEstimator("c") for _ in range(3)]
    for t in range(400):
        together.update(q[:, t] / p[:, t] * r[:, t])
        for i in range(3):
            apart[i].update(q[i, t] / p[i, t] * r[i, t])
            shadows[i].add(p[i, t], q[i, t], r[i, t])
    assert together.lower().tolist() == [float(b.lower()) for b in apart]
    assert [s.estimates()["ips"].cs_low for s in shadows] == together.lower().tolist()
    assert np.allclose(shadows[0]._sums, shadow_terms(p[0], q[0], r[0]).sum(0))


def test_betting_bound_is_monotone_in_the_grid_and_validates_input():
    bet = BettingLowerBound(0.05)
    for x in np.random.default_rng(5).exponential(0.5, 3000):
        bet.update(x)
    assert np.all(np.diff(bet.log_wealth) <= 1e-9)  # wealth falls as the tested mean rises
    assert 0.4 < float(bet.lower()) < 0.5
    with pytest.raises(ValueError, match=">= 0"):
        bet.update(-1.0)


def test_snapshot_codec_and_input_checks():
    rng = np.random.default_rng(6)
    sh = ShadowEstimator("ucb", champion="thompson")
    sh.add_many(*MILD.log(rng, 1000))
    snap = sh.snapshot(ts_ms=99, use_case="default")
    assert snap["kind"] == "shadow" and snap["n"] == 1000 and snap["ts"] == 99
    assert snap["champion"]["policy"] == "thompson" and snap["challenger"]["policy"] == "ucb"
    assert set(snap["challenger"]["snips"]) == {"value", "se", "ci", "cs"}
    json.dumps(snap, allow_nan=False)
    json.dumps(ShadowEstimator("x").snapshot(0), allow_nan=False)  # empty: nulls, no NaN
    back = ShadowEstimator.decode(sh.encode(), "ucb", champion="thompson")
    assert back.snapshot(99, "default") == snap
    assert ShadowEstimator.decode(None, "x").n == 0
    with pytest.raises(ValueError, match="cannot be read"):
        ShadowEstimator.decode(sh.encode(), "ucb", grid_size=100)
    for bad in ((0.0, 0.5, 1.0), (0.5, 1.5, 1.0), (0.5, 0.5, 2.0)):
        with pytest.raises(ValueError):
            sh.add(*bad)


# -- promotion ---------------------------------------------------------------------------------
class Fixed:
    """A stand-in estimator whose bounds the test sets."""

    n = 10_000

    def __init__(self):
        self.beats = True

    def estimates(self):
        champ = Estimate(0.1, 0, 0, 0, 0.08, 0.12)
        chall = Estimate(0.3, 0, 0, 0, 0.25 if self.beats else 0.11, 0.35)
        return {"champion": champ, "ips": chall, "snips": chall}


def test_promotion_needs_the_condition_continuously_for_the_duration_in_event_time():
    watch, est = PromotionWatch(duration_s=600, min_n=100), Fixed()
    assert not watch.observe(est, 1_000_000)
    assert not watch.observe(est, 1_599_999)  # 599.999 s
    assert watch.observe(est, 1_600_000)
    est.beats = False
    assert not watch.observe(est, 1_700_000) and watch.since_ms is None  # the clock restarts
    est.beats = True
    assert not watch.observe(est, 1_800_000)
    assert not watch.observe(est, 2_399_999) and watch.observe(est, 2_400_000)
    few = Fixed()
    few.n = 50
    assert not PromotionWatch(duration_s=0, min_n=100).observe(few, 0)
    restored = PromotionWatch.decode(watch.encode(), duration_s=600, min_n=100)
    assert restored.since_ms == 1_800_000 and restored.observe(est, 2_400_000)
    assert PromotionWatch.decode(None, 600).since_ms is None


def test_a_better_challenger_is_promoted_and_a_clone_is_not():
    rng = np.random.default_rng(7)
    p, q, r = MILD.log(rng, 4000)
    sh, watch = ShadowEstimator("greedy-ish"), PromotionWatch(duration_s=300, min_n=500)
    beats, due = [], []
    for t in range(4000):  # one logged decision per second of event time
        sh.add(p[t], q[t], r[t])
        e = sh.estimates()
        beats.append(sh.n >= 500 and e["snips"].cs_low > e["champion"].cs_high)
        due.append(watch.observe(sh, t * 1000))
    assert any(due)
    first = due.index(True)
    # independently: the condition held at each of the 301 looks from first - 300 to first
    assert all(beats[first - 300 : first + 1]) and not all(beats[first - 301 : first + 1])
    for seed in range(8):  # the champion against itself: never promoted
        rng = np.random.default_rng(100 + seed)
        p, _, r = MILD.log(rng, 1500)
        clone, watch = ShadowEstimator("clone"), PromotionWatch(duration_s=0, min_n=100)
        for t in range(1500):
            clone.add(p[t], p[t], r[t])
            assert not watch.observe(clone, t * 1000)
