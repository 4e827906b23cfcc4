"""The engine's catalogue as the gateway sees it: the worker's config feed, read-only.

The gateway reads the compacted ``engine-config`` topic exactly as a worker does (``ConfigFeed``:
the whole topic, no consumer group, the last valid version in force) to know which offers a Rank
call's actions may name and each use case's attribution window. A configuration the worker
rejects is the worker's to dead-letter; the gateway only logs it, so a rejected config yields one
dead letter however many gateways run.
"""

from __future__ import annotations

import structlog

from stream_app.core.catalogue import EngineConfig
from stream_app.schemas import InvalidMessage
from stream_app.worker.config_feed import ConfigFeed

__all__ = ["CatalogueFeed"]

log = structlog.get_logger("stream_app.gateway")


class CatalogueFeed(ConfigFeed):
    """``ConfigFeed`` whose rejected configurations are logged, not dead-lettered (and that
    keeps no local state and publishes no accepted configurations: the workers do)."""

    def apply(self, raw: bytes | None) -> EngineConfig | None:  # type: ignore[override]
        try:
            return super().apply(raw)
        except InvalidMessage as exc:
            log.warning("config_ignored", reason=str(exc),
                        kept=self.current.version if self.current else None)
            return None  # judged: the feed reads on, the configuration in force stays
