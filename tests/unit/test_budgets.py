"""Budgets that hold across the fleet (``stream_app/fleet/budgets.py``): the config, the counting,
the division among partitions, and four partitions with an in-process learner accepting offers
concurrently, never more than the budget (the documented bound is 0 without a hand-over)."""

from __future__ import annotations

import heapq
import os
from collections import deque

import numpy as np
import orjson
import pytest

from stream_app.core.catalogue import Budget, ConfigError, parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider
from stream_app.core.population import PopulationState
from stream_app.fleet import FleetSnapshot
from stream_app.fleet.budgets import (
    ALL_TIME,
    DAY_MS,
    FleetBudgets,
    PartitionBudget,
    day_of,
    line_caps,
)
from stream_app.fleet.learner import FleetLearner
from stream_app.fleet.local import LocalFleet
from stream_app.models.suite import ModelSuite, SuiteConfig
from stream_app.partition import DictStore, InputRecord, PartitionSession
from stream_app.partition.keys import partition_of
from stream_app.partition.session import default_contract
from stream_app.partition.state import SETTLED_KEY

T0 = 1_764_000_000_000  # 2025-11-24 16:00 UTC
DAY0 = day_of(T0)
LIGHT = SuiteConfig(classifiers=("logreg",), propensity_classifiers=("logreg",),
                    regressors=("mean",))
# seeds of each fleet setting (by hand: STREAM_APP_BUDGET_SEEDS=12, about a minute)
SEEDS = range(int(os.environ.get("STREAM_APP_BUDGET_SEEDS", "1")))


def config_doc(budgets: dict, window_s: float = 600.0) -> dict:
    return {"version": "budget-v1",
            "offers": [{"id": "gift", "value": 10.0}, {"id": "plain", "value": 1.0}],
            "use_cases": [{"id": "default", "attribution_window_s": window_s,
                           "rules": {"fatigue": {"same_offer_s": 0}}}],
            "budgets": budgets}


# -- the config ---------------------------------------------------------------------------------
def test_budgets_in_the_config():
    cfg = parse_config(config_doc({"gift": {"count": 40, "value_per_day": 95}}))
    assert cfg.budgets == {"gift": Budget(count=40, value_per_day=95.0)}
    short = parse_config({**config_doc({}), "inventory": {"gift": 7}})
    assert short.budgets == {"gift": Budget(count=7)}
    assert default_contract().validate("engine-config", config_doc(
        {"gift": {"count": 40, "value_per_day": 95}}))


@pytest.mark.parametrize("budgets, extra, error", [
    ({"nope": {"count": 1}}, {}, "budgets.nope: unknown offer 'nope'"),
    ({"gift": {"count": -1}}, {}, "budgets.gift.count must be an integer in"),
    ({"gift": {"count": True}}, {}, "budgets.gift.count must be an integer in"),
    ({"gift": {"count": 1.5}}, {}, "budgets.gift.count must be an integer in"),
    ({"gift": {"value_per_day": "10"}}, {}, "budgets.gift.value_per_day must be a number"),
    ({"gift": {"cap": 3}}, {}, r"budgets.gift: unknown key \['cap'\]"),
    ({"gift": {}}, {}, "budgets.gift must set count and/or value_per_day"),
    ({"gift": 3}, {}, "budgets.gift must be an object"),
    ({"gift": {"count": 3}}, {"inventory": {"gift": 3}}, "keep one"),
    ({}, {"inventory": {"gift": -2}}, "inventory.gift must be an integer"),
    ({}, {"inventory": ["gift"]}, "inventory must be an object"),
])
def test_a_malformed_budget_is_refused_with_its_path(budgets, extra, error):
    with pytest.raises(ConfigError, match=error):
        parse_config({**config_doc(budgets), **extra})


def test_the_caps_of_a_config_in_accepted_offers():
    cfg = parse_config(config_doc({"gift": {"count": 40, "value_per_day": 95}}))
    # 95 per day of an offer worth 10: 9 accepted offers a day; yesterday, today and tomorrow
    assert line_caps(cfg, 100) == {("gift", ALL_TIME): 40, ("gift", 99): 9, ("gift", 100): 9,
                                   ("gift", 101): 9}
    free = parse_config({**config_doc({"gift": {"value_per_day": 5}}),
                         "offers": [{"id": "gift", "value": 0.0}]})
    assert line_caps(free, 100) == {}  # an offer that costs nothing has no value line


