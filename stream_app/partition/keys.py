"""Which partition a customer's records are on: the Kafka clients' default partitioner.

Producers (Java, librdkafka with ``murmur2_random``, aiokafka) put a keyed record on partition
``murmur2(key) & 0x7fffffff`` modulo the partition count. The in-process drivers split customers
the same way, so a benchmark with P partitions gives each partition the customers the worker
would see on it. Kept here rather than imported from a Kafka client, so that the decision layers
never import one (a test checks it matches aiokafka's).

>>> partition_of("c1", 4)
3
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_of"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit murmur2 with Kafka's seed (``0x9747b28c``), unsigned (as aiokafka's)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    tail = 4 * n4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(customer_id: str | bytes, partitions: int) -> int:
    """The partition of a customer's records (or of any record key) among ``partitions``."""
    key = customer_id.encode() if isinstance(customer_id, str) else customer_id
    return (murmur2(key) & 0x7FFFFFFF) % partitions
