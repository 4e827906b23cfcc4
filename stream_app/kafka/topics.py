"""The topics of the contract (DESIGN.md), created idempotently with the Kafka admin API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stream_app.settings import Settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool = False
    co_partitioned: bool = True  # keyed by customer id, same partition count as the inputs
    retention_ms: int | None = None


CONTRACT: tuple[TopicSpec, ...] = (
    TopicSpec("interactions"),
    TopicSpec("decision-requests"),
    TopicSpec("outcomes"),
    TopicSpec("decisions"),
    TopicSpec("delta-metrics"),
    TopicSpec("customer-scores", compacted=True),
    TopicSpec("engine-config", compacted=True, co_partitioned=False),
    # every engine config a worker accepted, by version: a restart never starts without one
    TopicSpec("accepted-configs", compacted=True, co_partitioned=False),
    TopicSpec("dead-letter"),
    # fleet-wide learning (``fleet/``): the partitions' lessons, to one learner; its snapshots
    TopicSpec("learning", co_partitioned=False),
    TopicSpec("learner-snapshots", compacted=True, co_partitioned=False),
    # erasure (``partition/erasure.py``): requests keyed by customer id, like the other inputs;
    # one audit record per request, from the partition that erased
    TopicSpec("erasure-requests"),
    TopicSpec("erasure-audit"),
)

INPUT_TOPICS = ("interactions", "decision-requests", "outcomes")


def _admin(settings: Settings):
    from confluent_kafka.admin import AdminClient

    from stream_app.kafka.security import client_config

    return AdminClient(client_config({"bootstrap.servers": settings.bootstrap_servers}))


def _metadata(admin, timeout_s: float):
    """The cluster's metadata; a refusal of the client's credentials is raised at once
    (``KafkaAuthenticationError``) rather than as a timeout at the end."""
    import time

    from confluent_kafka import KafkaException

    from stream_app.kafka.security import raise_refusal

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except KafkaException:
            raise_refusal(admin)
            if time.monotonic() >= deadline:
                raise


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every contract topic that does not exist yet; return name -> 'created' / 'exists'."""
    return ensure_topics(settings, [(settings.topic(spec.name), spec) for spec in CONTRACT],
                         timeout_s)


def ensure_topics(settings: Settings, topics: Iterable[tuple[str, TopicSpec]],
                  timeout_s: float = 30.0) -> dict[str, str]:
    """Create the topics (full name, spec) that do not exist yet, idempotently (a topic another
    process created meanwhile counts as existing); return name -> 'created' / 'exists'."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(settings)
    existing = set(_metadata(admin, timeout_s).topics)
    result: dict[str, str] = {}
    new = []
    for name, spec in topics:
        if name in existing:
            result[name] = "exists"
            continue
        config = {"cleanup.policy": "compact"} if spec.compacted else {}
        if spec.retention_ms is not None:
            config["retention.ms"] = str(spec.retention_ms)
        partitions = settings.partitions if spec.co_partitioned else 1
        new.append(NewTopic(name, num_partitions=partitions, replication_factor=1, config=config))
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                result[name] = "exists"
    return result


def list_topics(settings: Settings, timeout_s: float = 15.0) -> dict[str, int]:
    """Contract topics that exist, with their partition counts."""
    meta = _metadata(_admin(settings), timeout_s)
    names = {settings.topic(s.name) for s in CONTRACT}
    return {n: len(t.partitions) for n, t in sorted(meta.topics.items()) if n in names}


def delete_topics_with_prefixes(settings: Settings, prefixes: tuple[str, ...],
                                timeout_s: float = 60.0) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` and wait until it is gone
    (used to give a sandbox such as the demo a clean slate)."""
    import time

    admin = _admin(settings)
    names = [n for n in admin.list_topics(timeout=15).topics if n.startswith(prefixes)]
    if not names:
        return []
    for fut in admin.delete_topics(names, operation_timeout=timeout_s).values():
        fut.result()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not set(names) & set(admin.list_topics(timeout=15).topics):
            break
        time.sleep(0.3)
    return names
