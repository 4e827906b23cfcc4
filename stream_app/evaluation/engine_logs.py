"""Turn the engine's own logs (``decisions`` joined to ``outcomes``) into bandit records.

A decision (``docs/contract.md``) carries ``offer_id``, its ``propensity`` and the ``ranked``
candidates; an outcome carries ``decision_id`` and ``type``. The record of a decision is:

- ``action``: the decision's ``offer_id``; ``actions``: the offers in ``ranked`` (plus it);
- ``reward``: 1 if any outcome of the decision is ``clicked`` / ``accepted`` / ``converted``, else
  0 (``dismissed``, ``ignored`` or no outcome at all: the attribution timer's "ignored"); with
  ``reward="value"`` the largest realised ``value`` of a positive outcome instead;
- ``context``: the request's ``context`` (when the requests are given, joined by ``request_id``)
  plus ``channel`` and ``use_case``.

Decisions without an offer (``no_action``), without a usable propensity, or made at or after
``cutoff_ms`` (their outcome may still be on its way) are left out.

>>> decisions = [{"decision_id": "d1", "request_id": "r1", "customer_id": "c1", "ts": 10,
...               "use_case": "default", "channel": "app", "action": "offer", "offer_id": "a",
...               "propensity": 0.25, "ranked": [{"offer_id": "a", "score": 0.9},
...                                              {"offer_id": "b", "score": 0.1}]}]
>>> outcomes = [{"outcome_id": "o1", "decision_id": "d1", "customer_id": "c1", "ts": 20,
...              "type": "converted", "value": 3.0}]
>>> engine_records(decisions, outcomes, [{"request_id": "r1", "context": {"page": "home"}}])
[{'context': {'page': 'home', 'channel': 'app', 'use_case': 'default'}, 'action': 'a', \
'reward': 1.0, 'propensity': 0.25, 'actions': ['a', 'b']}]
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

POSITIVE = frozenset({"clicked", "accepted", "converted"})


def engine_records(
    decisions: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Mapping[str, Any]],
    requests: Iterable[Mapping[str, Any]] | None = None,
    reward: str = "response",
    cutoff_ms: int | None = None,
) -> list[dict[str, Any]]:
    """Bandit records (see ``logs.py``) from decision, outcome and (optional) request messages."""
    if reward not in ("response", "value"):
        raise ValueError("reward must be 'response' or 'value'")
    best: dict[str, float] = {}
    for out in outcomes:
        did = out.get("decision_id")
        if did is None:
            continue
        if out.get("type") in POSITIVE:
            got = 1.0 if reward == "response" else float(out.get("value") or 0.0)
        else:
            got = 0.0
        best[did] = max(best.get(did, 0.0), got)
    contexts = {
        r["request_id"]: r.get("context") or {} for r in requests or () if "request_id" in r
    }
    records = []
    for dec in decisions:
        offer, p = dec.get("offer_id"), dec.get("propensity")
        if dec.get("action") != "offer" or not offer:
            continue
        if not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
            continue
        if cutoff_ms is not None and dec.get("ts", 0) >= cutoff_ms:
            continue
        context = dict(contexts.get(dec.get("request_id"), {}))
        context.update(channel=dec.get("channel"), use_case=dec.get("use_case"))
        ranked = [r["offer_id"] for r in dec.get("ranked") or () if r.get("offer_id")]
        actions = list(dict.fromkeys(ranked + [offer]))
        records.append({"context": context, "action": offer,
                        "reward": best.get(dec["decision_id"], 0.0),
                        "propensity": float(p), "actions": actions})  # fmt: skip
    return records
