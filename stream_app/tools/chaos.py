"""The chaos run: traffic with outcomes while the worker is SIGKILLed at random, then a check,
from the topics alone, that every input had its effect exactly once.

A worker (``stream-app worker``, a child process) answers decision requests for ``customers``
customers at ``rate`` requests per second; a reader answers a share of the decisions it sees
with an outcome (clicked or dismissed, a fresh ``outcome_id`` each). During ``seconds``, the
worker is killed with SIGKILL ``kills`` times at random moments and started again at once; one
of those restarts (``wipe_at``) first deletes its data directory, as a new machine would. Then
the traffic stops, the worker catches up and is stopped cleanly, and the topics are compared
(read ``read_committed``, as Kafka's clients do by default):

- every request has exactly one distinct decision (identical re-sends are counted apart);
- every outcome has exactly one outcome delta (``delta-metrics``) or one dead letter;
- every customer's arms (Beta evidence in the ``customers`` changelog) equal the outcomes sent
  for their decisions: successes the clicks, failures the dismissals, per offer;
- the local RocksDB stores equal the changelog, key by key.

The attribution window (an hour) outlasts the run, so no decision is settled by its timer, and
the configuration has no decay: the expected arms are exact counts.

``stream-app chaos`` runs it against the configured broker; ``tests/integration/test_chaos.py``
runs a short one in CI.
"""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import structlog

from stream_app.core.catalogue import offer_key
from stream_app.core.delta import outcome_rows
from stream_app.core.feedback import REWARD
from stream_app.kafka.client import TopicReader, producer, send
from stream_app.kafka.topics import create_topics
from stream_app.partition.state import SETTLED_KEY
from stream_app.settings import Settings
from stream_app.worker.process import spawn_worker, stop_worker

__all__ = ["CHAOS_CONFIG", "ChaosPlan", "ChaosReport", "local_rows", "read_topic", "run_chaos"]

log = structlog.get_logger("stream_app.tools.chaos")

CHAOS_CONFIG: dict[str, Any] = {
    "version": "chaos-v1",
    "offers": [
        {"id": "cashback", "category": "cards", "value": 1.0},
        {"id": "travel", "category": "travel", "value": 1.0},
        {"id": "dining", "category": "dining", "value": 1.0},
    ],
    # repeated decisions for the same customer, no decay, a window longer than the run
    "use_cases": [{"id": "default", "policy": "thompson", "attribution_window_s": 3600,
                   "rules": {"fatigue": {"same_offer_s": 0}}}],
}


@dataclass(frozen=True)
class ChaosPlan:
    seconds: float = 60.0
    kills: int = 10
    wipe_at: int = 5  # the restart (1-based) that starts from a wiped data dir; 0: none
    customers: int = 200
    rate: float = 40.0  # requests per second
    outcome_fraction: float = 0.6
    seed: int = 1
    settle_timeout_s: float = 180.0


@dataclass
class ChaosReport:
    kills: int = 0
    wiped: int = 0
    requests: int = 0
    decided: int = 0  # requests with a decision
    unanswered: int = 0
    conflicting: int = 0  # requests with more than one distinct decision
    resent: int = 0  # identical copies of a decision beyond the first
    outcomes: int = 0
    deltas: int = 0
    dead_letters: int = 0
    unsettled: int = 0  # outcomes with neither a delta nor a dead letter
    double_settled: int = 0  # outcomes with more than one delta / dead letter
    customers_checked: int = 0
    arms_mismatched: int = 0
    changelog_keys: int = 0
    local_mismatched: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.unanswered + self.unsettled

    @property
    def double_counted(self) -> int:
        return self.conflicting + self.double_settled + self.arms_mismatched

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.double_counted == 0 and self.local_mismatched == 0
                and self.requests > 0 and self.outcomes > 0 and self.customers_checked > 0)

    def summary(self) -> str:
        return (f"kills={self.kills} wiped={self.wiped} | requests={self.requests} "
                f"decided={self.decided} unanswered={self.unanswered} "
                f"conflicting={self.conflicting} resent={self.resent} | outcomes={self.outcomes} "
                f"deltas={self.deltas} dead_letters={self.dead_letters} "
                f"unsettled={self.unsettled} double_settled={self.double_settled} | "
                f"customers={self.customers_checked} arms_mismatched={self.arms_mismatched} | "
                f"changelog_keys={self.changelog_keys} local_mismatched={self.local_mismatched}"
                f" | lost={self.lost} double_counted={self.double_counted}")


def _worker_env(settings: Settings) -> dict[str, str]:
    import os

    return {**os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "STREAM_APP_TOPIC_PREFIX": settings.topic_prefix,
            "STREAM_APP_ID": settings.app_id,
            "STREAM_APP_PARTITIONS": str(settings.partitions),
            "STREAM_APP_DATA_DIR": str(settings.data_dir),
            "STREAM_APP_PROCESSING_GUARANTEE": settings.processing_guarantee,
            "STREAM_APP_PROBE_PORT": "0"}


