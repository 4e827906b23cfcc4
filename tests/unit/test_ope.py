"""Off-policy estimators and replay, checked against truths derived by hand or by the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.evaluation import (
    ActionMean,
    LoggedBandit,
    RidgeReward,
    doubly_robust,
    evaluate,
    ips,
    replay,
    snips,
    target_matrix,
)
from stream_app.evaluation.agents import EpsilonAgent, RandomAgent, StaticAgent
from stream_app.evaluation.benchmark import run
from stream_app.simulator import Population, Simulation

# A two-context, three-action world. Truth of TARGET, by hand:
# 0.5 * mu[0, c] + 0.5 * (0.8 * mu[1, a] + 0.2 * mu[1, b]) = 0.5 * 0.5 + 0.5 * 0.52 = 0.51
MU = np.array([[0.1, 0.3, 0.5], [0.6, 0.2, 0.1]])
LOGGING = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])  # prefers the worse actions
TARGET = np.array([[0.0, 0.0, 1.0], [0.8, 0.2, 0.0]])
TRUTH = 0.51


def synthetic(n: int, seed: int, logging: np.ndarray = LOGGING) -> tuple[LoggedBandit, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n)
    u = rng.random(n)[:, None]
    a = (u > np.cumsum(logging[x], axis=1)).sum(axis=1)
    r = (rng.random(n) < MU[x, a]).astype(float)
    records = [{"context": {"x": int(xi)}, "action": "abc"[ai], "reward": float(ri),
                "propensity": float(logging[xi, ai])} for xi, ai, ri in zip(x, a, r)]  # fmt: skip
    data = LoggedBandit.from_records(records)
    order = [data.action_space.index(s) for s in "abc"]
    pi = np.zeros((n, 3))
    pi[:, order] = TARGET[x]
    return data, pi


def test_estimators_cover_a_hand_derived_truth():
    data, pi = synthetic(20_000, seed=1)
    naive = data.rewards.mean()
    assert abs(naive - TRUTH) > 0.1  # the logged average is no answer
    for est in (ips(data, pi), snips(data, pi), doubly_robust(data, pi),
                doubly_robust(data, pi, model=ActionMean())):  # fmt: skip
        assert est.covers(TRUTH), est
        assert est.ci_high - est.ci_low < 0.05
        assert 0 < est.ess < len(data)


def test_ips_and_snips_by_hand():
    data = LoggedBandit.from_records([
        {"context": {}, "action": "a", "reward": 1.0, "propensity": 0.5},
        {"context": {}, "action": "b", "reward": 0.0, "propensity": 0.5},
        {"context": {}, "action": "a", "reward": 0.0, "propensity": 0.25},
    ])  # fmt: skip
    always_a = np.array([[1.0, 0.0]] * 3)  # weights 2, 0, 4
    assert ips(data, always_a).value == pytest.approx(2 / 3)
    assert snips(data, always_a).value == pytest.approx(2 / 6)
    assert ips(data, always_a).ess == pytest.approx(36 / 20)


def test_bootstrap_and_normal_intervals_agree():
    data, pi = synthetic(5_000, seed=2)
    for f in (ips, snips, doubly_robust):
        normal, boot = f(data, pi, seed=3), f(data, pi, ci="bootstrap", n_boot=400, seed=3)
        assert boot.value == pytest.approx(normal.value)
        ratio = (boot.ci_high - boot.ci_low) / (normal.ci_high - normal.ci_low)
        assert 0.8 < ratio < 1.25
        assert boot.covers(TRUTH)
    again = ips(data, pi, ci="bootstrap", n_boot=400, seed=3)
    assert again == ips(data, pi, ci="bootstrap", n_boot=400, seed=3)


def test_ips_interval_has_its_nominal_coverage():
    hits = [ips(*synthetic(2_000, seed=100 + k)).covers(TRUTH) for k in range(150)]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_dr_beats_ips_on_variance_when_the_model_is_right():
    data, pi = synthetic(20_000, seed=4)
    assert doubly_robust(data, pi, RidgeReward()).se < 0.8 * ips(data, pi).se


def test_target_as_a_function_equals_target_as_columns():
    data, pi = synthetic(300, seed=5)

    def target(context, actions):
        return [TARGET[context["x"], "abc".index(a)] for a in actions]

    np.testing.assert_allclose(target_matrix(data, target), pi)
    assert evaluate(data, target)["snips"] == snips(data, pi)


def test_target_matrix_rejects_nonsense():
    data, pi = synthetic(50, seed=6)
    with pytest.raises(ValueError, match="sum to 1"):
        target_matrix(data, pi * 0.5)
    with pytest.raises(ValueError, match="shape"):
        target_matrix(data, pi[:10])
    with pytest.raises(ValueError, match="2 probabilities for 3 actions"):
        target_matrix(data, lambda context, actions: [0.5, 0.5])
    only_a = LoggedBandit.from_records(
        [{"context": {}, "action": "a", "reward": 1.0, "propensity": 1.0, "actions": ["a"]},
         {"context": {}, "action": "b", "reward": 0.0, "propensity": 1.0, "actions": ["b"]}])
    with pytest.raises(ValueError, match="not available"):
        target_matrix(only_a, np.array([[0.0, 1.0], [0.0, 1.0]]))


# -- replay --------------------------------------------------------------------------------------


def _pick_target(context, actions):
    return "c" if context["x"] == 0 else "a"  # deterministic: truth 0.5 * 0.5 + 0.5 * 0.6 = 0.55


def test_replay_is_unbiased_under_uniform_logging():
    uniform = np.full((2, 3), 1 / 3)
    values = [replay(synthetic(400, seed=200 + k, logging=uniform)[0], _pick_target).value
              for k in range(200)]  # fmt: skip
    assert abs(np.mean(values) - 0.55) < 3 * np.std(values) / np.sqrt(len(values))


def test_replay_corrects_non_uniform_logging_by_rejection():
    data, _ = synthetic(30_000, seed=7)
    res = replay(data, lambda context, actions: "a", seed=1)  # truth 0.5 * 0.1 + 0.5 * 0.6
    assert res.covers(0.35)
    logged = np.array(data.action_space)[data.actions]
    picks = np.full(len(data), "a")
    # plain matching over-weights x = 0, where the logger likes "a": (0.6 * 0.1 + 0.2 * 0.6) / 0.8
    naive = data.rewards[picks == logged].mean()
    assert naive == pytest.approx(0.225, abs=0.02) and not res.covers(naive)
    assert res.n_matched < (picks == logged).sum()


def test_replay_feeds_only_matched_rows_to_a_learner():
    data, _ = synthetic(2_000, seed=8, logging=np.full((2, 3), 1 / 3))
    seen = []
    res = replay(data, _pick_target, learn=lambda c, a, r: seen.append((c["x"], a, r)))
    assert len(seen) == res.n_matched and all(a == ("c" if x == 0 else "a") for x, a, _ in seen)
    assert [r for *_, r in seen] == res.rewards.tolist()


# -- against the simulator's ground truth --------------------------------------------------------

CATEGORY = {"grocery_cashback": "groceries", "grocery_cashback_ends_tonight": "groceries",
            "travel_miles_boost": "travel", "travel_last_seats": "travel",
            "dining_2for1": "dining", "electronics_flash_sale": "electronics",
            "personal_loan": "credit", "home_insurance": "insurance"}  # fmt: skip
URGENT = {"grocery_cashback_ends_tonight", "travel_last_seats", "electronics_flash_sale"}


def page_policy(context, actions):
    """Mostly an offer matching the page being viewed, else an urgency-framed one."""
    match = [a for a in actions if CATEGORY[a] == context.get("page")]
    pref = match or [a for a in actions if a in URGENT] or list(actions)
    return np.array([0.05 / len(actions) + 0.95 * (a in pref) / len(pref) for a in actions])


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(Population(seed=21, n_customers=700), days=10.0)


def _logged(sim: Simulation, agent) -> tuple[LoggedBandit, np.ndarray]:
    trace = run(sim, agent, seed=1, log=True)
    data = LoggedBandit.from_records(trace.records)
    cols = [sim.population.offer_ids.index(a) for a in data.action_space]
    return data, trace.probs[:, cols]  # true response probabilities at decision time


@pytest.mark.parametrize("logger", ["uniform", "epsilon_greedy"])
def test_ope_recovers_a_target_policys_true_value_in_the_simulator(sim, logger):
    static = StaticAgent(["home_insurance", "dining_2for1", "grocery_cashback"])
    agent = RandomAgent() if logger == "uniform" else EpsilonAgent(static, epsilon=0.4)
    data, truth_probs = _logged(sim, agent)
    pi = target_matrix(data, page_policy)
    truth = float((pi * truth_probs).sum(axis=1).mean())
    logging_value = float(truth_probs[np.arange(len(data)), data.actions].mean())
    estimates = evaluate(data, pi)
    for name, est in estimates.items():
        assert est.covers(truth), (name, truth, est)
        assert est.ci_high - est.ci_low < 0.06, name
    assert abs(truth - logging_value) > (estimates["dr"].ci_high - estimates["dr"].ci_low) / 2


def test_replay_recovers_a_deterministic_policys_true_value_in_the_simulator(sim):
    data, truth_probs = _logged(sim, RandomAgent())

    def best_match(context, actions):
        probs = page_policy(context, actions)
        return actions[int(np.argmax(probs))]

    res = replay(data, best_match)
    chosen = [data.action_space.index(best_match(c, tuple(np.array(data.action_space)[av])))
              for c, av in zip(data.contexts, data.available)]  # fmt: skip
    truth = float(truth_probs[np.arange(len(data)), chosen].mean())
    assert res.covers(truth), (truth, res)
    assert res.n_matched > len(data) / 10
