"""Health, readiness and Prometheus metrics of the engine's long-running processes.

``serve_probes`` (``probes.py``) serves ``/health``, ``/ready`` and ``/metrics`` on a
process's event loop; ``metrics.py`` holds the metrics and the helpers that count. Nothing here
knows Faust: the worker's readiness, consumer lag and store sizes are read from its Faust app
by ``stream_app/worker/probes.py``.
"""

from stream_app.observability.probes import serve_probes

__all__ = ["serve_probes"]
