"""The engine's Prometheus metrics, on ``prometheus_client``'s default registry.

One module-level object per metric, as ``prometheus_client`` intends: every process (worker,
learner, gateway) registers the same names once and ``/metrics`` (``observability.probes``)
renders the default registry, next to the client's own ``process_*`` and ``python_*`` metrics.
The helpers below are what the processes call; they keep label values bounded (a dead letter's
reason becomes one of a closed set of categories, never its text with ids in it) and touch a
metric once per batch where they can, not once per record.

>>> from prometheus_client import REGISTRY
>>> before = REGISTRY.get_sample_value("stream_app_dead_letters_total",
...                                    {"reason": "unknown_decision"}) or 0.0
>>> count_dead_letters(["unknown decision_id 'd-9' for this customer (never made here)"])
>>> REGISTRY.get_sample_value("stream_app_dead_letters_total",
...                           {"reason": "unknown_decision"}) - before
1.0
"""

from __future__ import annotations

import re
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info

__all__ = [
    "CONFIG_VERSION", "CONSUMER_LAG", "CUSTOMERS", "DEAD_LETTERS", "DECISIONS",
    "DECISION_LATENCY", "DUPLICATES", "LATENCY_BUCKETS_S", "LEARNER_SNAPSHOT_AGE",
    "MODEL_SNAPSHOT", "MODEL_VERSION", "REASONS", "RECORDS_IN", "RECORDS_OUT", "STATE_BYTES",
    "config_applied", "count_dead_letters", "count_decisions", "count_duplicates", "count_in",
    "count_out", "dead_letter_reason", "learner_snapshot_taken", "model_version_seen",
]

# a decision takes milliseconds: the client's default buckets start at 5 ms
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

DECISIONS = Counter(
    "stream_app_decisions", "Decisions made, by use case, policy, offer and action "
    "(action=no_action: no offer was made; its offer is empty).",
    ("use_case", "policy", "offer", "action"))
DECISION_LATENCY = Histogram(
    "stream_app_decision_latency_seconds", "Time from the start of a decision's batch to the "
    "decision (the decision's latency_ms).", buckets=LATENCY_BUCKETS_S)
RECORDS_IN = Counter("stream_app_records_in", "Records read, by topic.", ("topic",))
RECORDS_OUT = Counter("stream_app_records_out", "Records produced, by topic.", ("topic",))
DEAD_LETTERS = Counter(
    "stream_app_dead_letters", "Messages dead-lettered, by the category of their reason "
    "(REASONS in stream_app/observability/metrics.py; the full reason is in the dead letter).",
    ("reason",))
DUPLICATES = Counter("stream_app_duplicates",
                     "Input messages recognised as already processed, by topic.", ("topic",))
CONSUMER_LAG = Gauge("stream_app_consumer_lag",
                     "Records in an assigned input partition after its committed offset.",
                     ("topic", "partition"))
STATE_BYTES = Gauge("stream_app_state_bytes", "Estimated size of a table partition's local "
                    "store (RocksDB: live data plus memtables).", ("table", "partition"))
CUSTOMERS = Gauge("stream_app_customers",
                  "Estimated number of customers kept by a partition.", ("partition",))
CONFIG_VERSION = Info("stream_app_config_version", "The engine config in force.")
MODEL_VERSION = Info("stream_app_model_version",
                     "The model family a partition's decisions are made with.", ("partition",))
MODEL_SNAPSHOT = Gauge("stream_app_model_snapshot_version",
                       "Version of the fleet's learner snapshot a partition decides with.",
                       ("partition",))
LEARNER_SNAPSHOT_AGE = Gauge("stream_app_learner_snapshot_age_seconds",
                             "Seconds since the newest learner snapshot in force was taken "
                             "(NaN until one is).")
LEARNER_SNAPSHOT_AGE.set(float("nan"))  # not 0: no snapshot is not a fresh one

