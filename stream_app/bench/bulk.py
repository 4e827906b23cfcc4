"""Bulk state: give up to a million customers state without a million decisions.

Preloading a customer through the engine costs one decision (~113/s on this machine: 2.5 h for
1 M customers). For the benchmark's scale questions (memory, state size, restart-to-serving,
throughput with 1 M customers in RocksDB) what matters is that the state is *there*, in the
engine's formats, where the worker would have put it. So: the worker first builds real state for
``customers`` customers (the preload phase); it is stopped; their rows of the ``customers``
table (one value per customer: profile, contact history, Beta evidence, seen ids; their
decisions left out, they are the template's own) are read from its RocksDB stores and used as
templates; for every further customer
the row of a template (cycling) is written under the new customer's key to the tables' changelog
topics, on the partition the load generator's producer sends that customer's requests to (the
Java clients' partitioner, murmur2 of the key, as in ``load.py``); the
worker, started again, recovers them like any changelog records.

The state bytes are real engine state (profile, contact history, Beta evidence), copied: cloned
customers behave like their template in decisions. Row sizes, key layout and formats are those of
real customers.

>>> templates = {"customers": [b"A", b"BB"], "arms": [b"x"]}
>>> [(t, k, v) for t, k, v in clone_rows(templates, 5, 7)]
[('customers', b'c0000005', b'BB'), ('arms', b'c0000005', b'x'), ('customers', b'c0000006', b'A'), ('arms', b'c0000006', b'x')]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from stream_app.bench.load import CUSTOMER_KEY, customer_key
from stream_app.kafka.client import PARTITIONER
from stream_app.kafka.security import client_config

__all__ = ["BULK_TABLES", "clone_rows", "read_templates", "seed_changelogs"]

BULK_TABLES = ("customers",)  # the tables with one row per customer


def read_templates(data_dir: Path, tables: tuple[str, ...] = BULK_TABLES,
                   limit: int = 100_000) -> dict[str, list[bytes]]:
    """Values of the rows keyed by a bench customer, per table (up to ``limit`` each), read from
    the worker's RocksDB stores (read-only: the worker must be stopped)."""
    from rocksdict import AccessType, Options, Rdict

    out: dict[str, list[bytes]] = {t: [] for t in tables}
    for db in sorted(data_dir.rglob("*.db")):
        table = db.name.rsplit("-", 1)[0]
        if table not in out or not db.is_dir():
            continue
        store = Rdict(str(db), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            rows = out[table]
            for k, v in store.items():
                if len(rows) >= limit:
                    break
                if CUSTOMER_KEY.fullmatch(k):
                    rows.append(_without_decisions(table, k, v))
        finally:
            store.close()
    return out


def _without_decisions(table: str, key: bytes, value: bytes) -> bytes:
    """A customer's value without its decisions (they are the template customer's own)."""
    if table != "customers":
        return value
    from stream_app.core.customer import CustomerState

    return CustomerState.decode(value, key.decode()).replace(decisions=()).encode()


def clone_rows(templates: dict[str, list[bytes]], start: int,
               stop: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(table, key, value) for customers ``start .. stop - 1``, template rows cycling."""
    tables = [(t, rows) for t, rows in templates.items() if rows]
    for i in range(start, stop):
        key = customer_key(i)
        for table, rows in tables:
            yield table, key, rows[i % len(rows)]


def seed_changelogs(bootstrap: str, changelog_topic: Callable[[str], str],
                    templates: dict[str, list[bytes]], start: int, stop: int,
                    progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Write the cloned rows for customers ``start .. stop - 1`` to the tables' changelog topics;
    return how many were written and how long it took (flushed: every record acknowledged)."""
    from confluent_kafka import Producer

    if not any(templates.values()):
        raise ValueError("no template rows: the preload phase left no customer state")
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    producer = Producer(client_config({
        "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
        "partitioner": PARTITIONER,  # = the load generator's
        "batch.num.messages": 10_000,  # uncompressed, as Faust writes them
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576}))
    topics = {t: changelog_topic(t) for t in templates}
    started = time.monotonic()
    records = 0
    for table, key, value in clone_rows(templates, start, stop):
        while True:
            try:
                producer.produce(topics[table], value, key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let librdkafka send
                producer.poll(0.05)
        records += 1
        if records % 100_000 == 0:
            producer.poll(0)
            if progress is not None:
                progress(f"bulk state: {records:,} rows produced")
    if producer.flush(300):
        raise RuntimeError("bulk state: records still unsent after 300 s")
    if errors:
        raise RuntimeError(f"bulk state: delivery failed: {'; '.join(errors)}")
    return {"customers": stop - start, "records": records,
            "seconds": round(time.monotonic() - started, 3)}