# -- counting -----------------------------------------------------------------------------------
def outcome_lesson(offer: str, reward: float, at: int, ts: int | None = None) -> dict:
    return {"k": "o", "p": None, "offer": offer, "key": 1, "urgent": False, "r": reward,
            "ts": at + 1_000 if ts is None else ts, "at": at, "v": 0.0, "seg": "all",
            "uc": "default", "hl": None, "x": None}


def test_an_accepted_offer_uses_up_its_count_and_its_decision_day():
    used = FleetBudgets()
    evening = (DAY0 + 1) * DAY_MS - 1_000
    records = [{"source": "p0", "epoch": 1, "lessons": [
        outcome_lesson("gift", 1.0, evening, ts=evening + 5_000),  # answered after midnight
        outcome_lesson("gift", 0.0, evening), outcome_lesson("plain", 1.0, T0)]},
        {"source": "p1", "epoch": 1, "lessons": [outcome_lesson("gift", 1.0, T0)]}]
    for record in records:
        used.learn(record)
    c = used.consumption
    assert c.total(("gift", ALL_TIME)) == 2 and c.of("p0", ("gift", ALL_TIME)) == 1
    assert c.of("p0", ("gift", DAY0)) == 1 and c.of("p0", ("gift", DAY0 + 1)) == 0
    assert c.of("p1", ("gift", DAY0)) == 1 and c.total(("plain", ALL_TIME)) == 1


def test_open_offers_are_the_partitions_last_report_of_its_newest_life():
    fleet = FleetBudgets()
    line = ("gift", ALL_TIME)

    def report(epoch, open_, full=False, read=1):
        section = {"read": read, "open": open_}
        if full:
            section["full"] = True
        fleet.learn({"source": "p2", "epoch": epoch, "lessons": [], "budget": section})

    report(5, [["gift", -1, 4], ["gift", DAY0, 4]], full=True)
    report(5, [["gift", -1, 3]])
    assert fleet.claim("p2", line) == 3 and fleet.claim("p2", ("gift", DAY0)) == 4
    report(6, [["gift", -1, 1]], full=True, read=3)  # the partition's next owner
    assert fleet.claim("p2", line) == 1 and fleet.claim("p2", ("gift", DAY0)) == 0
    report(5, [["gift", -1, 9]], read=2)  # late, from the previous owner: not its open offers
    assert fleet.claim("p2", line) == 1 and fleet.read["p2"] == 3


def test_a_malformed_report_is_counted_and_skipped():
    fleet = FleetBudgets()
    fleet.learn({"source": "p0", "epoch": 1, "lessons": [{"k": "o", "r": 1.0}],
                 "budget": {"read": 1, "open": [["gift"]]}})
    assert fleet.rejected == 2 and fleet.read == {"p0": 1}


# -- dividing -----------------------------------------------------------------------------------
def test_the_learner_divides_what_is_left_and_raises_a_share_only_out_of_free_budget():
    fleet, line = FleetBudgets(), ("gift", ALL_TIME)
    for p in ("p0", "p1", "p2", "p3"):
        fleet.learn({"source": p, "epoch": 1, "lessons": [], "budget": {"read": 1}})
    fleet.allocate({line: 10}, version=2, day=DAY0)
    assert [fleet.share(p, line) for p in ("p0", "p1", "p2", "p3")] == [3, 3, 2, 2]
    # p0 accepted its 3, the others none. Left: 7, i.e. 1 each and 3 more for the busiest:
    # p0 should reach 5, p1 2, p2 2, p3 1; but p1..p3 may still read version 2, whose shares
    # (3, 2, 2) are held until they say otherwise: nothing is free, p0 stays at 3
    fleet.learn({"source": "p0", "epoch": 1, "budget": {"read": 2},
                 "lessons": [outcome_lesson("gift", 1.0, T0)] * 3})
    fleet.allocate({line: 10}, version=3, day=DAY0)
    assert [fleet.share(p, line) for p in ("p0", "p1", "p2", "p3")] == [3, 2, 2, 1]
    assert [fleet.held(p, line) for p in ("p1", "p2", "p3")] == [3, 2, 2]
    assert sum(max(fleet.claim(p, line), fleet.held(p, line)) for p in fleet.read) <= 10
    # the others read version 3 now: their old shares are released to p0
    for p in ("p1", "p2", "p3"):
        fleet.learn({"source": p, "epoch": 1, "lessons": [], "budget": {"read": 3}})
    fleet.allocate({line: 10}, version=4, day=DAY0)
    assert fleet.share("p0", line) == 3 + 2 and sum(fleet.share(p, line)
                                                    for p in fleet.read) == 10


