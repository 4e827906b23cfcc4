"""Business rules applied before a policy chooses: eligibility, consent, channel, fatigue,
quiet hours, validity dates, budgets. Pure Python + numpy; every rule fails closed.

Typical use in the decision core (parse once per configuration version)::

    rules = parse_use_case_rules(config)[use_case_id]
    offers = OfferArrays.for_use_case(config, use_case_id)
    history = ContactHistory.decode(stored_bytes, rules.history_capacity)
    el = evaluate(rules, RequestContext.of(request, profile), offers, history, request["ts"])
    if el.no_action:
        ...  # answer with el.as_no_action()
    ...      # let the policy choose among el.eligible; after sending the offer:
    history = history.record(request["ts"], offer_key, request["channel"])
"""

from stream_app.rules.conditions import Condition, parse_condition
from stream_app.rules.config import (
    OUTBOUND_CHANNELS,
    Consent,
    QuietHours,
    RuleSet,
    WindowCap,
    parse_rules,
    parse_use_case_rules,
)
from stream_app.rules.evaluate import BudgetCheck, Eligibility, evaluate
from stream_app.rules.history import ContactHistory, HistoryCodecError
from stream_app.rules.offers import OfferArrays, RequestContext
from stream_app.rules.value import expected_value, rank_eligible

__all__ = [
    "BudgetCheck",
    "Condition",
    "Consent",
    "ContactHistory",
    "Eligibility",
    "HistoryCodecError",
    "OUTBOUND_CHANNELS",
    "OfferArrays",
    "QuietHours",
    "RequestContext",
    "RuleSet",
    "WindowCap",
    "evaluate",
    "expected_value",
    "parse_condition",
    "parse_rules",
    "parse_use_case_rules",
    "rank_eligible",
]
