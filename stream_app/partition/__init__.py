"""A partition of the engine: the class the worker, the benchmarks and the tests all drive
(``session.PartitionSession``), the store protocol it keeps its state through (``store``), its
customers batch by batch (``state``), its event time (``clock``) and its customers' silence
timers (``silence``: in memory, or on disk in the worker). What the fleet learns is
in ``fleet/``."""

from stream_app.partition.session import SOURCES, TABLES, Emitted, InputRecord, PartitionSession
from stream_app.partition.store import DictStore, PartitionStore

__all__ = ["SOURCES", "TABLES", "DictStore", "Emitted", "InputRecord", "PartitionSession",
           "PartitionStore"]
