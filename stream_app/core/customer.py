"""Everything the engine keeps about one customer, stored as one value: profile, contact history,
Beta evidence per offer, the ids of the last interactions and outcomes applied, and the
customer's pending decisions.

One read and one write per event, whatever the event: a request reads the profile, history and
arms and adds a decision; an outcome finds its decision here, settles it and updates the arms; an
interaction updates the profile. The value is rebuilt on every event, so ``CustomerState`` is a
frozen, slotted object and its helpers build the next one with one constructor call.

**Messages are applied once.** Kafka delivers at least once: after a crash or a rebalance the
messages since the last committed offset are read again, and a producer retry can write one
twice. An interaction is recognised by its ``event_id`` among the customer's last
``RECENT_EVENTS`` (``recent_events``), an outcome by its ``outcome_id`` among the last
``SEEN_OUTCOMES`` (``seen_outcomes``), kept in this same value, so the check costs no extra read.

**Codec, version 3** (never a pickle; byte counts for a typical customer)::

    header     4   version (3), flags, number of decisions (uint16)
    decisions      each ``PendingDecision.pack`` (about 80 B open, 90 B settled), customer
                   id left out (it is the key); first, so ``timers_of`` reads them alone
    profile    2 + PROFILE_BYTES (488)
    arms      12 + 12 per offer: updated_at_ms, count, (key, successes, failures) records
    history    5   capacity, count, layout; when not empty, + 2 + 4 per offer key that is not
                   one of the arms' + 8 (base time) + 5 per contact: a uint32 offset from the
                   oldest contact's time and one byte ``offer << 3 | channel``, the offer as its
                   place among the arms' keys (then the extra keys). A table past 32 offers
                   takes 2 or 4 bytes a code; a history spanning 49.7 days or more takes 5
                   bytes an offset (8 past 34.8 years)
    recent     3 + 8 per id (at most RECENT_EVENTS = 8): capacity, size, next slot, id hashes
    seen       3 + 8 per id (at most SEEN_OUTCOMES = 8)

A customer with 20 offers of evidence, a full 20-contact history, a full interaction window,
one outcome seen and one open decision is 1,020 bytes (``tests/unit/test_customer_budget.py``
derives it); a full outcome window adds 56. Versions 2
(profile, 13-byte contacts, interaction window) and 1 (no window) are still read: their arms,
outcome window and decisions start empty.

>>> from stream_app.core.feedback import PendingDecision
>>> from stream_app.profile import apply_interaction
>>> c = CustomerState.empty()
>>> c = c.replace(profile=apply_interaction(c.profile, {"ts": 5, "type": "login"}))
>>> c = c.replace(history=c.history.record(10, 7, "sms"), recent_events=c.remembered("ev-1"))
>>> p = PendingDecision("dc-1", "c-1", "cashback", "default", "thompson", "all", predicted=0.25,
...                     propensity=0.5, decided_at_ms=10, expires_at_ms=60_010, channel="sms")
>>> c = c.with_decision(p)
>>> d = CustomerState.decode(c.encode(), customer_id="c-1")
>>> d.profile == c.profile, d.history == c.history, d.decision("dc-1") == p
(True, True, True)
>>> CustomerState.timers_of(c.encode(), "c-1") == ((p,), ProfileClocks.of(c.profile))
True
>>> d.recent_events.seen_before("ev-1"), CustomerState.empty().recent_events.seen_before("ev-1")
(True, False)
>>> len(CustomerState.empty().encode())   # 4 + 2 + 488 + 12 + 5 + 3 + 3
517
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

import numpy as np

from stream_app.codec import read_header
from stream_app.core.arms import ARM_DTYPE, Arms
from stream_app.core.catalogue import CHANNELS
from stream_app.core.dedup import DedupCodecError, DedupWindow
from stream_app.core.feedback import PendingCodecError, PendingDecision
from stream_app.experiments.enrolment import EMPTY as NO_ENROLMENTS
from stream_app.experiments.enrolment import Enrolments
from stream_app.profile import Profile, ProfileClocks, ProfileCodecError
from stream_app.rules.history import CONTACT_DTYPE, MAX_CAPACITY, ContactHistory

__all__ = ["CustomerState", "CustomerCodecError", "OPTED_OUT", "RECENT_EVENTS", "SEEN_OUTCOMES"]

OPTED_OUT = 1  # flag: the customer opted out of contact (withdraws consent on every channel)
# Interaction ids remembered per customer: a redelivery repeats what was read since the last
# committed offset (Faust commits every second), i.e. a customer's last event or two; 8 leaves
# room for bursts and costs 64 bytes.
RECENT_EVENTS = 8
SEEN_OUTCOMES = 8  # outcome ids remembered per customer, for the same reason

_VERSION = 3
_HEADER_V1 = struct.Struct("<BBH")  # version, flags, profile length
_HEADER_V2 = struct.Struct("<BBHH")  # version, flags, profile length, history length
_HEADER = struct.Struct("<BBH")  # version, flags, number of decisions
_U2 = struct.Struct("<H")
_ARMS = struct.Struct("<qI")  # updated_at_ms, number of offers
_HISTORY = struct.Struct("<HHB")  # capacity, number of contacts, layout
_BASE = struct.Struct("<qH")  # time of the oldest contact, number of extra offer keys
_WINDOW = struct.Struct("<BBB")  # capacity, size, next slot
_DEDUP = struct.Struct("<BxHHH")  # DedupWindow's own (version 2) header, rebuilt on decode
# history layout: bits 0-1 the width of a contact's code (``_CODE_WIDTHS``), bits 2-3 of its time
_TIMES_5 = 4  # a 5-byte offset from the oldest contact (the history spans 49.7 days or more)
_TIMES_8 = 8  # the whole int64 time (the history spans 34.8 years or more)
_CODE_WIDTHS = ((32, "B", 0), (8192, "H", 1), (2**29, "I", 2))  # table size, struct code, bits
_CODE_DTYPES = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"))
_CHANNEL_BITS = 3
_CHANNEL_MASK = (1 << _CHANNEL_BITS) - 1
assert len(CHANNELS) <= 1 << _CHANNEL_BITS


class CustomerCodecError(ValueError):
    """Stored customer state that cannot be decoded."""


def _no_events() -> DedupWindow:
    return DedupWindow(RECENT_EVENTS)


def _no_outcomes() -> DedupWindow:
    return DedupWindow(SEEN_OUTCOMES)


_NO_ARMS = Arms.empty()  # immutable: shared by every customer without evidence


@dataclass(frozen=True, slots=True)
class CustomerState:
    """One customer's state: an immutable value; every change builds a new one.

    Parameters
    ----------
    profile
        The behavioural profile.
    history
        The recent contacts (what fatigue rules read).
    flags
        ``OPTED_OUT`` or 0.
    recent_events
        Ids of the last interactions applied (never mutated: see ``remembered``).
    arms
        The customer's Beta evidence per offer.
    seen_outcomes
        Ids of the last outcomes applied (never mutated: see ``remembered_outcome``).
    decisions
        Pending decisions: open ones, and settled ones kept for their grace period.
    enrolments
        The customer's experiment enrolments (``experiments/enrolment.py``): stored in a table
        of their own, written only when they change, so not in ``encode``.
    """

    profile: Profile
    history: ContactHistory
    flags: int = 0
    recent_events: DedupWindow = field(default_factory=_no_events)
    arms: Arms = field(default_factory=lambda: _NO_ARMS)
    seen_outcomes: DedupWindow = field(default_factory=_no_outcomes)
    decisions: tuple[PendingDecision, ...] = ()
    enrolments: Enrolments = NO_ENROLMENTS

    @property
    def opted_out(self) -> bool:
        return bool(self.flags & OPTED_OUT)

    @classmethod
    def empty(cls) -> CustomerState:
        return cls(Profile.empty(), ContactHistory.empty())

    def replace(self, **changes: object) -> CustomerState:
        """A copy with the named fields changed (one constructor call, no ``dataclasses``)."""
        new = CustomerState(
            changes.pop("profile", self.profile), changes.pop("history", self.history),
            changes.pop("flags", self.flags), changes.pop("recent_events", self.recent_events),
            changes.pop("arms", self.arms), changes.pop("seen_outcomes", self.seen_outcomes),
            changes.pop("decisions", self.decisions),
            changes.pop("enrolments", self.enrolments))  # type: ignore[arg-type]
        if changes:
            raise TypeError(f"CustomerState has no fields {sorted(changes)}")
        return new

    def remembered(self, event_id: str) -> DedupWindow:
        """A copy of ``recent_events`` with ``event_id`` as the newest (this state is unchanged)."""
        window = self.recent_events.copy()
        window.remember(event_id)
        return window

    def remembered_outcome(self, outcome_id: str) -> DedupWindow:
        """A copy of ``seen_outcomes`` with ``outcome_id`` as the newest (this state is unchanged).

        >>> c = CustomerState.empty()
        >>> c.replace(seen_outcomes=c.remembered_outcome("o-1")).seen_outcomes.seen_before("o-1")
        True
        >>> c.seen_outcomes.seen_before("o-1")
        False
        """
        window = self.seen_outcomes.copy()
        window.remember(outcome_id)
        return window

    # -- pending decisions ------------------------------------------------------------------
    def decision(self, decision_id: str) -> PendingDecision | None:
        """The pending decision with this id, or ``None``."""
        for p in self.decisions:
            if p.decision_id == decision_id:
                return p
        return None

    def with_decision(self, pending: PendingDecision) -> CustomerState:
        """A copy holding ``pending``: added, or in place of the one with the same id.

        >>> from stream_app.core.feedback import ignored
        >>> p = PendingDecision("dc-1", "c-1", "a", "default", "thompson", "all", 0.2, 0.5,
        ...                     0, 1_000)
        >>> c = CustomerState.empty().with_decision(p)
        >>> c = c.with_decision(ignored(p).pending)      # settled: replaces the open one
        >>> [d.settled_by for d in c.decisions]
        ['timer']
        """
        ds = self.decisions
        for i, p in enumerate(ds):
            if p.decision_id == pending.decision_id:
                return self._with_decisions((*ds[:i], pending, *ds[i + 1:]))
        return self._with_decisions((*ds, pending))

    def without_decisions(self, decision_ids: Collection[str]) -> CustomerState:
        """A copy without the decisions whose ids are given (this state if none is held)."""
        keep = tuple(p for p in self.decisions if p.decision_id not in decision_ids)
        return self if len(keep) == len(self.decisions) else self._with_decisions(keep)

    def forgetting(self, now_ms: int,
                   forget_at: Callable[[PendingDecision], int]) -> CustomerState:
        """A copy without the settled decisions whose grace period is over
        (``forget_at(p) <= now_ms``); open decisions are always kept.

        >>> from stream_app.core.feedback import ignored
        >>> p = PendingDecision("dc-1", "c-1", "a", "default", "thompson", "all", 0.2, 0.5,
        ...                     0, 1_000)
        >>> q = PendingDecision("dc-2", "c-1", "a", "default", "thompson", "all", 0.2, 0.5,
        ...                     0, 1_000)
        >>> c = CustomerState.empty().with_decision(ignored(p).pending).with_decision(q)
        >>> grace = lambda d: d.expires_at_ms + 1_000
        >>> [d.decision_id for d in c.forgetting(1_999, grace).decisions]
        ['dc-1', 'dc-2']
        >>> [d.decision_id for d in c.forgetting(2_000, grace).decisions]
        ['dc-2']
        """
        keep = tuple(p for p in self.decisions
                     if p.settled_by is None or forget_at(p) > now_ms)
        return self if len(keep) == len(self.decisions) else self._with_decisions(keep)

    def _with_decisions(self, decisions: tuple[PendingDecision, ...]) -> CustomerState:
        return CustomerState(self.profile, self.history, self.flags, self.recent_events,
                             self.arms, self.seen_outcomes, decisions, self.enrolments)

    # -- codec ------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """The stored value (version 3; layout in the module docstring)."""
        if len(self.decisions) > 0xFFFF:
            raise ValueError(f"{len(self.decisions)} pending decisions do not fit one value")
        parts = [_HEADER.pack(_VERSION, self.flags, len(self.decisions))]
        parts += [p.pack() for p in self.decisions]
        profile = self.profile.encode()
        arms = self.arms.records
        parts += [_U2.pack(len(profile)), profile,
                  _ARMS.pack(self.arms.updated_at_ms, len(arms)), arms.tobytes(),
                  _encode_history(self.history, arms["key"]),
                  _encode_window(self.recent_events), _encode_window(self.seen_outcomes)]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | None, customer_id: str | None = None) -> CustomerState:
        """Stored state, or an empty customer for ``None`` (never seen here).

        ``customer_id`` (the key the value was stored under) is required when the value holds
        decisions: it is not stored in them. Raises ``CustomerCodecError`` with a one-line
        reason for anything that is not a customer value.
        """
        if not data:
            return cls.empty()
        data = bytes(data)
        if data[0] in (1, 2):
            return _decode_v1_v2(data)
        _, flags, n = read_header(data, _HEADER, _VERSION, CustomerCodecError, "customer state")
        decisions, pos = _unpack_decisions(data, n, customer_id)
        profile, pos = _read_profile(data, pos)
        try:
            arms, pos = _decode_arms(data, pos)
            history, pos = _decode_history(data, pos, arms.records["key"])
            recent, pos = _decode_window(data, pos)
            seen, pos = _decode_window(data, pos)
        except struct.error:
            raise CustomerCodecError("customer state is cut short") from None
        except CustomerCodecError:
            raise
        except (DedupCodecError, ValueError) as exc:
            raise CustomerCodecError(f"customer state: {exc}") from None
        if pos != len(data):
            raise CustomerCodecError(f"customer state has {len(data) - pos} bytes past its end")
        return cls(profile, history, flags, recent, arms, seen, decisions)

    @staticmethod
    def timers_of(data: bytes | None, customer_id: str
                  ) -> tuple[tuple[PendingDecision, ...], ProfileClocks]:
        """Only the pending decisions and the profile's clocks of a stored value, what a
        partition's timers are rebuilt from (a start-up scan of every customer): the arms, the
        history, the id windows and the rest of the profile are not read. A value written
        before version 3 is read whole (it holds no decisions).

        >>> CustomerState.timers_of(CustomerState.empty().encode(), "c-1")
        ((), ProfileClocks(n_events=0, first_seen_ms=0, last_event_ms=0, churn_labelled_ms=0))
        """
        if not data or data[0] in (1, 2):
            state = CustomerState.decode(data, customer_id)
            return state.decisions, ProfileClocks.of(state.profile)
        data = bytes(data)
        _, _, n = read_header(data, _HEADER, _VERSION, CustomerCodecError, "customer state")
        decisions, pos = _unpack_decisions(data, n, customer_id)
        return decisions, _read_profile(data, pos, ProfileClocks.decode)[0]


def _read_profile(data: bytes, pos: int, decode: Callable[[bytes], Any] = Profile.decode
                  ) -> tuple[Any, int]:
    """The profile stored at ``pos`` (after the decisions), read by ``decode`` (whole, or
    ``ProfileClocks.decode``), and the position after it."""
    try:
        (size,) = _U2.unpack_from(data, pos)
        pos += 2
        if not size:
            raise CustomerCodecError("customer state has no profile")
        if pos + size > len(data):
            raise CustomerCodecError("customer state is cut short")
        return decode(data[pos:pos + size]), pos + size
    except struct.error:
        raise CustomerCodecError("customer state is cut short") from None
    except ProfileCodecError as exc:
        raise CustomerCodecError(f"customer state: {exc}") from None


def _unpack_decisions(data: bytes, n: int, customer_id: str | None
                      ) -> tuple[tuple[PendingDecision, ...], int]:
    pos = _HEADER.size
    if not n:
        return (), pos
    if customer_id is None:
        raise ValueError("a customer value with decisions needs its customer id to be decoded")
    out = []
    try:
        for _ in range(n):
            p, pos = PendingDecision.unpack_from(data, pos, customer_id)
            out.append(p)
    except PendingCodecError as exc:
        raise CustomerCodecError(f"customer state: {exc}") from None
    return tuple(out), pos


def _decode_arms(data: bytes, pos: int) -> tuple[Arms, int]:
    updated_at, n = _ARMS.unpack_from(data, pos)
    pos += _ARMS.size
    end = pos + n * ARM_DTYPE.itemsize
    if end > len(data):
        raise CustomerCodecError("customer state is shorter than its arms")
    # a read-only view of the value: arms are never changed in place (``updated`` copies)
    return Arms(np.frombuffer(data, ARM_DTYPE, n, pos), updated_at), end


def _encode_history(history: ContactHistory, arm_keys: np.ndarray) -> bytes:
    # plain Python over the few contacts of a customer: a dozen numpy calls on arrays of a
    # handful of items cost more than the work
    rec = history.records
    n = len(rec)
    if not n:
        return _HISTORY.pack(history.capacity, 0, 0)
    contacts = rec.tolist()  # (ts_ms, offer_key, channel) each
    # each contact's offer is its place among the arms' keys (sorted), else among the extras
    place: dict[int, int] = {}
    for i, key in enumerate(arm_keys.tolist()):
        place.setdefault(key, i)
    extra = sorted({key for _, key, _ in contacts if key not in place})
    for i, key in enumerate(extra, len(arm_keys)):
        place[key] = i
    table = len(arm_keys) + len(extra)
    code, layout = next((c, bits) for limit, c, bits in _CODE_WIDTHS if table <= limit)
    codes = [place[key] << _CHANNEL_BITS | channel for _, key, channel in contacts]
    base = contacts[0][0]
    span = contacts[-1][0] - base
    if span < 2**32:  # offsets from the oldest contact (modulo 2**32, as a cast to uint32)
        times = struct.pack(f"<{n}I", *[(ts - base) & 0xFFFFFFFF for ts, _, _ in contacts])
    elif span < 2**40:  # 49.7 days to 34.8 years: the low 5 bytes of each offset
        layout |= _TIMES_5
        times = (rec["ts_ms"] - base).astype("<u8").view(np.uint8).reshape(n, 8)[:, :5].tobytes()
    else:
        layout |= _TIMES_8
        times = rec["ts_ms"].astype("<i8").tobytes()
    return b"".join((_HISTORY.pack(history.capacity, n, layout),
                     _BASE.pack(base, len(extra)), struct.pack(f"<{len(extra)}I", *extra),
                     times, struct.pack(f"<{n}{code}", *codes)))


def _decode_history(data: bytes, pos: int, arm_keys: np.ndarray) -> tuple[ContactHistory, int]:
    capacity, n, layout = _HISTORY.unpack_from(data, pos)
    pos += _HISTORY.size
    times = layout & (_TIMES_5 | _TIMES_8)
    if (not 1 <= capacity <= MAX_CAPACITY or n > capacity or layout & ~(_TIMES_5 | _TIMES_8 | 3)
            or (layout & 3) == 3 or times == _TIMES_5 | _TIMES_8):
        raise CustomerCodecError("customer state has a corrupt contact history header")
    if not n:
        return ContactHistory.empty(capacity), pos
    base, n_extra = _BASE.unpack_from(data, pos)
    pos += _BASE.size
    code_dtype = _CODE_DTYPES[layout & 3]
    width = 8 if times == _TIMES_8 else 5 if times == _TIMES_5 else 4
    end = pos + 4 * n_extra + width * n + code_dtype.itemsize * n
    if end > len(data):
        raise CustomerCodecError("customer state is shorter than its contact history")
    if n_extra:
        table = np.concatenate((arm_keys, np.frombuffer(data, "<u4", n_extra, pos)))
        pos += 4 * n_extra
    else:
        table = arm_keys
    rec = np.empty(n, CONTACT_DTYPE)
    ts = rec["ts_ms"]
    if width == 4:
        offsets = np.frombuffer(data, "<u4", n, pos)
        np.add(offsets, np.int64(base), out=ts, casting="unsafe")
    elif width == 5:
        wide = np.zeros((n, 8), np.uint8)
        wide[:, :5] = np.frombuffer(data, np.uint8, 5 * n, pos).reshape(n, 5)
        offsets = wide.view("<u8").ravel()
        np.add(offsets, np.int64(base), out=ts, casting="unsafe")
    else:
        offsets = ts
        ts[:] = np.frombuffer(data, "<i8", n, pos)
    codes = np.frombuffer(data, code_dtype, n, pos + width * n)
    index = codes >> _CHANNEL_BITS
    channel = codes & _CHANNEL_MASK
    if (int(index.max()) >= len(table) or int(channel.max()) >= len(CHANNELS)
            or (n > 1 and bool((offsets[1:] < offsets[:-1]).any()))):
        raise CustomerCodecError("customer state has corrupt contacts")
    rec["offer_key"] = table[index]
    rec["channel"] = channel
    return ContactHistory(rec, capacity), end


def _encode_window(window: DedupWindow) -> bytes:
    raw = window.encode()  # DedupWindow's own header, then the ids remembered
    _, capacity, size, nxt = _DEDUP.unpack_from(raw)
    if capacity > 255:
        raise ValueError(f"a customer keeps at most 255 ids per window, not {capacity}")
    return _WINDOW.pack(capacity, size, nxt) + raw[_DEDUP.size:]


def _decode_window(data: bytes, pos: int) -> tuple[DedupWindow, int]:
    capacity, size, nxt = _WINDOW.unpack_from(data, pos)
    pos += _WINDOW.size
    end = pos + 8 * size
    if end > len(data):
        raise CustomerCodecError("customer state is shorter than its id windows")
    if not size and not nxt and capacity:
        return DedupWindow(capacity), end
    return DedupWindow.decode(_DEDUP.pack(2, capacity, size, nxt) + data[pos:end]), end


def _decode_v1_v2(data: bytes) -> CustomerState:
    """A value written before version 3: profile, 13-byte contacts, interaction window (v2)."""
    if data[0] == 1:  # written before interactions were de-duplicated
        _, flags, n = read_header(data, _HEADER_V1, 1, CustomerCodecError, "customer state")
        body = memoryview(data)[_HEADER_V1.size:]
        h = len(body) - n
    else:
        _, flags, n, h = read_header(data, _HEADER_V2, 2, CustomerCodecError, "customer state")
        body = memoryview(data)[_HEADER_V2.size:]
    if len(body) < n + h:
        raise CustomerCodecError("customer state shorter than its profile and history")
    try:
        return CustomerState(Profile.decode(bytes(body[:n])),
                             ContactHistory.decode(bytes(body[n:n + h])), flags,
                             DedupWindow.decode(bytes(body[n + h:]), RECENT_EVENTS))
    except (ValueError, DedupCodecError) as exc:
        raise CustomerCodecError(f"customer state: {exc}") from None