def test_a_partition_releases_a_lowered_share_with_one_record():
    fleet, line, idle = FleetBudgets(), ("gift", ALL_TIME), PartitionBudget("p1")
    for p in ("p0", "p1"):
        fleet.learn({"source": p, "epoch": 1, "lessons": [], "budget": {"read": 1}})
    fleet.allocate({line: 10}, version=2, day=DAY0)
    fleet.learn({"source": "p0", "epoch": 1, "budget": {"read": 2},
                 "lessons": [outcome_lesson("gift", 1.0, T0)] * 5})
    fleet.allocate({line: 10}, version=3, day=DAY0)  # p1: 5 -> 2, but 5 held for it
    assert (fleet.share("p0", line), fleet.share("p1", line), fleet.held("p1", line)) == (5, 2, 5)
    idle.install(fleet, 3)
    assert idle.due()  # nothing to teach, but a record releases what is held
    fleet.learn({"source": "p1", "epoch": 1, "lessons": [], "budget": idle.report()})
    fleet.allocate({line: 10}, version=4, day=DAY0)
    assert (fleet.share("p0", line), fleet.share("p1", line)) == (8, 2)
    idle.install(fleet, 4)
    assert not idle.due()  # nothing held any more: no record without lessons


def test_held_shares_never_let_the_partitions_reach_more_than_the_cap():
    """Random claims, acknowledgements and divisions: what every partition may still reach
    (its claim, or the largest share of a version it may still read) never sums above the cap.
    """
    rng = np.random.default_rng(7)
    for trial in range(40):
        fleet, line, cap = FleetBudgets(), ("gift", ALL_TIME), int(rng.integers(0, 60))
        parts = [f"p{i}" for i in range(int(rng.integers(1, 9)))]
        reading = {p: 0 for p in parts}  # the version each partition reads
        published = 0
        for version in range(1, 60):
            for p in parts:
                if rng.random() < 0.5:  # the partition installs the newest snapshot
                    reading[p] = published
                share = _share_at(fleet, p, line, reading[p]) or 0  # of the version it reads
                claim, used = fleet.claim(p, line), fleet.consumption.of(p, line)
                n = int(rng.integers(-3, 4))  # offers shown (n > 0, within the share) or settled
                claim = min(claim + n, max(claim, share)) if n > 0 else max(claim + n, used)
                opens = claim - used
                accepted = int(rng.integers(0, opens + 1)) if rng.random() < 0.3 else 0
                fleet.learn({"source": p, "epoch": 1, "budget": {
                    "read": reading[p], "open": [["gift", -1, opens - accepted]]},
                    "lessons": [outcome_lesson("gift", 1.0, T0)] * accepted})
            fleet.allocate({line: cap}, version, DAY0)
            published = version
            reach = sum(max(fleet.claim(p, line), fleet.held(p, line)) for p in parts)
            assert reach <= cap, (trial, version)


def _share_at(fleet: FleetBudgets, source: str, line, version: int) -> int | None:
    history = fleet.grants.get(line, {}).get(source) or []
    share = None
    for v, s in history:
        if v <= version:
            share = s
    return share


# -- a partition's reading ------------------------------------------------------------------------
def test_a_partition_waits_for_its_share_then_keeps_to_it():
    cfg = parse_config(config_doc({"gift": {"count": 5}}))
    partition = PartitionBudget("p0")
    gate = partition.gate(cfg, T0)
    assert gate.limits("gift") and not gate.limits("plain")
    assert gate.out_of_budget("plain") is None
    assert gate.out_of_budget("gift") == ("budget: no share of the count budget of 5 for this "
                                          "partition yet (the fleet's learner grants one at its "
                                          "next snapshot)")
    assert partition.due()  # it must tell the learner it exists, even without lessons
    fleet = FleetBudgets()
    fleet.learn({"source": "p0", "epoch": 1, "lessons": [], "budget": partition.report()})
    assert not partition.due()
    fleet.allocate(line_caps(cfg, DAY0), 2, DAY0)
    partition.install(fleet, 2)
    for _ in range(5):
        assert gate.out_of_budget("gift") is None
        partition.reserve("gift", T0)
    assert gate.out_of_budget("gift").startswith(
        "budget: this partition's share of the count budget of 5 is taken (5 accepted or "
        "awaiting an answer here; 0 accepted fleet-wide)")
    for _ in range(5):  # all accepted: the budget is spent
        partition.settled(outcome_lesson("gift", 1.0, T0))
    assert partition.open == {}
    assert gate.out_of_budget("gift") == "budget: count budget of 5 spent (5 accepted fleet-wide)"


