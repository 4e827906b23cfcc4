"""Contact fatigue through ``evaluate``: caps per channel and across channels, cool-down,
the same offer twice, quiet hours in the customer's time zone (fail closed without one)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.catalogue import CHANNELS, Offer
from stream_app.rules import ContactHistory, OfferArrays, RequestContext, evaluate, parse_rules

# 2024-01-15 23:00:00 UTC: 23:00 in London (GMT), 18:00 in New York (EST, UTC-5),
# 04:30 on the 16th in Kolkata (UTC+5:30), 10:00 on the 16th in Sydney (AEDT, UTC+11).
NOW = 1_705_359_600_000
# 2024-07-15 22:30:00 UTC: 23:30 in London (BST), 18:30 in New York (EDT).
SUMMER = 1_721_082_600_000
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000

OFFERS = OfferArrays.of([Offer("a"), Offer("b"), Offer("c")])
NO_REPEAT = {"same_offer_s": 0}  # isolate the rule under test from the 24 h default


def ctx(channel="app", tz="Europe/London", **profile):
    return RequestContext(channel=channel, timezone=tz, profile={"consent_" + channel: True,
                                                                  **profile})  # fmt: skip


def history(*contacts):
    h = ContactHistory.empty()
    for ts, offer, channel in contacts:
        h = h.record(ts, OFFERS.keys[OFFERS.ids.index(offer)], channel)
    return h


def run(rules_doc, request, hist=None, now=NOW):
    return evaluate(parse_rules(rules_doc), request, OFFERS, hist or ContactHistory.empty(), now)


# -- caps --------------------------------------------------------------------------------------
SMS_CAP = {"fatigue": {"channel_caps": {"sms": {"max": 2, "window_s": 86400}}, **NO_REPEAT}}


def test_channel_cap_blocks_every_offer_once_reached():
    h = history((NOW - 23 * HOUR, "a", "sms"), (NOW - HOUR, "b", "sms"))
    el = run(SMS_CAP, ctx("sms"), h)
    assert el.no_action
    assert all(r == ["fatigue: sms cap 2 per 86400s reached"] for r in el.reasons.values())


def test_channel_cap_window_is_rolling_and_open_at_its_start():
    h = history((NOW - DAY, "a", "sms"), (NOW - HOUR, "b", "sms"))  # the first is exactly 24 h old
    assert run(SMS_CAP, ctx("sms"), h).eligible.all()
    h = history((NOW - DAY + 1, "a", "sms"), (NOW - HOUR, "b", "sms"))
    assert not run(SMS_CAP, ctx("sms"), h).eligible.any()


def test_channel_cap_counts_only_its_channel():
    h = history((NOW - HOUR, "a", "email"), (NOW - 2 * HOUR, "b", "email"), (NOW - MIN, "c", "sms"))
    assert run(SMS_CAP, ctx("sms"), h).eligible.all()  # one sms contact < 2
    assert run(SMS_CAP, ctx("email"), h).eligible.all()  # no cap configured for email


def test_global_cap_counts_across_channels():
    rules = {"fatigue": {"global_cap": {"max": 3, "window_s": 7 * 86400}, **NO_REPEAT}}
    h = history(
        (NOW - 6 * DAY, "a", "sms"), (NOW - 3 * DAY, "b", "email"), (NOW - HOUR, "c", "app")
    )
    el = run(rules, ctx("web"), h)  # never contacted on web, but the weekly budget is spent
    assert el.no_action and el.reasons["a"] == ["fatigue: global cap 3 per 604800s reached"]
    assert run(rules, ctx("web"), h, now=NOW + DAY).eligible.all()  # the 6-day-old one ages out
    loose = {"fatigue": {"global_cap": {"max": 4, "window_s": 7 * 86400}, **NO_REPEAT}}
    assert run(loose, ctx("web"), h).eligible.all()


def test_cooldown_after_any_contact():
    rules = {"fatigue": {"cooldown_s": 3600, **NO_REPEAT}}
    h = history((NOW - 59 * MIN, "a", "email"))
    el = run(rules, ctx("app"), h)
    assert el.no_action and el.reasons["c"] == ["fatigue: cool-down 3600s after the last contact"]
    assert run(rules, ctx("app"), history((NOW - 60 * MIN, "a", "email"))).eligible.all()


# -- the same offer twice ------------------------------------------------------------------------
def test_same_offer_not_twice_within_24h_by_default_across_channels():
    h = history((NOW - DAY + MIN, "a", "email"))
    el = run({}, ctx("app"), h)
    assert el.eligible.tolist() == [False, True, True]
    assert el.reasons == {"a": ["fatigue: same offer within 24h"]}
    assert run({}, ctx("app"), history((NOW - DAY, "a", "email"))).eligible.all()


def test_same_offer_window_is_configurable_and_can_be_off():
    h = history((NOW - 30 * HOUR, "b", "app"))
    assert run({}, ctx("app"), h).eligible.all()
    longer = run({"fatigue": {"same_offer_s": 48 * 3600}}, ctx("app"), h)
    assert longer.eligible.tolist() == [True, False, True]
    assert longer.reasons["b"] == ["fatigue: same offer within 48h"]
    assert run({"fatigue": NO_REPEAT}, ctx("app"), history((NOW - MIN, "b", "app"))).eligible.all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3 * DAY), st.sampled_from(OFFERS.ids),
                       st.sampled_from(CHANNELS)), max_size=30),  # fmt: skip
    st.integers(1, 3 * 86400),
)
def test_same_offer_mask_matches_a_plain_loop(contacts, window_s):
    """The vectorised mask equals a brute-force scan of the history."""
    now = 3 * DAY
    h = history(*contacts)
    el = run({"fatigue": {"same_offer_s": window_s}, "consent": {"channels": []}},
             RequestContext(channel="app"), h, now=now)  # fmt: skip
    assert len(contacts) <= h.capacity  # nothing dropped: the loop sees the same contacts
    recent = {o for ts, o, _ in contacts if ts > now - window_s * 1000}
    assert el.eligible.tolist() == [o not in recent for o in OFFERS.ids]


# -- quiet hours -----------------------------------------------------------------------------
QUIET = {"quiet_hours": {"start": "22:00", "end": "07:00"}}


@pytest.mark.parametrize(
    ("tz", "now", "quiet"),
    [
        ("Europe/London", NOW, True),  # 23:00 GMT
        ("America/New_York", NOW, False),  # 18:00 EST
        ("Asia/Kolkata", NOW, True),  # 04:30 IST
        ("Australia/Sydney", NOW, False),  # 10:00 AEDT
        ("Europe/London", SUMMER, True),  # 23:30 BST (DST handled)
        ("America/New_York", SUMMER, False),  # 18:30 EDT
        ("UTC", NOW - HOUR, True),  # 22:00 sharp: start is inclusive
        ("UTC", NOW + 8 * HOUR - MIN, True),  # 06:59
        ("UTC", NOW + 8 * HOUR, False),  # 07:00 sharp: end is exclusive
    ],
)
def test_quiet_hours_in_the_customers_time_zone(tz, now, quiet):
    el = run(QUIET, ctx("sms", tz=tz), now=now)
    assert el.no_action is quiet
    if quiet:
        assert el.reasons["a"][0].startswith("quiet hours: ") and tz in el.reasons["a"][0]


def test_quiet_hours_reason_names_the_local_time():
    el = run(QUIET, ctx("sms", tz="Asia/Kolkata"))
    assert el.reasons["b"] == ["quiet hours: 04:30 local in Asia/Kolkata (22:00-07:00)"]


@pytest.mark.parametrize("tz", [None, "", "Mars/Olympus_Mons", "../etc/passwd", 5])
def test_quiet_hours_fail_closed_without_a_known_time_zone(tz):
    el = run(QUIET, ctx("sms", tz=tz), now=NOW + 12 * HOUR)  # noon in London: not quiet there
    assert el.no_action
    assert "unknown time zone" in el.reasons["a"][0]


def test_time_zone_falls_back_to_the_profile():
    el = run(QUIET, ctx("sms", tz=None, timezone="America/New_York"))
    assert el.eligible.all()


def test_quiet_hours_only_on_their_channels():
    rules = {"quiet_hours": {"start": "22:00", "end": "07:00", "channels": ["sms", "voice"]}}
    assert run(rules, ctx("sms", tz="Europe/London")).no_action
    assert run(rules, ctx("app", tz="Europe/London")).eligible.all()
    assert run(rules, ctx("app", tz=None)).eligible.all()  # no tz needed where no quiet hours


def test_daytime_quiet_window_does_not_wrap():
    rules = {"quiet_hours": {"start": "12:00", "end": "14:00"}}
    assert run(rules, ctx("sms", tz="UTC"), now=NOW - 10 * HOUR).no_action  # 13:00
    assert run(rules, ctx("sms", tz="UTC")).eligible.all()  # 23:00


def test_all_fatigue_reasons_are_reported_together():
    rules = {
        "fatigue": {"channel_caps": {"sms": {"max": 1, "window_s": 86400}}, "cooldown_s": 600},
        **QUIET,
    }
    el = run(rules, ctx("sms"), history((NOW - MIN, "a", "sms")))
    assert el.reasons["a"] == [
        "fatigue: sms cap 1 per 86400s reached",
        "fatigue: cool-down 600s after the last contact",
        "quiet hours: 23:00 local in Europe/London (22:00-07:00)",
        "fatigue: same offer within 24h",
    ]
    assert len(el.reasons["b"]) == 3 and np.count_nonzero(el.eligible) == 0
