"""What the rules look at: the candidate offers as aligned columns, and the request's facts.

``OfferArrays`` holds one row per candidate offer (ids, keys, channel availability, validity
window, value) so every rule is one numpy expression over all candidates. Build it once per
configuration version and use case (``for_use_case``), then ``take`` the request's candidates.

``RequestContext`` is what is known about the request: channel, time zone, the request context
and the customer's profile summary (a flat mapping; consent flags and segment live there).

>>> from stream_app.core.catalogue import Offer
>>> arr = OfferArrays.of([Offer("a", channels=("sms",)), Offer("b", valid_to_ms=10)])
>>> arr.offered_on("sms").tolist(), arr.valid_at(20).tolist()
([True, True], [True, False])
>>> RequestContext.of({"channel": "sms", "context": {"age": 30}}).facts()["context"]["age"]
30
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from stream_app.core.catalogue import CHANNELS, EngineConfig, Offer

__all__ = ["OfferArrays", "RequestContext"]

_NEVER = np.iinfo(np.int64).min
_FOREVER = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True, eq=False)
class OfferArrays:
    ids: tuple[str, ...]
    keys: np.ndarray  # uint32 offer keys
    channels: np.ndarray  # bool (n_offers, len(CHANNELS)): offered on that channel
    valid_from_ms: np.ndarray  # int64, inclusive; int64 min when open
    valid_to_ms: np.ndarray  # int64, exclusive; int64 max when open
    values: np.ndarray  # float64 business value
    # read by every request, so worked out once per set of offers: the channels every offer
    # is offered on (the channel rule removes none there), and whether any offer has a
    # validity window (else the validity rule has nothing to check)
    everywhere: frozenset[str] = field(init=False)
    dated: bool = field(init=False)

    def __post_init__(self) -> None:
        on_all = self.channels.all(axis=0).tolist()
        object.__setattr__(self, "everywhere", frozenset(
            c for c, every in zip(CHANNELS, on_all) if every))
        object.__setattr__(self, "dated", bool((self.valid_from_ms != _NEVER).any() or
                                               (self.valid_to_ms != _FOREVER).any()))

    @classmethod
    def of(cls, offers: Sequence[Offer]) -> OfferArrays:
        n = len(offers)
        chans = np.zeros((n, len(CHANNELS)), bool)
        for i, offer in enumerate(offers):
            chans[i, [CHANNELS.index(c) for c in offer.channels]] = True
        return cls(
            ids=tuple(o.id for o in offers),
            keys=np.fromiter((o.key for o in offers), np.uint32, n),
            channels=chans,
            valid_from_ms=np.fromiter(
                (_NEVER if o.valid_from_ms is None else o.valid_from_ms for o in offers),
                np.int64,
                n,
            ),
            valid_to_ms=np.fromiter(
                (_FOREVER if o.valid_to_ms is None else o.valid_to_ms for o in offers), np.int64, n
            ),
            values=np.fromiter((o.value for o in offers), np.float64, n),
        )

    @classmethod
    def for_use_case(cls, config: EngineConfig, use_case_id: str) -> OfferArrays:
        """The offers of a use case (all offers when it names none), in configuration order."""
        uc = config.use_case(use_case_id)
        ids = uc.offers if uc.offers is not None else config.offer_ids
        return cls.of([config.offers[config.index_of(o)] for o in ids])

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: Sequence[int] | np.ndarray) -> OfferArrays:
        """The subset at positions ``idx`` (e.g. the candidates a request names)."""
        idx = np.asarray(idx, np.intp)
        return OfferArrays(
            ids=tuple(self.ids[i] for i in idx),
            keys=self.keys[idx],
            channels=self.channels[idx],
            valid_from_ms=self.valid_from_ms[idx],
            valid_to_ms=self.valid_to_ms[idx],
            values=self.values[idx],
        )

    def offered_on(self, channel: str) -> np.ndarray:
        if channel not in CHANNELS:
            return np.zeros(len(self), bool)
        return self.channels[:, CHANNELS.index(channel)]

    def valid_at(self, now_ms: int) -> np.ndarray:
        return (self.valid_from_ms <= now_ms) & (now_ms < self.valid_to_ms)


@dataclass(frozen=True, slots=True)
class RequestContext:
    channel: str
    timezone: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    profile: Mapping[str, Any] = field(default_factory=dict)
    use_case: str | None = None
    customer_id: str | None = None

    @classmethod
    def of(
        cls, request: Mapping[str, Any], profile: Mapping[str, Any] | None = None
    ) -> RequestContext:
        """From a ``decision-requests`` message and the customer's profile summary."""
        return cls(
            channel=request["channel"],
            timezone=request.get("timezone"),
            context=MappingProxyType(dict(request.get("context") or {})),
            profile=MappingProxyType(dict(profile or {})),
            use_case=request.get("use_case"),
            customer_id=request.get("customer_id"),
        )

    def facts(self) -> dict[str, Any]:
        """What conditions may name: ``context.*``, ``profile.*``, ``request.*``."""
        return {
            "context": self.context,
            "profile": self.profile,
            "request": {
                "channel": self.channel,
                "timezone": self.timezone,
                "use_case": self.use_case,
                "customer_id": self.customer_id,
            },
        }
