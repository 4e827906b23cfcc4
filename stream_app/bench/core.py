"""The worker's per-event work without Kafka: how fast can the decision core go on one core?

``core_bench`` drives the same calls, in the same order, as the Faust agents of
``worker/app.py`` do for one partition, with dicts of *encoded bytes* standing in for the RocksDB
tables (so state codecs are paid as in the worker): per request ``advance`` (fire attribution
timers: ``Decider.expire`` + store + roll-ups) then ``Decider.decide`` and a JSON-encoded
decision; ``interactions_per_request`` interactions through ``Decider.observe``; an outcome for
``outcome_fraction`` of the decisions through ``Decider.learn``. Event time advances by
``1000 / event_rate`` ms per request, so with an attribution window of ``attribution_s`` the
timers fire as they would at that event rate. Kafka, Faust and the broker are not in this
number: it is the ceiling the Python engine sets for one worker process.

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
from stream_app.core.arms import Arms
from stream_app.core.catalogue import parse_config
from stream_app.core.customer import CustomerState
from stream_app.core.decision import Decider, Evidence, Learned, decision_id_for, segment_of
from stream_app.core.population import PopulationState
from stream_app.worker.partition_clock import PartitionClock, pack_pending, unpack_pending

__all__ = ["core_bench"]

_POPULATION, _SEGMENT = b"\x00population", b"\x00segment:"


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class _Partition:
    """One partition's tables as dicts of bytes, and the worker's load/store/settle steps."""

    def __init__(self, decider: Decider, seed: int) -> None:
        self.decider = decider
        self.population = PopulationState(seed=seed)
        self.clock = PartitionClock()
        self.customers: dict[bytes, bytes] = {}
        self.arms: dict[bytes, bytes] = {}
        self.pending: dict[bytes, bytes] = {}
        self.sent = 0  # bytes of delta records "published"

    def customer(self, cid: str) -> CustomerState:
        return CustomerState.decode(self.customers.get(cid.encode()))

    def evidence(self, cid: str, segment: str) -> Evidence:
        return Evidence(Arms.decode(self.arms.get(cid.encode())),
                        Arms.decode(self.arms.get(_SEGMENT + segment.encode())),
                        Arms.decode(self.arms.get(_POPULATION)))

    def keep(self, pending: Any) -> None:
        self.pending[pending.decision_id.encode()] = pack_pending(0, pending)
        self.clock.schedule(pending)

    def settle(self, learned: Learned) -> None:
        p = learned.pending
        self.arms[p.customer_id.encode()] = learned.evidence.customer.encode()
        self.arms[_SEGMENT + p.segment.encode()] = learned.evidence.segment.encode()
        self.arms[_POPULATION] = learned.evidence.population.encode()
        self.customers[p.customer_id.encode()] = learned.customer.encode()
        self.keep(p)
        for record in learned.records:
            if record.get("kind") == "outcome":
                self.clock.rollups.add(record)
            self.sent += len(_dumps(record))

    def advance(self, ts: int) -> None:
        for decision_id in self.clock.timers.advance(ts):
            key = decision_id.encode()
            raw = self.pending.get(key)
            if raw is None:
                continue
            _, pending = unpack_pending(raw)
            if pending.is_settled:
                del self.pending[key]
                continue
            self.settle(self.decider.expire(self.evidence(pending.customer_id, pending.segment),
                                            self.customer(pending.customer_id), pending,
                                            self.population))
        for rollup in self.clock.rollups.flush(self.clock.timers.watermark_ms):
            self.sent += len(_dumps(rollup))


def core_bench(customers: int = 5000, offers: int = 20, requests: int = 5000,
               policy: str = "thompson", outcome_fraction: float = 0.1,
               interactions_per_request: float = 0.5, attribution_s: float = 10.0,
               event_rate: float = 100.0, seed: int = 7) -> dict[str, Any]:
    """Run ``requests`` requests (and their interactions / outcomes) through one partition."""
    params = BenchParams(customers=customers, offers=offers, policy=policy,
                         attribution_s=attribution_s)
    decider = Decider(parse_config(engine_config(params)), seed)
    part = _Partition(decider, seed)
    rng = np.random.default_rng(seed)
    who = rng.integers(customers, size=requests)
    t0 = 1_764_000_000_000
    step = 1000.0 / event_rate
    n_int = n_out = no_action = 0
    owed = 0.0
    outcomes: list[tuple[int, dict]] = []  # (due at ts, outcome)
    started = time.perf_counter()
    for i in range(requests):
        ts = t0 + int(i * step)
        cid = f"c{who[i]:07d}"
        owed += interactions_per_request
        while owed >= 1.0:
            owed -= 1.0
            part.advance(ts)
            event = {"event_id": f"e{n_int}", "customer_id": cid, "ts": ts, "type": "transaction",
                     "channel": "app", "amount": 12.5, "category": "groceries",
                     "merchant": "BenchMart"}
            observed = decider.observe(part.customer(cid), event, part.population)
            part.customers[cid.encode()] = observed.customer.encode()
            for record in observed.records:
                part.sent += len(_dumps(record))
            n_int += 1
        while outcomes and outcomes[0][0] <= ts:
            _, outcome = outcomes.pop(0)
            part.advance(outcome["ts"])
            raw = part.pending.get(outcome["decision_id"].encode())
            if raw is None:
                continue
            _, pending = unpack_pending(raw)
            part.settle(decider.learn(part.evidence(pending.customer_id, pending.segment),
                                      part.customer(pending.customer_id), pending, outcome,
                                      part.population))
            n_out += 1
        request = {"request_id": f"r{i}", "customer_id": cid, "ts": ts, "channel": "app",
                   "use_case": "default", "context": {"page": "home"}}
        part.advance(ts)
        if decision_id_for(request["request_id"]).encode() in part.pending:
            continue
        customer = part.customer(cid)
        segment = segment_of(request, customer.profile.segment)
        decided = decider.decide(request, customer, part.evidence(cid, segment), part.population)
        if decided.pending is None:
            no_action += 1
        else:
            part.keep(decided.pending)
            part.customers[cid.encode()] = decided.customer.encode()
            if ((i * 2654435761) & 0xFFFFFFFF) < outcome_fraction * 4294967296.0:
                outcomes.append((ts + 200, {
                    "outcome_id": f"o{i}", "decision_id": decided.pending.decision_id,
                    "customer_id": cid, "ts": ts + 200, "type": "clicked", "value": 1.0}))
        part.sent += len(_dumps(decided.decision))
    elapsed = time.perf_counter() - started
    return {"requests": requests, "decisions": requests - no_action, "no_action": no_action,
            "interactions": n_int, "outcomes": n_out, "seconds": round(elapsed, 3),
            "per_s": round(requests / elapsed, 1),
            "model_version": part.population.suite.version}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--offers", type=int, default=20)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--policy", default="thompson")
    ap.add_argument("--event-rate", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    print(orjson.dumps(core_bench(a.customers, a.offers, a.requests, a.policy,
                                  event_rate=a.event_rate, seed=a.seed)).decode())


if __name__ == "__main__":
    main()
