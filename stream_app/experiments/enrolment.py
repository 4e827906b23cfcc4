"""A customer's enrolment in experiments: the unit an experiment is measured in.

Customers, not requests, are randomised; so they are what is counted. A customer is *enrolled*
in an experiment at their first exposure (the first request the experiment applies to): that
starts their measurement window (the experiment's ``window_s``, by default the use case's
attribution window). Inside the window the customer *converts* at their first goal event, the
same for every arm:

- a response (an outcome with reward > 0) to a decision made under the experiment, or
- a goal interaction (the experiment's ``goal``: an interaction type, optionally a category),
  which is how a ``no_action`` control group converts: organically, with no decision to answer.

When the window closes, the enrolment is *settled*: one outcome for its arm (converted or not,
with the goal's value). So an arm's response rate is the share of its customers who converted,
and the lift of a treatment over a control is its incremental effect, not its response rate.

Enrolments are per-customer state, partition-local and exact (their own table, written only
when one changes: at enrolment, conversion and settlement). A settled enrolment is kept while
its experiment exists, so a customer is never enrolled or counted twice.

>>> e = Enrolments().enrolled("exp", "B", now_ms=0, window_ms=100)
>>> e.converted("exp", now_ms=50, value=3.0).get("exp")
Enrolment(experiment='exp', arm='B', since_ms=0, until_ms=100, converted=True, value=3.0, settled=False)
>>> Enrolments.decode(e.encode()) == e
True
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

import orjson

__all__ = ["Enrolment", "Enrolments", "EnrolmentCodecError"]

_VERSION = 1


class EnrolmentCodecError(ValueError):
    """Stored enrolments that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class Enrolment:
    experiment: str
    arm: str
    since_ms: int  # first exposure
    until_ms: int  # end of the measurement window
    converted: bool = False
    value: float = 0.0
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Enrolments:
    """A customer's enrolments (immutable; every change builds a new one)."""

    items: tuple[Enrolment, ...] = ()

    def __iter__(self) -> Iterator[Enrolment]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, experiment: str) -> Enrolment | None:
        for e in self.items:
            if e.experiment == experiment:
                return e
        return None

    def _with(self, enrolment: Enrolment) -> Enrolments:
        items = tuple(e for e in self.items if e.experiment != enrolment.experiment)
        return Enrolments((*items, enrolment))

    def enrolled(self, experiment: str, arm: str, now_ms: int, window_ms: int) -> Enrolments:
        """Enrolled in ``experiment`` from ``now_ms`` (unchanged when enrolled already)."""
        if self.get(experiment) is not None:
            return self
        return self._with(Enrolment(experiment, arm, int(now_ms), int(now_ms) + int(window_ms)))

    def converted(self, experiment: str, now_ms: int, value: float = 0.0) -> Enrolments:
        """A goal event at ``now_ms``: the enrolment converts when it is open and inside its
        window, not converted yet (unchanged otherwise)."""
        e = self.get(experiment)
        if e is None or e.settled or e.converted or not e.since_ms <= now_ms <= e.until_ms:
            return self
        return self._with(replace(e, converted=True, value=float(value)))

    def settled(self, experiment: str) -> Enrolments:
        e = self.get(experiment)
        return self if e is None or e.settled else self._with(replace(e, settled=True))

    def open(self) -> Iterator[Enrolment]:
        return (e for e in self.items if not e.settled)

    def pruned(self, live: Collection[str]) -> Enrolments:
        """Without the enrolments of experiments no longer configured."""
        keep = tuple(e for e in self.items if e.experiment in live)
        return self if len(keep) == len(self.items) else Enrolments(keep)

    # -- codec --------------------------------------------------------------------------------
    def encode(self) -> bytes:
        return orjson.dumps([_VERSION, [[e.experiment, e.arm, e.since_ms, e.until_ms,
                                         e.converted, e.value, e.settled] for e in self.items]])

    @classmethod
    def decode(cls, data: bytes | None) -> Enrolments:
        if not data:
            return EMPTY
        try:
            version, rows = orjson.loads(data)
            if version != _VERSION:
                raise EnrolmentCodecError(f"unknown enrolments version {version}")
            return cls(tuple(Enrolment(str(x), str(a), int(s), int(u), bool(c), float(v),
                                       bool(d)) for x, a, s, u, c, v, d in rows))
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            if isinstance(exc, EnrolmentCodecError):
                raise
            raise EnrolmentCodecError(f"enrolments unreadable: {exc}") from None


EMPTY = Enrolments()
