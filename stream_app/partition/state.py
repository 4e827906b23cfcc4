"""A partition's state as its session reads and writes it, batch by batch.

- **Customers** (``customers`` table, one value each: ``core/customer.py``): the customers of a
  batch are read in one multi-get (``prefetch``), decoded on first use and kept decoded while
  the batch runs; a new state is encoded when it is made (``put``: a value that cannot be
  stored fails the record that made it, not the batch) and written once per batch
  (``write_back``: one write, one changelog record per key). The last ``kept`` customers
  written stay decoded between batches (``KEPT_CUSTOMERS``): a customer read again is decoded
  only when the stored value is not the one written (a customer's events come close together:
  an interaction, then a request, then its outcome or expiry).
- **Lapsed decisions are settled when read** (``lapse``). A decision whose attribution window
  closed without an outcome is settled as ignored by its timer, which publishes its delta and
  its lesson; the customer's side of it (their arms, their profile, the decision marked
  settled) is *held* (``hold``): kept for the batch, not written. The customer's stored value
  keeps the decision open until the customer is written for another reason, and every read
  settles such decisions again, the same way (``Decider.lapse``). Which decisions have lapsed
  is told by the partition's **settled-through mark** (``settled_through`` / ``mark_settled``,
  a row of the ``customers`` table under ``SETTLED_KEY``, never a customer id): every decision
  that expired at or before it has had its timer fired. So an expiry costs no write and no
  changelog record, and a restart neither loses nor repeats one.

What the fleet learns (pooled arms, models) is not partition state: ``fleet/``.

>>> from stream_app.partition.store import DictStore
>>> state = PartitionState(DictStore())
>>> state.prefetch(["c1"])
>>> c = state.customer("c1")
>>> state.put("c1", c.replace(flags=1), watermark_ms=None)
>>> state.store.get("customers", b"c1") is None    # held until the batch is done
True
>>> state.write_back(watermark_ms=None)
>>> CustomerState.decode(state.store.get("customers", b"c1"), "c1").flags
1
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import structlog

from stream_app.core.customer import CustomerState
from stream_app.experiments.enrolment import EMPTY as NO_ENROLMENTS
from stream_app.experiments.enrolment import Enrolments
from stream_app.partition.clock import forget_at
from stream_app.partition.store import PartitionStore

__all__ = ["PartitionState", "SETTLED_KEY"]

log = structlog.get_logger("stream_app.partition")

# customers kept decoded between batches, the last ones written (~3.5 kB each with the value
# written: ~15 MB per partition)
KEPT_CUSTOMERS = 4096
# the row of ``customers`` that holds the partition's settled-through mark (a customer id is
# never read with a control character: ``schemas/``)
SETTLED_KEY = b"\x00settled-through"
_MARK = struct.Struct("<q")


class PartitionState:
    """The customers of one partition over ``store``; their experiment enrolments (table
    ``enrolments``) too while ``enrolments`` is on (the configuration has experiments); the
    last ``kept`` customers written are kept decoded between batches."""

    __slots__ = ("store", "_customers", "_raw", "_dirty", "enrolments", "_raw_enrolments",
                 "_enrolled", "_dirty_enrolments", "_kept", "_keep", "lapse", "_mark",
                 "_mark_written")

    def __init__(self, store: PartitionStore, kept: int = KEPT_CUSTOMERS) -> None:
        self.store = store
        self._keep = kept
        # customer id -> (the value written, the customer it encodes), the oldest first
        self._kept: dict[str, tuple[bytes, CustomerState]] = {}
        self._customers: dict[str, CustomerState] = {}  # the batch's customers, decoded
        self._raw: dict[str, bytes | None] = {}  # the batch's customers as read, not decoded yet
        self._dirty: dict[str, bytes] = {}  # the batch's customers to write, encoded
        self.enrolments = False
        self._raw_enrolments: dict[str, bytes | None] = {}
        self._enrolled: dict[str, Enrolments] = {}  # as read, to tell a change
        self._dirty_enrolments: dict[str, bytes] = {}
        # settles the lapsed decisions of a customer as read (the session's; None: none lapse)
        self.lapse: Callable[[CustomerState], CustomerState] | None = None
        self._mark: int | None = None  # the settled-through mark, as last read or set
        self._mark_written: int | None = None

    # -- customers ---------------------------------------------------------------------------
    def prefetch(self, customer_ids: Sequence[str]) -> None:
        """Read the customers a batch will need, in one multi-get (two with enrolments)."""
        cached = self._customers
        wanted = list(dict.fromkeys(c for c in customer_ids if c not in cached))
        if wanted:
            keys = [c.encode() for c in wanted]
            self._raw.update(zip(wanted, self.store.get_many("customers", keys)))
            if self.enrolments:
                self._raw_enrolments.update(zip(wanted, self.store.get_many("enrolments", keys)))

    def customer(self, cid: str) -> CustomerState:
        """The customer's state now (empty for a new customer, or one whose stored value a
        version of the engine cannot read)."""
        customer = self._customers.get(cid)
        if customer is None:
            raw = self._raw.pop(cid) if cid in self._raw else \
                self.store.get("customers", cid.encode())
            kept = self._kept.get(cid)
            if kept is not None and raw is not None and kept[0] == raw:
                customer = kept[1]  # the store holds what this state wrote: nothing to decode
            else:
                try:
                    customer = CustomerState.decode(raw, cid)
                except ValueError as exc:  # CustomerCodecError: written by an incompatible version
                    log.warning("customer_unreadable", customer_id=cid, error=str(exc))
                    customer = CustomerState.empty()
            if self.enrolments:
                raw = self._raw_enrolments.pop(cid) if cid in self._raw_enrolments else \
                    self.store.get("enrolments", cid.encode())
                if raw:
                    try:
                        customer = customer.replace(enrolments=Enrolments.decode(raw))
                    except ValueError as exc:
                        log.warning("enrolments_unreadable", customer_id=cid, error=str(exc))
                self._enrolled[cid] = customer.enrolments
            if self.lapse is not None:
                customer = self.lapse(customer)
            self._customers[cid] = customer
        return customer

    def hold(self, cid: str, customer: CustomerState, watermark_ms: int | None) -> None:
        """The customer's new state after a lapsed decision: kept for the batch, written only
        if the batch writes the customer anyway (a read settles it the same way again)."""
        if cid in self._dirty:
            self.put(cid, customer, watermark_ms)
        else:
            self._customers[cid] = customer

    def settled_through(self) -> int | None:
        """The partition's settled-through mark as stored (``None``: no decision lapsed yet)."""
        raw = self.store.get("customers", SETTLED_KEY)
        self._mark = self._mark_written = None if raw is None else _MARK.unpack(raw)[0]
        return self._mark

    def mark_settled(self, watermark_ms: int) -> None:
        """Every decision that expired at or before ``watermark_ms`` has been settled: written
        with the batch."""
        self._mark = watermark_ms

    def put(self, cid: str, customer: CustomerState, watermark_ms: int | None) -> None:
        """Keep the customer's new state for the batch's write (encoded now; settled decisions
        past their grace period at ``watermark_ms`` are dropped from it)."""
        if watermark_ms is not None:
            customer = customer.forgetting(watermark_ms, forget_at)
        self._dirty[cid] = customer.encode()
        self._customers[cid] = customer
        if self.enrolments and customer.enrolments is not self._enrolled.get(cid):
            self._dirty_enrolments[cid] = customer.enrolments.encode()
            self._enrolled[cid] = customer.enrolments

    def write_back(self, watermark_ms: int | None) -> None:
        """The batch is done: write its customers (and the settled-through mark, when it moved)
        and forget the batch."""
        if self._mark != self._mark_written and self._mark is not None:
            self.store.set("customers", SETTLED_KEY, _MARK.pack(self._mark))
            self._mark_written = self._mark
        if self._dirty:
            self.store.set_many("customers",
                                [(cid.encode(), raw) for cid, raw in self._dirty.items()])
            self._keep_decoded()
        if self._dirty_enrolments:
            self.store.set_many("enrolments", [(cid.encode(), raw)
                                               for cid, raw in self._dirty_enrolments.items()])
        self._customers.clear()
        self._dirty.clear()
        self._raw.clear()
        self._raw_enrolments.clear()
        self._enrolled.clear()
        self._dirty_enrolments.clear()

    def _keep_decoded(self) -> None:
        """Keep the batch's written customers decoded, as ``decode`` would give them back
        (enrolments are another table's), dropping the least recently written past ``kept``."""
        if not self._keep:
            return
        kept, customers = self._kept, self._customers
        for cid, raw in self._dirty.items():
            customer = customers[cid]
            if customer.enrolments is not NO_ENROLMENTS:
                customer = customer.replace(enrolments=NO_ENROLMENTS)
            kept.pop(cid, None)
            kept[cid] = (raw, customer)
        for _ in range(len(kept) - self._keep):
            del kept[next(iter(kept))]
