"""Where the consumer reads from after Faust dropped what it had fetched.

Faust (faust-streaming 0.15) drops records it has fetched in two places: those of a partition
whose tables are still recovering, and every record of a fetch that returns while the flow is
stopped (a rebalance in progress: ``Consumer.getmany``, "getmany called while flow not
active"). aiokafka's fetch position has moved past them either way, so Faust then calls
``Consumer.perform_seek``, which seeks the partitions *the group has committed* back to their
committed offsets. That leaves two kinds of partition past records that were never processed:

- an input partition the group never committed (or committed at 0): aiokafka's
  ``seek_to_committed`` does not move it. It is read from its start, as
  ``auto.offset.reset=earliest`` says; whatever a previous owner processed of it is recognised
  again (decision ids, outcome ids, interaction event ids: ``core/customer.py``). Found by
  test_rebalance: outcomes sent while the new owner recovered were lost.
- a changelog partition being read by the table recovery (an active one while the recovery
  runs, a standby one always): Faust never commits those, so nothing seeks them back, the
  recovery waits for records it will never receive and the partition's input stays paused
  (seen in test_rebalance under CPU contention: "No event received for active tp" for two
  minutes). Such a partition is sought back to the last offset the recovery applied (Faust's
  own starting point: it re-reads that record, and skips every offset it has seen).

:func:`seek_back` wraps ``perform_seek`` with both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

__all__ = ["seek_back"]


def seek_back(consumer: Any, inputs: Collection[str], tables: Any,
              log: Any) -> Callable[[], Awaitable[None]]:
    """``consumer.perform_seek``, then the two seeks above. ``tables`` is Faust's table
    manager: its ``recovery`` (``in_recovery``, ``active_tps`` / ``active_offsets``,
    ``standby_tps`` / ``standby_offsets``) is read at each call."""
    seek_to_committed = consumer.perform_seek

    async def perform_seek() -> None:
        await seek_to_committed()
        recovery = tables.recovery
        assigned = consumer.assignment()
        never = sorted(tp for tp in assigned  # TP: a (topic, partition) tuple
                       if tp.topic in inputs and consumer._committed_offset.get(tp) is None)
        for tp in never:
            await consumer.seek(tp, 0)
        if never:
            log.info("seek_to_start", partitions=[f"{tp.topic}[{tp.partition}]" for tp in never])
        reading = {tp: recovery.standby_offsets.get(tp, -1) for tp in recovery.standby_tps}
        if recovery.in_recovery:
            reading.update({tp: recovery.active_offsets.get(tp, -1) for tp in recovery.active_tps})
        back = sorted((tp, max(offset, 0)) for tp, offset in reading.items() if tp in assigned)
        for tp, offset in back:
            await consumer.seek(tp, offset)
        if back:
            log.info("changelog_seek_back",
                     partitions={f"{tp.topic}[{tp.partition}]": offset for tp, offset in back})

    return perform_seek
