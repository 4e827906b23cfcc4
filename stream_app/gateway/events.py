"""The events the gateway answered, kept until their rewards can no longer come.

A reward (``/personalizer/v1.0/events/{eventId}/reward``) names only the event; the outcome the
engine needs names the decision, the customer and the time. So the gateway remembers each ranked
event for its use case's attribution window (after it the engine has counted the decision as
ignored, and a reward would only be reported late), at most ``capacity`` of them, the oldest
leaving first. An event that leaves without a reward is handed back by ``expire`` so apprentice
mode can count it as reward 0, as the engine does.

>>> book = EventBook(capacity=2)
>>> for i in range(3):
...     book.add(AnsweredEvent(f"dc-{i}", f"ev-{i}", "c-1", "default", "a", "a", 1_000 * i,
...                            expires_at_ms=10_000 + i))
>>> [e.event_id for e in book.expire(now_ms=0)]   # over capacity: the oldest left
['ev-0']
>>> book.get("dc-1").action, book.get("dc-0")
('a', None)
>>> [e.event_id for e in book.expire(now_ms=10_002)]
['ev-1', 'ev-2']
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["AnsweredEvent", "EventBook"]


@dataclass(slots=True)
class AnsweredEvent:
    """What the gateway answered for one event and what its reward needs."""

    decision_id: str
    event_id: str  # Personalizer's eventId, the engine's request_id
    customer_id: str
    use_case: str
    action: str | None  # what the caller was told to show (None: nothing)
    engine_offer: str | None  # what the engine decided (None: no decision, or no_action)
    decided_at_ms: int
    expires_at_ms: int
    share: str | None = None  # apprentice share that served it (None: not in apprentice)
    activated: bool = True  # deferActivation=true: False until /activate
    rewards: list[float] = field(default_factory=list)  # held until activation, then sent
    rewarded: bool = False  # its first reward arrived (apprentice counted it)
    sent: int = 0  # outcomes sent to the engine for it

    @property
    def attributable(self) -> bool:
        """The engine's decision is what was shown: its outcome may teach the engine."""
        return self.action is not None and self.action == self.engine_offer


class EventBook:
    """Answered events by decision id, bounded in number and in time."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the event book needs a capacity >= 1")
        self.capacity = capacity
        self._events: dict[str, AnsweredEvent] = {}
        self._expiry: list[tuple[int, int, str]] = []  # (expires_at_ms, order, decision id)
        self._order = 0

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, decision_id: str) -> bool:
        return decision_id in self._events

    def add(self, event: AnsweredEvent) -> None:
        self._events[event.decision_id] = event
        self._order += 1
        heapq.heappush(self._expiry, (event.expires_at_ms, self._order, event.decision_id))

    def get(self, decision_id: str) -> AnsweredEvent | None:
        return self._events.get(decision_id)

    def expire(self, now_ms: int) -> list[AnsweredEvent]:
        """Remove and return the events whose window ended by ``now_ms``, and the soonest-ending
        ones beyond ``capacity``."""
        gone = []
        while self._expiry and (self._expiry[0][0] <= now_ms or
                                len(self._events) > self.capacity):
            _, _, decision_id = heapq.heappop(self._expiry)
            event = self._events.pop(decision_id, None)
            if event is not None:
                gone.append(event)
        return gone