def test_a_value_budget_is_kept_per_day_of_the_decision():
    cfg = parse_config(config_doc({"gift": {"value_per_day": 25}}))
    fleet, partition = FleetBudgets(), PartitionBudget("p0")
    fleet.learn({"source": "p0", "epoch": 1, "lessons": [], "budget": {"read": 1}})
    fleet.allocate(line_caps(cfg, DAY0), 2, DAY0)
    partition.install(fleet, 2)
    for _ in range(2):
        partition.reserve("gift", T0)
        partition.settled(outcome_lesson("gift", 1.0, T0))
    assert partition.gate(cfg, T0).out_of_budget("gift") == (
        "budget: value budget of 25 per day spent (20 of it accepted fleet-wide)")
    assert partition.gate(cfg, T0 + DAY_MS).out_of_budget("gift") is None  # the next day


def test_the_learners_budgets_survive_a_snapshot():
    cfg = parse_config(config_doc({"gift": {"count": 9, "value_per_day": 50}}))
    decider = Decider(cfg)
    learner = FleetLearner(lambda: decider, population=PopulationState(ModelSuite(LIGHT)))
    learner.apply({"source": "p1", "epoch": 4, "seq": 1, "ts": T0, "budget": {
        "read": 1, "open": [["gift", -1, 2], ["gift", DAY0, 2]], "full": True},
        "lessons": [outcome_lesson("gift", 1.0, T0), outcome_lesson("gift", 1.0, T0)]})
    snapshot = learner.snapshot()
    restored = FleetSnapshot.decode(snapshot.encode()).population.budgets
    for line in (("gift", ALL_TIME), ("gift", DAY0)):
        assert restored.claim("p1", line) == 4 == snapshot.population.budgets.claim("p1", line)
        assert restored.share("p1", line) == snapshot.population.budgets.share("p1", line)
    assert restored.consumption.accepted == {"p1": {("gift", ALL_TIME): 2, ("gift", DAY0): 2}}
    assert restored.share("p1", ("gift", ALL_TIME)) == 9 - 4 + 4  # its claim and all the rest
    # a learner restarted from the snapshot goes on counting from there
    again = FleetLearner(lambda: decider, FleetSnapshot.decode(snapshot.encode()))
    again.apply({"source": "p1", "epoch": 4, "seq": 2, "ts": T0, "budget": {"read": 2},
                 "lessons": [outcome_lesson("gift", 1.0, T0)]})
    assert again.population.budgets.consumption.total(("gift", ALL_TIME)) == 3


# -- four partitions, an in-process learner, customers accepting concurrently ------------------
def rec(message: dict) -> InputRecord:
    return InputRecord(message["customer_id"].encode(), orjson.dumps(message))


