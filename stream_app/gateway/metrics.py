"""The gateway's Prometheus metrics, on the default registry that ``/metrics`` renders
(``observability/probes.py``, served on ``STREAM_APP_GATEWAY_PROBE_PORT``).

Labels stay bounded: a route is its pattern (``/personalizer/v1.0/events/{event_id}/reward``),
never a path with an id in it.

>>> from prometheus_client import REGISTRY
>>> before = REGISTRY.get_sample_value("stream_app_gateway_answers_total",
...     {"api": "rank", "use_case": "doc", "served_by": "fallback"}) or 0.0
>>> answered("rank", "doc", "fallback", None)
>>> REGISTRY.get_sample_value("stream_app_gateway_answers_total",
...     {"api": "rank", "use_case": "doc", "served_by": "fallback"}) - before
1.0
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stream_app.observability.metrics import LATENCY_BUCKETS_S

__all__ = ["APPRENTICE_ONLINE", "ANSWERS", "LATENCY", "REQUESTS", "REWARDS", "answered",
           "called", "rewarded"]

REQUESTS = Counter("stream_app_gateway_requests", "HTTP calls the gateway answered, by route "
                   "pattern and status.", ("route", "status"))
ANSWERS = Counter("stream_app_gateway_answers", "Decisions answered, by API (decide, rank), "
                  "use case and who served them: engine, baseline (apprentice mode) or fallback "
                  "(no decision within the timeout).", ("api", "use_case", "served_by"))
LATENCY = Histogram("stream_app_gateway_latency_seconds", "Time of an answered decision, by "
                    "part: total (in the gateway's handler), engine (request produced -> "
                    "decision produced), added (total - engine).", ("part",),
                    buckets=LATENCY_BUCKETS_S)
REWARDS = Counter("stream_app_gateway_rewards", "Rewards and outcomes received: sent to the "
                  "engine, or not attributed (the engine's decision was not what was shown).",
                  ("result",))
APPRENTICE_ONLINE = Gauge("stream_app_gateway_apprentice_online", "Per use case in apprentice "
                          "mode: 1 once the engine's own decisions serve it.", ("use_case",))


def called(route: str, status: int) -> None:
    REQUESTS.labels(route, str(status)).inc()


def answered(api: str, use_case: str, served_by: str, timing: dict[str, float] | None) -> None:
    """One decision answered; ``timing`` (ms) as in the ``Server-Timing`` header."""
    ANSWERS.labels(api, use_case, served_by).inc()
    if timing and "engine" in timing:
        LATENCY.labels("total").observe(timing["total"] / 1000.0)
        LATENCY.labels("engine").observe(timing["engine"] / 1000.0)
        LATENCY.labels("added").observe(max(timing["total"] - timing["engine"], 0.0) / 1000.0)


def rewarded(sent: bool) -> None:
    REWARDS.labels("sent" if sent else "not_attributed").inc()