class _Worker:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: Any = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.process = spawn_worker(_worker_env(self.settings), out)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_worker(self.process, 60.0)
            self.process = None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the worker exited on its own ({self.process.returncode}); "
                               f"see {self.log_path}")


def run_chaos(settings: Settings, plan: ChaosPlan, workdir: Path) -> ChaosReport:
    """Run the plan against ``settings``' broker (topics under its prefix, created here)."""
    rng = random.Random(plan.seed)
    create_topics(settings)
    p = producer(settings.bootstrap_servers)
    send(p, settings.topic("engine-config"), "engine", CHAOS_CONFIG)
    p.flush(30)
    decisions = TopicReader(settings.bootstrap_servers, settings.topic("decisions"))
    worker = _Worker(settings, workdir / "worker.log")
    report = ChaosReport()
    sent_requests: set[str] = set()
    sent_outcomes: dict[str, tuple[str, str, float]] = {}  # outcome id -> customer, offer, reward
    answered: set[str] = set()
    customers = [f"c-chaos-{i:04d}" for i in range(plan.customers)]
    kill_at = sorted(rng.uniform(0.05, 0.9) * plan.seconds for _ in range(plan.kills))

    def answer(batch: list[tuple[bytes | None, bytes]]) -> None:
        for _, value in batch:
            d = orjson.loads(value)
            rid = d["request_id"]
            if rid in answered:
                continue
            answered.add(rid)
            if d.get("offer_id") and rng.random() < plan.outcome_fraction:
                kind = "clicked" if rng.random() < 0.3 else "dismissed"
                oid = f"oc-{uuid.uuid4().hex}"
                sent_outcomes[oid] = (d["customer_id"], d["offer_id"], REWARD[kind])
                send(p, settings.topic("outcomes"), d["customer_id"], {
                    "outcome_id": oid, "decision_id": d["decision_id"],
                    "customer_id": d["customer_id"], "ts": int(time.time() * 1000),
                    "type": kind})

    worker.start()
    try:
        started = time.monotonic()
        interval = 1.0 / plan.rate
        next_send = started
        while (now := time.monotonic()) - started < plan.seconds:
            if kill_at and now - started >= kill_at[0]:
                kill_at.pop(0)
                worker.kill()
                report.kills += 1
                if report.kills == plan.wipe_at:
                    shutil.rmtree(settings.data_dir, ignore_errors=True)
                    report.wiped += 1
                log.info("worker_killed", kill=report.kills, wiped=report.kills == plan.wipe_at,
                         at_s=round(now - started, 1))
                worker.start()
            worker.check_alive()
            while next_send <= now:
                rid = f"rq-{uuid.uuid4().hex}"
                cid = rng.choice(customers)
                sent_requests.add(rid)
                send(p, settings.topic("decision-requests"), cid, {
                    "request_id": rid, "customer_id": cid, "ts": int(time.time() * 1000),
                    "channel": "app", "use_case": "default"})
                next_send += interval
            p.poll(0)
            answer(decisions.poll(0.05))
        p.flush(30)
        # catch up: every request answered, every outcome settled (or dead-lettered)
        deadline = time.monotonic() + plan.settle_timeout_s
        while time.monotonic() < deadline and not sent_requests <= answered:
            worker.check_alive()
            answer(decisions.poll(0.2))
        p.flush(30)
        settled = _settled(settings, set(sent_outcomes), deadline)
        worker.stop()
    finally:
        worker.stop()
        decisions.close()

    _check_decisions(settings, sent_requests, report)
    _check_outcomes(settled, sent_outcomes, report)
    _check_arms_and_stores(settings, sent_outcomes, report)
    log.info("chaos_report", summary=report.summary())
    return report


def _settled(settings: Settings, outcome_ids: set[str], deadline: float) -> Counter[str]:
    """How many deltas or dead letters each outcome got, read until all have one (or the
    deadline) and then a little longer, so a second copy would be seen."""
    counts: Counter[str] = Counter()
    deltas = TopicReader(settings.bootstrap_servers, settings.topic("delta-metrics"),
                         from_start=True)
    letters = TopicReader(settings.bootstrap_servers, settings.topic("dead-letter"),
                          from_start=True)
    try:
        grace_until = None
        while True:
            for _, value in deltas.poll(0.1):
                for row in outcome_rows(orjson.loads(value)):
                    if row.get("outcome_id") in outcome_ids:
                        counts[row["outcome_id"], "delta"] += 1
            for _, value in letters.poll(0.1):
                letter = orjson.loads(value)
                oid = _dead_outcome_id(letter)
                if oid in outcome_ids:
                    counts[oid, "dead"] += 1
            done = {oid for oid, _ in counts} >= outcome_ids
            now = time.monotonic()
            if done and grace_until is None:
                grace_until = now + 3.0
            if (grace_until is not None and now > grace_until) or now > deadline:
                return counts
    finally:
        deltas.close()
        letters.close()