class Market:
    """``partitions`` sessions and a ``LocalFleet``; customers ask for the budgeted offer in
    turn (interleaved across the partitions) and answer what they were shown after a random
    delay: ``accept`` of them accept, ``dismiss`` dismiss, the rest never answer (the offer is
    settled as ignored when its window closes).

    ``record_lag``: learning records reach the learner this many requests late (a topic in
    between); ``snapshot_lag``: each partition reads the newest snapshot only every this many
    requests, at its own phase (partitions read different snapshots at the same time).
    """

    def __init__(self, budgets: dict, *, partitions: int = 4, snapshot_every_ms: int = 60_000,
                 record_lag: int = 0, snapshot_lag: int = 0, window_s: float = 600.0,
                 seed: int = 0) -> None:
        self.decider = Decider(parse_config(config_doc(budgets, window_s)), seed=seed)
        self.fleet = LocalFleet(lambda: self.decider,
                                population=PopulationState(ModelSuite(LIGHT)),
                                snapshot_every_ms=snapshot_every_ms)
        self.partitions = partitions
        self.reading = [self.fleet.latest] * partitions
        self.sessions = [PartitionSession(p, DictStore(), lambda: self.decider,
                                          fleet=(lambda p=p: self.reading[p]), epoch=1)
                         for p in range(partitions)]
        self.record_lag, self.snapshot_lag = record_lag, snapshot_lag
        self.rng = np.random.default_rng(seed)
        self.window_ms = int(window_s * 1000)
        self.in_flight: deque[tuple[int, list]] = deque()
        self.answers: list[tuple[int, int, dict]] = []  # heap of (ts, n, outcome)
        self.step = 0
        self.decisions: list[dict] = []
        self.accepted: list[dict] = []  # the decisions whose offer was accepted

    def send(self, source: str, message: dict) -> None:
        p = partition_of(message["customer_id"], self.partitions)
        out = self.sessions[p].process(source, [rec(message)])
        assert not out.dead_letters, out.dead_letter_reasons
        self.in_flight.append((self.step, out.records))
        for decision in out.decisions:
            self.decisions.append(decision)
            if decision["action"] == "offer":
                self._answer_later(decision)

    def _answer_later(self, decision: dict, accept: float = 0.85, dismiss: float = 0.05
                      ) -> None:
        u = self.rng.random()
        if u >= accept + dismiss:
            return  # ignored: settled by the timer
        kind = "accepted" if u < accept else "dismissed"
        ts = decision["ts"] + int(self.rng.integers(1_000, self.window_ms // 2))
        heapq.heappush(self.answers, (ts, len(self.answers), {
            "outcome_id": f"o-{decision['decision_id']}", "decision_id": decision["decision_id"],
            "customer_id": decision["customer_id"], "ts": ts, "type": kind}))
        if kind == "accepted":
            self.accepted.append(decision)

    def flow(self, until_ms: int) -> None:
        """Outcomes due before ``until_ms``, the learner fed what is old enough, snapshots read."""
        while self.answers and self.answers[0][0] < until_ms:
            _, _, outcome = heapq.heappop(self.answers)
            self.send("outcomes", outcome)
        while self.in_flight and self.in_flight[0][0] <= self.step - self.record_lag:
            self.fleet.take(self.in_flight.popleft()[1])
        for p in range(self.partitions):
            if not self.snapshot_lag or (self.step + p) % self.snapshot_lag == 0:
                self.reading[p] = self.fleet.latest

    def run(self, customers: int, requests: int, every_ms: int, start: int = T0) -> None:
        for i in range(requests):
            ts = start + i * every_ms
            self.flow(ts)
            self.send("decision-requests", {
                "request_id": f"r{start}-{i}", "customer_id": f"c{i % customers}", "ts": ts,
                "channel": "app", "use_case": "default", "candidates": ["gift"]})
            self.step += 1

    def settle(self, end_ms: int) -> None:
        """Every answer given, every window closed, every record learned."""
        self.flow(end_ms)
        for session in self.sessions:
            self.in_flight.append((self.step, session.tick(end_ms).records))
        self.record_lag = 0
        self.flow(end_ms)
        self.fleet.publish()

    def shown(self, day: int | None = None) -> int:
        return sum(d["action"] == "offer" and (day is None or day_of(d["ts"]) == day)
                   for d in self.decisions)

    def refusals(self) -> list[str]:
        return [why for d in self.decisions if d["action"] == "no_action"
                for why in d["rule_reasons"].get("gift", ())]


SETTINGS = [  # (snapshot interval of event time, learning records late by, snapshots read late),
    # the delays in requests (one every 0.5 s): 40 is 20 s
    pytest.param(1_000, 0, 0, id="snapshot-1s"),
    pytest.param(120_000, 0, 0, id="snapshot-2min"),
    pytest.param(1_000, 20, 5, id="snapshot-1s-records-10s-late-mixed-snapshots"),
    pytest.param(2_000, 40, 7, id="snapshot-2s-records-20s-late-mixed-snapshots"),
    pytest.param(2_000, 80, 13, id="snapshot-2s-records-40s-late-mixed-snapshots"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("snapshot_ms, record_lag, snapshot_lag", SETTINGS)
def test_four_partitions_never_accept_more_than_the_count_budget(snapshot_ms, record_lag,
                                                                 snapshot_lag, seed):
    n = 60
    market = Market({"gift": {"count": n}}, snapshot_every_ms=snapshot_ms, window_s=120.0,
                    record_lag=record_lag, snapshot_lag=snapshot_lag, seed=seed + 1)
    requests = 1_200
    market.run(customers=240, requests=requests, every_ms=500)  # 10 min of event time
    market.settle(T0 + requests * 500 + 2 * market.window_ms)
    accepted = len(market.accepted)
    used = market.fleet.learner.population.budgets.consumption
    assert used.total(("gift", ALL_TIME)) == accepted  # the learner counted every one, once
    assert {p for p in used.accepted} == {"p0", "p1", "p2", "p3"}  # on every partition
    assert accepted <= n  # the documented bound: 0 over the budget
    # more were shown than accepted: an offer shown is held against the budget until it is
    # answered or expires, then shown to someone else (the mix answers 90 % of them)
    assert market.shown() > accepted
    refusals = market.refusals()
    assert all(why.startswith("budget: ") for why in refusals)
    assert f"budget: count budget of {n} spent ({n} accepted fleet-wide)" in refusals
    # nothing stranded: demand went on for longer than a window after the last claim, so the
    # whole budget was used (no share left idle on a partition)
    assert accepted == n
    # a partition waits for its first share at most two snapshots after its first request
    # (and the records' delay)
    first, waited = {}, {}
    for d in market.decisions:
        p = partition_of(d["customer_id"], 4)
        first.setdefault(p, d["ts"])
        if d["action"] == "no_action" and "no share" in d["rule_reasons"]["gift"][0]:
            waited[p] = d["ts"] - first[p]
    assert waited and max(waited.values()) <= 2 * snapshot_ms + (record_lag + snapshot_lag) * 500


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("snapshot_ms, record_lag, snapshot_lag", SETTINGS)
def test_when_every_offer_shown_is_accepted_no_more_are_shown_than_the_budget(
        snapshot_ms, record_lag, snapshot_lag, seed, monkeypatch):
    n = 60
    market = Market({"gift": {"count": n}}, snapshot_every_ms=snapshot_ms, window_s=120.0,
                    record_lag=record_lag, snapshot_lag=snapshot_lag, seed=seed + 1)
    answer = Market._answer_later
    monkeypatch.setattr(Market, "_answer_later", lambda self, d: answer(self, d, accept=1.0))
    market.run(customers=240, requests=1_200, every_ms=500)
    market.settle(T0 + 1_200 * 500 + 2 * market.window_ms)
    assert market.shown() == len(market.accepted) == n


def test_a_value_budget_holds_per_day_across_partitions():
    # 95 per day of an offer worth 10: at most 9 accepted a day, counted on the decision's day
    market = Market({"gift": {"value_per_day": 95}}, snapshot_every_ms=5_000, window_s=120.0,
                    seed=3)
    evening = (DAY0 + 1) * DAY_MS - 200_000  # 23:56:40
    market.run(customers=120, requests=1_400, every_ms=500, start=evening)  # to 00:08:20
    market.settle(evening + 1_400 * 500 + 2 * market.window_ms)
    per_day = {}
    for d in market.accepted:
        per_day[day_of(d["ts"])] = per_day.get(day_of(d["ts"]), 0) + 1
    assert per_day == {DAY0: 9, DAY0 + 1: 9}
    assert "budget: value budget of 95 per day spent (90 of it accepted fleet-wide)" in \
        market.refusals()


def test_open_offers_are_counted_again_after_a_restart():
    market = Market({"gift": {"count": 30}}, snapshot_every_ms=1_000, seed=4)
    market.run(customers=80, requests=120, every_ms=500)
    for p, session in enumerate(market.sessions):
        before = dict(session.view.budget.open)
        restarted = PartitionSession(p, session.store, lambda: market.decider,
                                     fleet=market.fleet, epoch=2)
        restarted.tick(T0 + 120 * 500)  # reads its store: the open decisions' timers, the budget
        opens = {}
        through = restarted._settled_through  # decisions expired by then are settled
        for key, raw in session.store.items("customers"):
            if key == SETTLED_KEY:
                continue
            for pending in CustomerState.decode(raw, key.decode()).decisions:
                if pending.settled_by is None and (through is None
                                                   or pending.expires_at_ms > through):
                    for line in ((pending.offer_id, ALL_TIME),
                                 (pending.offer_id, day_of(pending.decided_at_ms))):
                        opens[line] = opens.get(line, 0) + 1
        assert restarted.view.budget.open == before == opens
        assert opens  # some are open
