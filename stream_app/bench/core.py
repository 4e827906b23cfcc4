"""The worker's per-event work without Kafka: how fast can the engine go on one core?

``core_bench`` drives the worker's own partition engine (``PartitionSession``) for one partition,
with dicts of *encoded bytes* standing in for the RocksDB tables (``DictStore``), and input
messages as the JSON bytes a topic would carry: decoding, validation, event time and timers,
state codecs, the decision core and the encoding of every record sent are all paid as in the
worker. The learning records the partition sends go to the fleet's learner in-process
(``fleet/local.py``), timed apart: the learner is another agent (another process, when it runs
on its own), so ``per_s`` is the partition's own rate and ``learner_s`` the learner's time.
Requests are handed over in micro-batches of ``batch`` records as the worker's agents
take them, with ``interactions_per_request`` interactions and an outcome for
``outcome_fraction`` of the decisions (200 ms after them) in their own batches. Event time
advances by ``1000 / event_rate`` ms per request, so with an attribution window of
``attribution_s`` the timers fire as they would at that event rate. Kafka, Faust and the broker
are not in this number: it is the ceiling the engine sets for one worker process.

>>> r = core_bench(customers=50, offers=5, requests=200, seed=1)
>>> r["requests"], r["decisions"] + r["no_action"] == 200, r["per_s"] > 0
(200, True, True)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import orjson

from stream_app.bench.params import BenchParams, engine_config
from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider
from stream_app.fleet.local import LocalFleet
from stream_app.partition import DictStore, InputRecord, PartitionSession

__all__ = ["core_bench"]


def _count(records: list[tuple[str, bytes | None, bytes]], by_topic: dict[str, int]) -> int:
    size = 0
    for topic, _, value in records:
        by_topic[topic] = by_topic.get(topic, 0) + 1
        size += len(value)
    return size


def core_bench(customers: int = 5000, offers: int = 20, requests: int = 5000,
               policy: str = "thompson", outcome_fraction: float = 0.1,
               interactions_per_request: float = 0.5, attribution_s: float = 10.0,
               event_rate: float = 100.0, seed: int = 7, batch: int = 64) -> dict[str, Any]:
    """Run ``requests`` requests (and their interactions / outcomes) through one partition."""
    params = BenchParams(customers=customers, offers=offers, policy=policy,
                         attribution_s=attribution_s)
    decider = Decider(parse_config(engine_config(params)), seed)
    store = DictStore()
    fleet = LocalFleet(lambda: decider, seed=seed, snapshot_every_ms=1000)
    session = PartitionSession(0, store, lambda: decider, fleet=fleet, seed=seed)
    learner_s = 0.0
    rng = np.random.default_rng(seed)
    who = rng.integers(customers, size=requests)
    t0 = 1_764_000_000_000
    step = 1000.0 / event_rate
    n_int = n_out = no_action = sent = 0
    out_records: dict[str, int] = {}
    owed = 0.0
    outcomes: list[tuple[int, str, bytes]] = []  # (due at ts, customer, outcome) in ts order
    dumps = orjson.dumps
    started = time.perf_counter()
    for first in range(0, requests, batch):
        ts_first = t0 + int(first * step)
        due = [o for o in outcomes if o[0] <= ts_first]
        if due:
            outcomes = outcomes[len(due):]
            emitted = session.process("outcomes", [InputRecord(c.encode(), o) for _, c, o in due])
            n_out += len(due) - emitted.dead_letters
            sent += _count(emitted.records, out_records)
            learner_s -= time.perf_counter()
            fleet.take(emitted.records)
            learner_s += time.perf_counter()
        interactions, reqs = [], []
        for i in range(first, min(first + batch, requests)):
            ts = t0 + int(i * step)
            cid = f"c{who[i]:07d}"
            owed += interactions_per_request
            while owed >= 1.0:
                owed -= 1.0
                interactions.append(InputRecord(cid.encode(), dumps({
                    "event_id": f"e{n_int}", "customer_id": cid, "ts": ts, "type": "transaction",
                    "channel": "app", "amount": 12.5, "category": "groceries",
                    "merchant": "BenchMart"})))
                n_int += 1
            reqs.append(InputRecord(cid.encode(), dumps({
                "request_id": f"r{i}", "customer_id": cid, "ts": ts, "channel": "app",
                "use_case": "default", "context": {"page": "home"}})))
        for source, records in (("interactions", interactions), ("decision-requests", reqs)):
            if not records:
                continue
            emitted = session.process(source, records)
            sent += _count(emitted.records, out_records)
            learner_s -= time.perf_counter()
            fleet.take(emitted.records)
            learner_s += time.perf_counter()
            for decision in emitted.decisions:
                if decision["action"] != "offer":
                    no_action += 1
                    continue
                i = int(decision["request_id"][1:])
                if ((i * 2654435761) & 0xFFFFFFFF) < outcome_fraction * 4294967296.0:
                    cid, ts = decision["customer_id"], decision["ts"] + 200
                    outcomes.append((ts, cid, dumps({
                        "outcome_id": f"o{i}", "decision_id": decision["decision_id"],
                        "customer_id": cid, "ts": ts, "type": "clicked", "value": 1.0})))
    elapsed = time.perf_counter() - started - learner_s
    return {"requests": requests, "decisions": requests - no_action, "no_action": no_action,
            "interactions": n_int, "outcomes": n_out, "seconds": round(elapsed, 3),
            "per_s": round(requests / elapsed, 1), "learner_s": round(learner_s, 3),
            "bytes_sent": sent,
            # what the worker would write per request: records sent + changelog records
            "records_per_request": {
                **{t: round(n / requests, 3) for t, n in sorted(out_records.items())},
                **{f"{t}-changelog": round(n / requests, 3)
                   for t, n in sorted(store.writes.items())}},
            "state_bytes_per_customer": round(
                store.size("customers") / max(len(store.tables.get("customers", {})), 1), 1),
            "model_version": session.view.model_version}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--offers", type=int, default=20)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--policy", default="thompson")
    ap.add_argument("--event-rate", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64, help="records per micro-batch")
    a = ap.parse_args(argv)
    print(orjson.dumps(core_bench(a.customers, a.offers, a.requests, a.policy,
                                  event_rate=a.event_rate, seed=a.seed, batch=a.batch)).decode())


if __name__ == "__main__":
    main()