def _dead_outcome_id(letter: dict[str, Any]) -> str | None:
    from stream_app.deadletter import restore_value

    try:
        value = orjson.loads(restore_value(letter) or b"null")
    except Exception:  # noqa: BLE001 - not JSON: not one of ours
        return None
    return value.get("outcome_id") if isinstance(value, dict) else None


def _check_decisions(settings: Settings, sent: set[str], report: ChaosReport) -> None:
    copies: dict[str, Counter[bytes]] = defaultdict(Counter)
    for _, value in read_topic(settings.bootstrap_servers, settings.topic("decisions")):
        d = orjson.loads(value)
        if d["request_id"] in sent:
            copies[d["request_id"]][value] += 1
    report.requests = len(sent)
    report.decided = len(copies)
    report.unanswered = len(sent - set(copies))
    for rid, versions in copies.items():
        if len(versions) > 1:
            report.conflicting += 1
            if len(report.examples) < 5:
                report.examples.append(f"request {rid}: {len(versions)} distinct decisions")
        report.resent += sum(versions.values()) - len(versions)


def _check_outcomes(settled: Counter, sent: dict[str, tuple[str, str, float]],
                    report: ChaosReport) -> None:
    report.outcomes = len(sent)
    for oid in sent:
        n_delta, n_dead = settled[oid, "delta"], settled[oid, "dead"]
        report.deltas += n_delta
        report.dead_letters += n_dead
        if n_delta + n_dead == 0:
            report.unsettled += 1
        elif n_delta + n_dead > 1:
            report.double_settled += 1
            if len(report.examples) < 5:
                report.examples.append(f"outcome {oid}: {n_delta} deltas, {n_dead} dead letters")


def _check_arms_and_stores(settings: Settings, sent: dict[str, tuple[str, str, float]],
                           report: ChaosReport) -> None:
    from stream_app.core.customer import CustomerState

    expected: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for customer, offer, reward in sent.values():
        expected[customer][offer, "succ" if reward else "fail"] += 1
    changelog: dict[bytes, bytes | None] = {}
    table = f"{settings.app_id}-customers-changelog"
    for key, value in read_topic(settings.bootstrap_servers, table):
        changelog[key] = value
    report.changelog_keys = sum(v is not None for v in changelog.values())
    offers = [o["id"] for o in CHAOS_CONFIG["offers"]]
    keys = np.array([offer_key(o) for o in offers], dtype=np.uint32)
    customers = {k.decode() for k, v in changelog.items() if v is not None and k != SETTLED_KEY}
    for customer in set(expected) | customers:
        raw = changelog.get(customer.encode())
        state = CustomerState.decode(raw, customer)
        succ, fail = state.arms.evidence(keys, 0, None)
        got = {(o, "succ"): float(s) for o, s in zip(offers, succ)} | \
              {(o, "fail"): float(f) for o, f in zip(offers, fail)}
        want = expected.get(customer, Counter())
        report.customers_checked += 1
        if any(abs(got[k] - want.get(k, 0)) > 1e-6 for k in got):
            report.arms_mismatched += 1
            if len(report.examples) < 5:
                report.examples.append(f"customer {customer}: arms {got} != outcomes {dict(want)}")
    report.local_mismatched = _compare_local(settings, changelog, report)


def read_topic(bootstrap: str, full_name: str) -> list[tuple[Any, Any]]:
    """Every record of a topic (read_committed), from its start until it is quiet for 3 s."""
    reader = TopicReader(bootstrap, full_name, from_start=True)
    out: list[tuple[Any, Any]] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 3.0:
            batch = reader.poll(0.2)
            if batch:
                out.extend(batch)
                quiet_since = time.monotonic()
    finally:
        reader.close()
    return out


def local_rows(data_dir: Path, table: str = "customers") -> dict[bytes, bytes] | None:
    """Every row of a table in a stopped worker's RocksDB stores (all partitions); None when
    it has none."""
    from rocksdict import AccessType, Options, Rdict

    from stream_app.worker.restore import OFFSET_KEY

    rows: dict[bytes, bytes] = {}
    stores = sorted(Path(data_dir).glob(f"**/{table}-*.db"))
    for path in stores:
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            rows.update((key, value) for key, value in db.items() if key != OFFSET_KEY)
        finally:
            db.close()
    return rows if stores else None


def _compare_local(settings: Settings, changelog: dict[bytes, bytes | None],
                   report: ChaosReport) -> int:
    """Keys whose value in the worker's RocksDB stores differs from the changelog's last."""
    local = local_rows(settings.data_dir)
    if local is None:
        return len(changelog)
    live = {k: v for k, v in changelog.items() if v is not None}
    differ = {k for k in set(live) | set(local) if live.get(k) != local.get(k)}
    for key in sorted(differ)[:3]:
        report.examples.append(f"store key {key!r}: local {'present' if key in local else 'absent'}"
                               f", changelog {'present' if key in live else 'absent'}")
    return len(differ)
