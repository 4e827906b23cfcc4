"""Which candidate offers may be chosen for this request, and why the others may not.

``evaluate`` applies every rule of a use case to all candidates at once and returns an
``Eligibility``: a bool mask aligned to the candidates and, for each removed offer, the reasons
naming each rule that removed it (all of them, not only the first). Rules fail closed: a missing
consent flag or time zone, or an offer the use case shows only under a budget
(``rules.inventory``) that has none, removes the offer rather than letting it through.

Order of the checks (all are applied): channel availability, consent, use-case eligibility,
offer eligibility, validity dates, fatigue caps and cool-down, quiet hours, same offer twice,
budget. The budget rule is asked of a ``BudgetCheck`` (the partition's reading of the fleet's
budgets, ``fleet/budgets.py``: an offer is out when its budget is spent or when this
partition's share of it is taken); without one (a configuration with no budgets) and without
``rules.inventory``, no offer is checked for a budget.

>>> from stream_app.core.catalogue import Offer
>>> from stream_app.rules.config import parse_rules
>>> offers = OfferArrays.of([Offer("a", channels=("sms",)), Offer("b", channels=("app",))])
>>> ctx = RequestContext(channel="sms", profile={"consent_sms": True})
>>> el = evaluate(parse_rules({}), ctx, offers, ContactHistory.empty(), now_ms=0)
>>> el.eligible.tolist(), el.reasons
([True, False], {'b': ['channel: not offered on sms']})
>>> ctx = RequestContext(channel="sms")                       # no consent flag: fail closed
>>> evaluate(parse_rules({}), ctx, offers, ContactHistory.empty(), 0).as_no_action()["action"]
'no_action'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stream_app.rules.config import RuleSet
from stream_app.rules.fatigue import channel_blocks, quiet_hours_block, same_offer_blocked
from stream_app.rules.history import ContactHistory
from stream_app.rules.offers import OfferArrays, RequestContext

__all__ = ["BudgetCheck", "Eligibility", "consent_given", "evaluate"]


class BudgetCheck(Protocol):
    """The budget rule of one request."""

    def limits(self, offer_id: str) -> bool:
        """Whether the offer has a budget."""
        ...

    def out_of_budget(self, offer_id: str) -> str | None:
        """Why the offer may not be shown now (``"budget: ..."``), or ``None``."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class Eligibility:
    offer_ids: tuple[str, ...]
    eligible: np.ndarray  # bool, aligned to offer_ids
    reasons: dict[str, list[str]]  # offer id -> every rule that removed it

    @property
    def no_action(self) -> bool:
        """True when no candidate survived: the answer is ``no_action`` with the reasons."""
        return not bool(self.eligible.any())

    @property
    def eligible_ids(self) -> tuple[str, ...]:
        return tuple(o for o, ok in zip(self.offer_ids, self.eligible) if ok)

    def as_no_action(self) -> dict[str, Any]:
        """The decision fields of a ``no_action`` answer (``decisions`` contract)."""
        return {"action": "no_action", "offer_id": None, "ranked": [],
                "rule_reasons": {k: list(v) for k, v in self.reasons.items()}}  # fmt: skip


def consent_given(rules: RuleSet, ctx: RequestContext) -> str | None:
    """``None`` if the channel needs no consent or has it, else the reason it is missing.

    The flag (``consent_<channel>`` by default) is read from the profile and the request
    context; it must be exactly ``true`` in one of them and ``false`` in neither.
    """
    if ctx.channel not in rules.consent.channels:
        return None
    flag = rules.consent.flag(ctx.channel)
    values = [src.get(flag) for src in (ctx.profile, ctx.context)]
    if any(v is True for v in values) and not any(v is False for v in values):
        return None
    state = "withdrawn" if any(v is False for v in values) else "missing"
    return f"consent: {ctx.channel} consent {state} ({flag})"


def evaluate(
    rules: RuleSet,
    request_ctx: RequestContext,
    offers: OfferArrays,
    history: ContactHistory,
    now_ms: int,
    budgets: BudgetCheck | None = None,
) -> Eligibility:
    """Apply ``rules`` to the candidate ``offers`` of one request at event time ``now_ms``."""
    n = len(offers)
    eligible = np.ones(n, bool)
    reasons: dict[str, list[str]] = {}

    def remove(mask: np.ndarray, reason: str) -> None:
        if not mask.any():
            return
        for i in np.flatnonzero(mask):
            reasons.setdefault(offers.ids[i], []).append(reason)
        eligible[mask] = False

    def remove_all(reason: str) -> None:
        for oid in offers.ids:
            reasons.setdefault(oid, []).append(reason)
        eligible[:] = False

    ctx = request_ctx
    if ctx.channel not in offers.everywhere:
        remove(~offers.offered_on(ctx.channel), f"channel: not offered on {ctx.channel}")
    missing_consent = consent_given(rules, ctx)
    if missing_consent:
        remove_all(missing_consent)
    if rules.eligibility or rules.offer_eligibility:
        facts = ctx.facts()
        for cond in rules.eligibility:
            if not cond.holds(facts):
                remove_all(f"eligibility: {cond.describe()}")
        for i, oid in enumerate(offers.ids if rules.offer_eligibility else ()):
            for cond in rules.offer_eligibility.get(oid, ()):
                if not cond.holds(facts):
                    remove(np.arange(n) == i, f"eligibility: {cond.describe()}")
    if rules.check_validity and offers.dated:
        remove(now_ms < offers.valid_from_ms, "validity: not yet valid")
        remove(now_ms >= offers.valid_to_ms, "validity: expired")
    for reason in channel_blocks(rules, ctx.channel, history, now_ms):
        remove_all(reason)
    tz = ctx.timezone or ctx.profile.get("timezone")
    quiet = quiet_hours_block(rules, ctx.channel, tz, now_ms)
    if quiet:
        remove_all(quiet)
    shown = same_offer_blocked(rules, offers.keys, history, now_ms)
    if shown.any():
        remove(shown, f"fatigue: same offer within {rules.same_offer_s / 3600:g}h")
    if budgets is not None or rules.inventory_all or rules.inventory_offers:
        for i, reason in enumerate(_budget(rules, offers, budgets)):
            if reason:
                remove(np.arange(n) == i, reason)
    return Eligibility(offers.ids, eligible, reasons)


def _budget(rules: RuleSet, offers: OfferArrays, budgets: BudgetCheck | None
            ) -> list[str | None]:
    """Per candidate: why its budget rules it out, or ``None``."""
    out: list[str | None] = []
    for oid in offers.ids:
        if budgets is not None and budgets.limits(oid):
            out.append(budgets.out_of_budget(oid))
        elif rules.inventory_limited(oid):
            out.append("budget: none set for this offer, which the use case shows only under "
                       "a budget (rules.inventory; fail closed)")
        else:
            out.append(None)
    return out
