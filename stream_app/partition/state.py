"""A partition's state as its session reads and writes it, batch by batch.

- **Customers** (``customers`` table, one value each: ``core/customer.py``): the customers of a
  batch are read in one multi-get (``prefetch``), decoded on first use and kept decoded while
  the batch runs; a new state is encoded when it is made (``put``: a value that cannot be
  stored fails the record that made it, not the batch) and written once per batch
  (``write_back``: one write, one changelog record per key).

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

from collections.abc import Sequence

import structlog

from stream_app.core.customer import CustomerState
from stream_app.experiments.enrolment import Enrolments
from stream_app.partition.clock import forget_at
from stream_app.partition.store import PartitionStore

__all__ = ["PartitionState"]

log = structlog.get_logger("stream_app.partition")


class PartitionState:
    """The customers of one partition over ``store``; their experiment enrolments (table
    ``enrolments``) too while ``enrolments`` is on (the configuration has experiments)."""

    __slots__ = ("store", "_customers", "_raw", "_dirty", "enrolments", "_raw_enrolments",
                 "_enrolled", "_dirty_enrolments")

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self._customers: dict[str, CustomerState] = {}  # the batch's customers, decoded
        self._raw: dict[str, bytes | None] = {}  # the batch's customers as read, not decoded yet
        self._dirty: dict[str, bytes] = {}  # the batch's customers to write, encoded
        self.enrolments = False
        self._raw_enrolments: dict[str, bytes | None] = {}
        self._enrolled: dict[str, Enrolments] = {}  # as read, to tell a change
        self._dirty_enrolments: dict[str, bytes] = {}

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
            self._customers[cid] = customer
        return customer

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
        """The batch is done: write its customers and forget the batch."""
        if self._dirty:
            self.store.set_many("customers",
                                [(cid.encode(), raw) for cid, raw in self._dirty.items()])
        if self._dirty_enrolments:
            self.store.set_many("enrolments", [(cid.encode(), raw)
                                               for cid, raw in self._dirty_enrolments.items()])
        self._customers.clear()
        self._dirty.clear()
        self._raw.clear()
        self._raw_enrolments.clear()
        self._enrolled.clear()
        self._dirty_enrolments.clear()
