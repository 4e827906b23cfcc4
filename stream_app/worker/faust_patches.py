"""How long the worker's consumer lets a fetch wait at the broker (``fetch_max_wait_ms``).

faust-streaming 0.15 builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, hard-coded:
an empty fetch may sit at the broker for 1.5 s. aiokafka keeps one fetch in flight per broker
and sends none while records it fetched are still unconsumed, so at a steady input rate records
end up queued behind a waiting fetch. Measured with the engine taken out
(``stream-app bench --worker faust-relay``, 2,000 customers, ``--load-steps 1000``): at 1,000
requests/s the relay fell behind, reading records 1.2-1.6 s after they were produced, with
0.41 of a core busy. With 20 ms it kept up at p50 7.1 / p99 56 ms end to end, and only
2,000 requests/s overloaded it, at 0.94 of a core (docs/benchmarks/performance.md, part 8).

A shorter wait costs the broker empty fetches on an idle input: ``1000 / wait_ms`` per second,
50 at the default 20 ms. :func:`install` sets the wait of every worker consumer Faust creates in
this process from then on: the worker's and the Faust relay's.

>>> install(20); install(20)  # idempotent
>>> install(0)
Traceback (most recent call last):
...
ValueError: fetch_max_wait_ms must be >= 1, got 0
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]

_WAIT_MS = "_stream_app_fetch_max_wait_ms"


def install(wait_ms: int) -> None:
    """Every worker consumer Faust creates from now on lets a fetch wait ``wait_ms`` at most."""
    if wait_ms < 1:
        raise ValueError(f"fetch_max_wait_ms must be >= 1, got {wait_ms}")
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    thread_class: Any = AIOKafkaConsumerThread
    if not hasattr(thread_class, _WAIT_MS):
        create = thread_class._create_worker_consumer

        def _create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = create(self, transport)
            # read by AIOKafkaConsumer.start() when it builds its Fetcher
            consumer._fetch_max_wait_ms = getattr(thread_class, _WAIT_MS)
            return consumer

        thread_class._create_worker_consumer = _create_worker_consumer
    setattr(thread_class, _WAIT_MS, int(wait_ms))
