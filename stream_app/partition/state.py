"""A partition's state as its session reads and writes it, batch by batch.

- **Customers** (``customers`` table, one value each: ``core/customer.py``): the customers of a
  batch are read in one multi-get (``prefetch``), decoded on first use and kept decoded while
  the batch runs; a new state is encoded when it is made (``put``: a value that cannot be
  stored fails the record that made it, not the batch) and written once per batch
  (``write_back``: one write, one changelog record per key).
- **Pooled arms** (``arms`` table: each segment's and the partition's population Beta evidence):
  read by every decision and settlement, so kept in memory; written at most once per
  ``POOLED_WRITE_EVERY_MS`` of event time, and whenever ``write_pooled`` is called (the
  session's checkpoints, hand-over and stop), like the other population-level state.

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

from stream_app.core.arms import Arms
from stream_app.core.customer import CustomerState
from stream_app.partition.clock import forget_at
from stream_app.partition.store import PartitionStore

__all__ = ["POOLED_WRITE_EVERY_MS", "POPULATION_KEY", "SEGMENT_KEY", "PartitionState"]

log = structlog.get_logger("stream_app.partition")

POPULATION_KEY = b"\x00population"  # the partition's population arms, in ``arms``
SEGMENT_KEY = b"\x00segment:"  # a segment's arms, in ``arms``
POOLED_WRITE_EVERY_MS = 1000


class PartitionState:
    """The customers and pooled arms of one partition over ``store``."""

    __slots__ = ("store", "_customers", "_raw", "_dirty", "_pooled", "_pooled_dirty",
                 "_pooled_written_ms")

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self._customers: dict[str, CustomerState] = {}  # the batch's customers, decoded
        self._raw: dict[str, bytes | None] = {}  # the batch's customers as read, not decoded yet
        self._dirty: dict[str, bytes] = {}  # the batch's customers to write, encoded
        self._pooled: dict[bytes, Arms] = {}
        self._pooled_dirty: set[bytes] = set()
        self._pooled_written_ms = -POOLED_WRITE_EVERY_MS  # event time of the last write

    # -- customers ---------------------------------------------------------------------------
    def prefetch(self, customer_ids: Sequence[str]) -> None:
        """Read the customers a batch will need, in one multi-get."""
        cached = self._customers
        wanted = list(dict.fromkeys(c for c in customer_ids if c not in cached))
        if wanted:
            raws = self.store.get_many("customers", [c.encode() for c in wanted])
            self._raw.update(zip(wanted, raws))

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
            self._customers[cid] = customer
        return customer

    def put(self, cid: str, customer: CustomerState, watermark_ms: int | None) -> None:
        """Keep the customer's new state for the batch's write (encoded now; settled decisions
        past their grace period at ``watermark_ms`` are dropped from it)."""
        if watermark_ms is not None:
            customer = customer.forgetting(watermark_ms, forget_at)
        self._dirty[cid] = customer.encode()
        self._customers[cid] = customer

    def write_back(self, watermark_ms: int | None) -> None:
        """The batch is done: write its customers, the pooled arms when they are due, and
        forget the batch."""
        if self._dirty:
            self.store.set_many("customers",
                                [(cid.encode(), raw) for cid, raw in self._dirty.items()])
        if self._pooled_dirty and watermark_ms is not None and \
                watermark_ms - self._pooled_written_ms >= POOLED_WRITE_EVERY_MS:
            self.write_pooled()
            self._pooled_written_ms = watermark_ms
        self._customers.clear()
        self._dirty.clear()
        self._raw.clear()

    # -- pooled arms -------------------------------------------------------------------------
    def pooled(self, key: bytes) -> Arms:
        """A segment's (``SEGMENT_KEY`` + name) or the population's (``POPULATION_KEY``) arms."""
        arms = self._pooled.get(key)
        if arms is None:
            arms = self._pooled[key] = Arms.decode(self.store.get("arms", key))
        return arms

    def set_pooled(self, key: bytes, arms: Arms) -> None:
        self._pooled[key] = arms
        self._pooled_dirty.add(key)

    def write_pooled(self) -> None:
        """Write the pooled arms that changed since their last write."""
        if self._pooled_dirty:
            self.store.set_many("arms", [(key, self._pooled[key].encode())
                                         for key in self._pooled_dirty])
            self._pooled_dirty.clear()
