"""A partition of the engine: the class the worker, the benchmarks and the tests all drive
(``session.PartitionSession``), the store protocol it keeps its state through (``store``), its
customers batch by batch (``state``) and its event time (``clock``). What the fleet learns is
in ``fleet/``."""

from stream_app.partition.session import SOURCES, TABLES, Emitted, InputRecord, PartitionSession
from stream_app.partition.store import DictStore, PartitionStore

__all__ = ["SOURCES", "TABLES", "DictStore", "Emitted", "InputRecord", "PartitionSession",
           "PartitionStore"]
