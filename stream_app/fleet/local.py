"""The fleet's learner in-process: what the worker does through Kafka, for the benchmarks, the
learning benchmark and the tests.

``LocalFleet`` takes the records partition sessions return, applies their learning records to
a ``FleetLearner`` and publishes a snapshot every ``snapshot_every_ms`` of event time (the
worker publishes by wall time, about every second, and before every offset commit). A
published snapshot is encoded and decoded, as it would be through the topic, so no session
ever reads the learner's live objects.

>>> from stream_app.core.catalogue import parse_config
>>> from stream_app.core.decision import Decider
>>> from stream_app.simulator import default_engine_config
>>> decider = Decider(parse_config(default_engine_config()))
>>> fleet = LocalFleet(lambda: decider)
>>> fleet.latest.version
1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from stream_app.core.decision import Decider
from stream_app.core.population import PopulationState
from stream_app.fleet.learner import FleetLearner
from stream_app.fleet.snapshot import FleetSnapshot

__all__ = ["LocalFleet", "SNAPSHOT_EVERY_MS"]

SNAPSHOT_EVERY_MS = 60_000


class LocalFleet:
    """A learner and its latest snapshot, in the caller's process."""

    def __init__(self, decider: Callable[[], Decider | None], *, seed: int = 0,
                 population: PopulationState | None = None,
                 snapshot_every_ms: int = SNAPSHOT_EVERY_MS, learning_topic: str = "learning"
                 ) -> None:
        self.learner = FleetLearner(decider, seed=seed, population=population)
        self.snapshot_every_ms = snapshot_every_ms
        self._topic = learning_topic
        self._next_ms: int | None = None
        self.published: list[dict[str, Any]] = []  # delta-metrics and config records it made
        self.latest = self.publish()

    def __call__(self) -> FleetSnapshot:
        """The latest snapshot (what a session's ``fleet`` callable returns)."""
        return self.latest

    def publish(self) -> FleetSnapshot:
        """A snapshot of the learner now, through its encoding."""
        self.latest = FleetSnapshot.decode(self.learner.snapshot().encode())
        return self.latest

    def take(self, records: Iterable[tuple[str, bytes | None, bytes]]
             ) -> list[tuple[str, bytes | None, bytes]]:
        """Learn the learning records among ``records``; returns the others. Publishes a
        snapshot when ``snapshot_every_ms`` of event time passed since the last one."""
        rest = []
        learner = self.learner
        for topic, key, value in records:
            if topic != self._topic:
                rest.append((topic, key, value))
                continue
            self.published += learner.apply(orjson.loads(value))
        reports, configs = learner.reports()
        self.published += reports + configs
        ts = learner.ts
        if ts is not None:
            if self._next_ms is None:
                self._next_ms = ts + self.snapshot_every_ms
            elif ts >= self._next_ms:
                self._next_ms = ts + self.snapshot_every_ms
                self.publish()
        return rest
