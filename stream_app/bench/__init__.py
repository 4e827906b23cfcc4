"""Performance benchmark against a real Kafka broker: one worker process, a load generator that
is not the bottleneck, and a report (JSON, Markdown, PNG). ``stream-app bench --help``."""

from stream_app.bench.harness import BenchError, run_bench
from stream_app.bench.params import BenchParams, engine_config, parse_steps

__all__ = ["BenchError", "BenchParams", "engine_config", "parse_steps", "run_bench"]
