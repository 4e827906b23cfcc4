"""Logged bandit data: what a logging policy saw, did, got, and how likely it was to do it.

The exchange format is JSON Lines, one decision per line::

    {"context": {"page": "travel", "channel": "app"}, "action": "travel_miles_boost",
     "reward": 1.0, "propensity": 0.125, "actions": ["grocery_cashback", "travel_miles_boost"]}

- ``context``: object of numbers / strings / booleans / null (the features the decision saw);
- ``action``: the id of the action taken (non-empty string);
- ``reward``: finite number (usually 0 / 1);
- ``propensity``: probability, in (0, 1], with which the logging policy took ``action``;
- ``actions`` (optional): the actions that were available, which must include ``action``;
  when absent, every action seen anywhere in the log is taken to be available.

Blank lines are skipped. A bad line raises ``BanditLogError`` naming its line number and the
reason (or, with ``on_error="skip"``, is left out and listed in ``LoggedBandit.errors``).
``engine_records`` in ``engine_logs.py`` turns the engine's own decisions and outcomes into
such records.

>>> data = read_jsonl(['{"context": {"x": 1}, "action": "a", "reward": 1, "propensity": 0.5}',
...                    '{"context": {}, "action": "b", "reward": 0, "propensity": 0.5}'])
>>> len(data), data.action_space, data.available.tolist()
(2, ('a', 'b'), [[True, True], [True, True]])
>>> read_jsonl(['{"context": {}, "action": "a", "reward": 1, "propensity": 0}'])
Traceback (most recent call last):
...
stream_app.evaluation.logs.BanditLogError: line 1: propensity must be in (0, 1], got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import orjson


class BanditLogError(ValueError):
    """A logged record that cannot be used; the message starts with ``line N:`` when read."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_record(rec: Any) -> dict[str, Any]:
    """Validate one record and return it normalised; raise ``BanditLogError`` with the reason."""
    if not isinstance(rec, Mapping):
        raise BanditLogError("record must be a JSON object")
    context = rec.get("context", {})
    if not isinstance(context, Mapping):
        raise BanditLogError("context must be an object")
    bad = [k for k, v in context.items() if not (v is None or isinstance(v, (str, int, float)))]
    if bad:
        raise BanditLogError(f"context values must be numbers, strings, booleans or null: {bad}")
    action = rec.get("action")
    if not isinstance(action, str) or not action:
        raise BanditLogError("action must be a non-empty string")
    if not _number(rec.get("reward")):
        raise BanditLogError(f"reward must be a finite number, got {rec.get('reward')!r}")
    p = rec.get("propensity")
    if not _number(p) or not 0.0 < p <= 1.0:
        raise BanditLogError(f"propensity must be in (0, 1], got {p!r}")
    actions = rec.get("actions")
    if actions is not None:
        if not isinstance(actions, list) or not all(isinstance(a, str) and a for a in actions):
            raise BanditLogError("actions must be a list of non-empty strings")
        if action not in actions:
            raise BanditLogError(f"action {action!r} is not among actions")
        actions = list(dict.fromkeys(actions))
    out = {"context": dict(context), "action": action, "reward": float(rec["reward"]),
           "propensity": float(p)}  # fmt: skip
    if actions is not None:
        out["actions"] = actions
    return out


@dataclass(frozen=True)
class LoggedBandit:
    """Columns of a bandit log. ``available[i, k]``: ``action_space[k]`` could be taken at ``i``."""

    contexts: list[dict[str, Any]]
    actions: np.ndarray  # (n,) index into action_space
    rewards: np.ndarray  # (n,)
    propensities: np.ndarray  # (n,)
    action_space: tuple[str, ...]
    available: np.ndarray  # (n, k) bool
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rewards)

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], errors: Sequence[str] = ()
    ) -> LoggedBandit:
        recs = [check_record(r) for r in records]
        space: dict[str, None] = {}
        for r in recs:
            space.update(dict.fromkeys(r.get("actions", ())))
            space[r["action"]] = None
        action_space = tuple(space)
        index = {a: k for k, a in enumerate(action_space)}
        n, k = len(recs), len(action_space)
        available = np.ones((n, k), bool)
        for i, r in enumerate(recs):
            if "actions" in r:
                available[i] = False
                available[i, [index[a] for a in r["actions"]]] = True
        return cls(
            contexts=[r["context"] for r in recs],
            actions=np.array([index[r["action"]] for r in recs], np.int64),
            rewards=np.array([r["reward"] for r in recs], np.float64),
            propensities=np.array([r["propensity"] for r in recs], np.float64),
            action_space=action_space,
            available=available,
            errors=list(errors),
        )

    def records(self) -> list[dict[str, Any]]:
        """Back to JSON-ready records (``actions`` always present)."""
        return [
            {"context": c, "action": self.action_space[a], "reward": float(r),
             "propensity": float(p),
             "actions": [s for s, ok in zip(self.action_space, av) if ok]}
            for c, a, r, p, av in zip(
                self.contexts, self.actions, self.rewards, self.propensities, self.available)
        ]  # fmt: skip


def read_jsonl(source: str | Path | Iterable[str | bytes], on_error: str = "raise") -> LoggedBandit:
    """Read a JSONL bandit log from a path or from an iterable of lines.

    ``on_error="raise"`` (default) stops at the first bad line; ``"skip"`` leaves bad lines out
    and lists ``"line N: reason"`` in ``.errors``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            return read_jsonl(list(fh), on_error)
    records, errors = [], []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BanditLogError(f"not valid JSON ({exc})") from None
            records.append(check_record(rec))
        except BanditLogError as exc:
            if on_error == "raise":
                raise BanditLogError(f"line {number}: {exc}") from None
            errors.append(f"line {number}: {exc}")
    return LoggedBandit.from_records(records, errors)


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write records (validated) one per line; returns how many were written."""
    n = 0
    with open(path, "wb") as fh:
        for rec in records:
            fh.write(orjson.dumps(check_record(rec)) + b"\n")
            n += 1
    return n