# A dead letter's reason, by how its text begins, and the category it is counted under; a reason
# not listed here is counted as "other".
REASONS: tuple[tuple[str, str], ...] = (
    ("empty message", "empty_message"),
    ("message too large", "too_large"),
    ("not json", "not_json"),
    ("not a json object", "not_json"),
    ("schema violation", "schema_violation"),
    ("no schema for topic", "unknown_topic"),
    ("message key must be", "wrong_key"),
    ("no engine config", "no_config"),
    ("config rejected", "config_rejected"),
    ("unknown decision_id", "unknown_decision"),
    ("interaction rejected", "interaction_rejected"),
    ("internal error", "internal_error"),
)
_SNAPSHOT_VERSION = re.compile(r"fleet:(\d+)")
# labelled children of the counters, looked up once (``labels()`` costs microseconds: it
# validates and locks); counters are never cleared, so a child stays the one exported
_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}
_MODEL_VERSIONS: dict[int, str] = {}  # the last model version seen per partition


def _child(counter: Counter, *labels: str) -> Any:
    child = _CHILDREN.get((counter, labels))
    if child is None:
        child = _CHILDREN[(counter, labels)] = counter.labels(*labels)
    return child


def dead_letter_reason(reason: str) -> str:
    """The bounded category of a dead letter's ``reason`` (``REASONS``, else ``"other"``).

    >>> dead_letter_reason("schema violation (outcomes v1): data.ts must be integer")
    'schema_violation'
    >>> dead_letter_reason("the dog ate it")
    'other'
    """
    text = reason.lstrip().lower()
    for prefix, category in REASONS:
        if text.startswith(prefix):
            return category
    return "other"


def count_in(topic: str, records: int) -> None:
    """``records`` read from ``topic``."""
    _child(RECORDS_IN, topic).inc(records)


def count_out(sent: Mapping[str, int]) -> None:
    """Records produced since the last call, by topic."""
    for topic, records in sent.items():
        _child(RECORDS_OUT, topic).inc(records)


def count_decisions(decisions: Sequence[Mapping[str, Any]]) -> None:
    """Decisions as the decision core returns them (``use_case``, ``policy``, ``offer_id``,
    ``action``, ``latency_ms``): one counter increment per distinct label set of the batch."""
    tally: dict[tuple[str, str, str, str], int] = {}
    for d in decisions:
        labels = (d["use_case"], d["policy"], d.get("offer_id") or "", d["action"])
        tally[labels] = tally.get(labels, 0) + 1
    for labels, n in tally.items():
        _child(DECISIONS, *labels).inc(n)
    observe = DECISION_LATENCY.observe
    for d in decisions:
        latency_ms = d.get("latency_ms")
        if latency_ms is not None:
            observe(latency_ms / 1000.0)


def count_dead_letters(reasons: Iterable[str]) -> None:
    """Dead letters, by the category of their reason."""
    for category, n in Tally(dead_letter_reason(r) for r in reasons).items():
        _child(DEAD_LETTERS, category).inc(n)


def count_duplicates(topic: str, duplicates: int) -> None:
    """Input messages of ``topic`` recognised as duplicates."""
    if duplicates:
        _child(DUPLICATES, topic).inc(duplicates)


def config_applied(version: str) -> None:
    """The engine config ``version`` is in force."""
    CONFIG_VERSION.info({"version": str(version)})


def model_version_seen(partition: int, model_version: str) -> None:
    """A partition decided with ``model_version`` (``"<family>+fleet:<snapshot version>"``): the
    family as the partition's model version, the snapshot's version as a gauge (as a label, a
    version that moves with every snapshot would make a new series each time).

    >>> model_version_seen(7, "beta-arms-v3+fleet:42")
    >>> from prometheus_client import REGISTRY
    >>> REGISTRY.get_sample_value("stream_app_model_snapshot_version", {"partition": "7"})
    42.0
    >>> REGISTRY.get_sample_value("stream_app_model_version_info",
    ...                           {"partition": "7", "version": "beta-arms-v3"})
    1.0
    """
    if _MODEL_VERSIONS.get(partition) == model_version:
        return
    _MODEL_VERSIONS[partition] = model_version
    family, _, learned = model_version.partition("+")
    label = str(partition)
    MODEL_VERSION.labels(label).info({"version": family})
    snapshot = _SNAPSHOT_VERSION.search(learned)
    if snapshot is not None:
        MODEL_SNAPSHOT.labels(label).set(int(snapshot.group(1)))


def learner_snapshot_taken(taken_at_s: float) -> None:
    """The newest learner snapshot in force was taken at ``taken_at_s`` (Unix seconds): its age
    is computed at every scrape."""
    LEARNER_SNAPSHOT_AGE.set_function(lambda: max(0.0, time.time() - taken_at_s))
