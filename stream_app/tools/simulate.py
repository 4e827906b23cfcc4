"""``stream-app simulate``: the seeded customer simulator against a running engine, via Kafka.

It uses the topics of the current settings (``STREAM_APP_TOPIC_PREFIX``): it sends interactions
and decision requests, reads the engine's decisions, answers them from the hidden ground truth on
``outcomes`` (``stream_app/kafka/traffic.py`` does the work, in event-time lockstep), and reports
how the engine did against the oracle. It starts no worker (``demo`` does).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream_app.settings import Settings

DAY_MS = 86_400_000


def summary(score: Any, **options: Any) -> dict[str, Any]:
    """A JSON-ready summary of a ``traffic.Score``: response rates against the oracle, regret.

    >>> from stream_app.kafka.traffic import Score
    >>> s = Score(requests=3, decisions=3, outcomes=2, responses=1, oracle_prob=1.2,
    ...           chosen_prob=0.9, trace=[(0.5, 0.6), (0.4, 0.6)])
    >>> out = summary(s)
    >>> out["expected_response_rate"], out["oracle_response_rate"], out["regret"]
    (0.45, 0.6, 0.3)
    """
    trace = np.array(score.trace) if score.trace else np.zeros((0, 2))
    offered = len(trace)
    lat = np.array(score.latencies) if score.latencies else np.zeros(0)

    def rate(x: np.ndarray) -> float | None:
        return round(float(x.mean()), 4) if len(x) else None

    half = offered // 2
    return {
        **options,
        "requests": score.requests, "decisions": score.decisions, "no_action": score.no_action,
        "offers_made": offered, "outcomes": score.outcomes, "responses": score.responses,
        "observed_response_rate": round(score.responses / offered, 4) if offered else None,
        "expected_response_rate": rate(trace[:, 0]),  # mean true probability of the chosen offers
        "oracle_response_rate": rate(trace[:, 1]),  # ... of the best offer per request
        "regret": round(float(score.oracle_prob - score.chosen_prob), 4),
        "efficiency": (round(float(trace[:, 0].sum() / trace[:, 1].sum()), 4)
                       if offered and trace[:, 1].sum() > 0 else None),
        "efficiency_first_half": (round(float(trace[:half, 0].sum() / trace[:half, 1].sum()), 4)
                                  if half else None),
        "efficiency_second_half": (round(float(trace[half:, 0].sum() / trace[half:, 1].sum()), 4)
                                   if offered - half else None),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "outcome_deltas": score.deltas, "dead_letters": score.dead_letters,
    }


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cli import CliError
    from stream_app.kafka.traffic import run_traffic

    if args.customers < 1 or args.rate <= 0 or args.seconds <= 0 or args.days <= 0:
        raise CliError("--customers, --rate, --seconds and --days must be positive")
    from stream_app.kafka.topics import list_topics

    missing = {settings.topic(t) for t in ("decision-requests", "decisions", "outcomes")} - set(
        list_topics(settings))
    if missing:
        raise CliError(f"topics {sorted(missing)} do not exist: run 'stream-app topics create' "
                       "and start a worker ('stream-app worker') first")
    score = run_traffic(settings, customers=args.customers, seconds=args.seconds, rate=args.rate,
                        seed=args.seed, days=args.days,
                        drift_at_days=tuple(getattr(args, "drift_at_days", None) or ()))
    out = summary(score, customers=args.customers, rate=args.rate, seconds=args.seconds,
                  days=args.days, seed=args.seed, topic_prefix=settings.topic_prefix)
    text = orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out:
        try:
            Path(args.out).write_text(text + "\n")
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    return 0 if score.decisions > 0 else 1

