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


def efficiency(trace: np.ndarray, column: int = 1) -> float | None:
    """Expected reward of a trace's choices over the oracle's: column 1 the engine's, 3 random's.

    >>> efficiency(np.array([[0, 0.5, 0.6, 0.2], [0, 0.4, 0.6, 0.3]]))
    0.75
    >>> efficiency(np.array([[0, 0.5, 0.6, 0.2], [0, 0.4, 0.6, 0.3]]), column=3)
    0.4167
    """
    best = float(trace[:, 2].sum()) if len(trace) else 0.0
    return round(float(trace[:, column].sum()) / best, 4) if best > 0 else None


def halves(score: Any) -> tuple[np.ndarray, np.ndarray]:
    """The trace of a ``traffic.Score`` as an array, split into its first and second half."""
    trace = np.array(score.trace, np.float64).reshape(-1, 4)
    return trace[: len(trace) // 2], trace[len(trace) // 2:]


def summary(score: Any, **options: Any) -> dict[str, Any]:
    """A JSON-ready summary of a ``traffic.Score``: response rates against the oracle and a
    random choice, per half of the run, regret.

    >>> from stream_app.kafka.traffic import Score
    >>> s = Score(requests=3, decisions=3, outcomes=2, responses=1, oracle_prob=1.2,
    ...           chosen_prob=0.9, trace=[(0, 0.5, 0.6, 0.2), (1, 0.4, 0.6, 0.3)])
    >>> out = summary(s)
    >>> out["expected_response_rate"], out["oracle_response_rate"], out["regret"]
    (0.45, 0.6, 0.3)
    >>> out["efficiency_first_half"], out["efficiency_second_half"], out["random_efficiency"]
    (0.8333, 0.6667, 0.4167)
    """
    trace = np.array(score.trace, np.float64).reshape(-1, 4)
    first, second = halves(score)
    lat = np.array(score.latencies) if score.latencies else np.zeros(0)
    offered = score.decisions - score.no_action

    def rate(x: np.ndarray) -> float | None:
        return round(float(x.mean()), 4) if len(x) else None

    return {
        **options,
        "requests": score.requests, "decisions": score.decisions, "no_action": score.no_action,
        "unanswered": score.unanswered, "offers_made": offered, "outcomes": score.outcomes,
        "responses": score.responses,
        "observed_response_rate": round(score.responses / offered, 4) if offered else None,
        "expected_response_rate": rate(trace[:, 1]),  # mean true probability of the choices
        "oracle_response_rate": rate(trace[:, 2]),  # ... of the best offer per request
        "random_response_rate": rate(trace[:, 3]),  # ... of a uniform choice of candidates
        "regret": round(float(score.oracle_prob - score.chosen_prob), 4),
        "efficiency": efficiency(trace),
        "efficiency_first_half": efficiency(first),
        "efficiency_second_half": efficiency(second),
        "random_efficiency": efficiency(trace, 3),
        "random_efficiency_second_half": efficiency(second, 3),
        "event_days": round((score.event_ms - score.start_ms) / DAY_MS, 3),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "outcome_deltas": score.deltas, "dead_letters": score.dead_letters,
    }


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cli import CliError
    from stream_app.kafka.traffic import run_traffic

    if args.customers < 1 or args.rate < 0 or args.seconds <= 0 or args.days <= 0 \
            or args.lockstep_s <= 0:
        raise CliError("--customers, --seconds, --days and --lockstep-s must be positive "
                       "(--rate 0: as fast as the engine answers)")
    from stream_app.kafka.topics import list_topics

    missing = {settings.topic(t) for t in ("decision-requests", "decisions", "outcomes")} - set(
        list_topics(settings))
    if missing:
        raise CliError(f"topics {sorted(missing)} do not exist: run 'stream-app topics create' "
                       "and start a worker ('stream-app worker') first")
    score = run_traffic(settings, customers=args.customers, seconds=args.seconds, rate=args.rate,
                        seed=args.seed, days=args.days,
                        drift_at_days=tuple(getattr(args, "drift_at_days", None) or ()),
                        lockstep_ms=int(args.lockstep_s * 1000))
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

