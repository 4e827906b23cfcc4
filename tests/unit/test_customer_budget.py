"""The size budget of one customer value: at most 1 KB for a customer with a full contact history
(at the capacity the rules derive), 20 offers with evidence and one open decision.

Sizes are derived by hand from the layout in ``stream_app/core/customer.py``; the customer also
has a full interaction window (8 ids) and one outcome seen, as an active customer would.
"""

from __future__ import annotations

import json

import pytest

from stream_app.bench.params import BenchParams, engine_config
from stream_app.core.arms import Arms
from stream_app.core.catalogue import offer_key, parse_config
from stream_app.core.customer import RECENT_EVENTS, SEEN_OUTCOMES, CustomerState
from stream_app.core.decision import decision_id_for
from stream_app.core.feedback import PendingDecision
from stream_app.profile import PROFILE_BYTES, apply_interaction
from stream_app.rules.config import parse_use_case_rules
from stream_app.rules.history import ContactHistory
from stream_app.settings import PROJECT_ROOT

T0 = 1_767_225_600_000  # 2026-01-01, ms
DAY = 86_400_000


def _customer(config_doc: dict, attribution_s: float) -> tuple[CustomerState, int]:
    config = parse_config(config_doc)
    capacity = parse_use_case_rules(config).popitem()[1].history_capacity
    offers = list(config.offer_ids)
    evidence = offers + [f"retired-{i:02d}" for i in range(20 - len(offers))]  # 20 offers
    arms = Arms.empty()
    for i, oid in enumerate(evidence[:20]):
        arms = arms.updated(offer_key(oid), reward=float(i % 3 == 0), now_ms=T0 + i,
                            half_life_s=30 * 86400.0)
    history = ContactHistory.empty(capacity)
    for i in range(capacity + 3):  # one contact a day, every offer in turn: full
        history = history.record(T0 + i * DAY, offer_key(offers[i % len(offers)]), "app")
    c = CustomerState.empty()
    for i in range(RECENT_EVENTS + 2):
        c = c.replace(profile=apply_interaction(c.profile, {"ts": T0 + i, "type": "login"}),
                      recent_events=c.remembered(f"ev-{i}"))
    longest = max(offers, key=len)
    now = T0 + (capacity + 3) * DAY
    pending = PendingDecision(
        decision_id_for("req-1"), "cust-000001", longest, "default", "thompson", "all",
        predicted=0.137, propensity=0.61, decided_at_ms=now,
        expires_at_ms=now + int(attribution_s * 1000), best_predicted=0.2, channel="app")
    c = c.replace(history=history, arms=arms, seen_outcomes=c.remembered_outcome("out-1"))
    return c.with_decision(pending), capacity


def test_the_bench_customer_fits_in_1_kb():
    c, capacity = _customer(engine_config(BenchParams()), BenchParams().attribution_s)
    # default rules ("not the same offer twice in 24 h", no caps) and 20 offers: 20 contacts
    assert capacity == 20 and len(c.history) == 20 and len(c.arms) == 20
    # header 4
    # decision 81: 2 flags + 8 predicted + 8 propensity + 8 decided + 4 window + 10 id
    #   + 1+10 "bench-o000" + 1+7 "default" + 1+8 "thompson" + 1+3 "all" + 8 best + 1 channel
    # profile 2 + 488
    # arms 12 + 12 x 20 = 252
    # history 5 + 8 base + 2 extra-key count + 20 x (4 offset + 1 offer/channel code) = 115
    # interaction window 3 + 8 x 8 = 67, outcome window 3 + 8 = 11
    expected = 4 + 81 + (2 + PROFILE_BYTES) + 252 + 115 + 67 + 11
    assert expected == 1020
    data = c.encode()
    assert len(data) == expected <= 1024
    assert CustomerState.decode(data, "cust-000001") == c
    # between decisions, with its last 8 outcome ids remembered too: 1,020 - 81 + 7 x 8 = 995
    seen = c.seen_outcomes
    for i in range(2, 2 + SEEN_OUTCOMES):
        seen = c.replace(seen_outcomes=seen).remembered_outcome(f"out-{i}")
    settled = c.replace(seen_outcomes=seen).without_decisions([c.decisions[0].decision_id])
    assert len(settled.encode()) == 995


def test_the_demo_customer_fits_in_1_kb():
    doc = json.loads((PROJECT_ROOT / "config" / "offers.json").read_text())
    c, capacity = _customer(doc, doc["use_cases"][0]["attribution_window_s"])
    # default rules and the 8 demo offers: 8 contacts
    assert capacity == 8 and len(c.history) == 8 and len(c.arms) == 20
    # decision 100: 30 fixed + 10 id + 1+29 "grocery_cashback_ends_tonight" + 8 + 9 + 4
    #   + 8 best + 1 channel; history 5 + 10 + 8 x 5 = 55
    expected = 4 + 100 + (2 + PROFILE_BYTES) + 252 + 55 + 67 + 11
    assert expected == 979
    assert len(c.encode()) == expected <= 1024


@pytest.mark.parametrize("days_apart, per_contact", [(1, 5), (30, 6), (20 * 365 * 3, 9)])
def test_a_history_spanning_longer_takes_wider_offsets(days_apart, per_contact):
    # under 49.7 days a uint32 offset, to 34.8 years 5 bytes, beyond that the whole int64
    h = ContactHistory.empty(8)
    for i in range(8):
        h = h.record(T0 + i * days_apart * DAY, offer_key("a"), "sms")
    base = CustomerState.empty().replace(history=ContactHistory.empty(8))
    c = base.replace(history=h)
    # 8 base + 2 extra-key count + 4 for the one key that has no arm, then the contacts
    assert len(c.encode()) - len(base.encode()) == 10 + 4 + 8 * per_contact
    assert CustomerState.decode(c.encode()).history == h
