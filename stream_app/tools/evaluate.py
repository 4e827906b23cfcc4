"""``stream-app evaluate``: off-policy estimates of a candidate policy or config from logs.

Logs are either the engine's own (``--format engine``: export records of ``decisions``,
``outcomes`` and optionally ``decision-requests``, as ``export`` and ``replay --out`` write them;
joined by ``evaluation.engine_records``) or any logged bandit data set (``--format bandit``: one
``{"context", "action", "reward", "propensity"[, "actions"]}`` per line, ``evaluation/logs.py``).
``--format auto`` (default) tells them apart by the first record.

The estimates are those of ``stream_app.evaluation``: IPS, SNIPS and doubly robust with confidence
intervals, and the replay (rejection sampling) method; the logging policy's own average reward is
shown for reference. Targets are in ``targets.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream_app.evaluation import BanditLogError, LoggedBandit, evaluate, read_jsonl, replay
from stream_app.evaluation.engine_logs import engine_records
from stream_app.evaluation.report import markdown_table
from stream_app.tools.ranges import RangeError, read_export
from stream_app.tools.targets import TargetError, make_target, replay_pick, target_probabilities

COLUMNS = ("method", "value", "se", "ci_low", "ci_high", "n", "ess", "n_matched")
META_KEYS = ("_customer", "_ts")  # added to engine contexts for per-customer policies only


class EvaluateError(ValueError):
    """Bad logs or options; one readable line."""


def sniff_format(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    rec = orjson.loads(line)
                    return "engine" if isinstance(rec, dict) and "topic" in rec else "bandit"
    except OSError as exc:
        raise EvaluateError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise EvaluateError(f"{path}, line 1: not valid JSON ({exc})") from None
    raise EvaluateError(f"{path}: no records")


def load_engine_logs(paths: list[str], reward: str = "response") -> LoggedBandit:
    """Bandit records from engine exports: decisions joined to outcomes (and requests)."""
    from stream_app.tools.lockstep import contract_name

    decisions, outcomes, requests = [], [], {}
    try:
        for path in paths:
            for rec in read_export(path):
                value = rec.get("value")
                if not isinstance(value, dict):
                    continue
                topic = rec["topic"]
                if topic.endswith("decisions"):
                    decisions.append(value)
                elif contract_name(topic) == "outcomes":
                    outcomes.append(value)
                elif contract_name(topic) == "decision-requests" and "request_id" in value:
                    requests[value["request_id"]] = value
    except RangeError as exc:
        raise EvaluateError(str(exc)) from None
    if not decisions:
        raise EvaluateError("no decisions in the logs (give an export of the decisions topic, "
                            "and of outcomes)")
    # per-customer policies need who and when: carried in the context under _customer / _ts
    joined = [{"request_id": d.get("request_id"),
               "context": {**((requests.get(d.get("request_id")) or {}).get("context") or {}),
                           "_customer": d.get("customer_id"), "_ts": d.get("ts")}}
              for d in decisions]
    decisions.sort(key=lambda d: (d.get("ts", 0), str(d.get("decision_id"))))
    try:
        return LoggedBandit.from_records(engine_records(decisions, outcomes, joined, reward=reward))
    except BanditLogError as exc:
        raise EvaluateError(f"engine logs: {exc}") from None


def load_bandit_logs(paths: list[str]) -> LoggedBandit:
    records: list[dict[str, Any]] = []
    for path in paths:
        try:
            records.extend(read_jsonl(path).records())
        except OSError as exc:
            raise EvaluateError(f"cannot read {path}: {exc.strerror}") from None
        except BanditLogError as exc:
            raise EvaluateError(f"{path}, {exc}") from None
    return LoggedBandit.from_records(records)


def without_meta(data: LoggedBandit) -> LoggedBandit:
    """The same log with the ``_customer`` / ``_ts`` context keys dropped (for reward models)."""
    contexts = [{k: v for k, v in c.items() if k not in META_KEYS} for c in data.contexts]
    return LoggedBandit(contexts, data.actions, data.rewards, data.propensities,
                        data.action_space, data.available, data.errors)


def run_evaluation(data: LoggedBandit, target_name: str | None, params: dict | None = None,
                   config: Any = None, level: float = 0.95, ci: str = "normal", seed: int = 0,
                   draws: int = 50) -> dict[str, Any]:
    if len(data) == 0:
        raise EvaluateError("no usable logged decisions (offers with a propensity)")
    target = make_target(target_name, params, config, actions=data.action_space, draws=draws,
                         seed=seed)
    pi = target_probabilities(data, target)
    estimates = evaluate(without_meta(data), pi, level=level, ci=ci, seed=seed)
    rows = [est.as_dict() for est in estimates.values()]
    fresh = target.fresh()  # replay learns from its own matches only, from scratch
    rep = replay(data, replay_pick(fresh, seed), learn=fresh.learn, level=level, seed=seed)
    rows.append({**rep.as_dict(), "n": rep.n_logged})
    logged = data.rewards
    se = float(logged.std(ddof=1) / np.sqrt(len(logged))) if len(logged) > 1 else float("nan")
    z = _z(level)
    rows.append({"method": "logging policy (on-policy)", "value": float(logged.mean()), "se": se,
                 "ci_low": float(logged.mean()) - z * se, "ci_high": float(logged.mean()) + z * se,
                 "level": level, "n": len(logged)})
    return {"target": getattr(target, "name", target_name), "params": params or {},
            "n_logged": len(data), "actions": list(data.action_space), "level": level,
            "ci": ci, "estimates": rows}


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2.0)


def cmd_evaluate(args: argparse.Namespace, settings: Any) -> int:
    from stream_app.cli import CliError

    try:
        params = orjson.loads(args.params) if args.params else {}
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--params is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise CliError("--params must be a JSON object")
    if bool(args.policy) == bool(args.config):
        raise CliError("give --policy NAME or --config FILE (one of them)")
    config = _config(args.config) if args.config else None
    try:
        fmt = args.format if args.format != "auto" else sniff_format(args.logs[0])
        data = (load_engine_logs(args.logs, args.reward) if fmt == "engine"
                else load_bandit_logs(args.logs))
        result = run_evaluation(data, args.policy, params, config, level=args.level, ci=args.ci,
                                seed=args.seed, draws=args.draws)
    except (EvaluateError, TargetError) as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:  # e.g. a target putting weight on an unavailable action
        raise CliError(f"cannot evaluate: {exc}") from None
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print(f"target {result['target']} {orjson.dumps(result['params']).decode()} on "
              f"{result['n_logged']} logged decisions, {len(result['actions'])} actions, "
              f"{result['level']:.0%} intervals ({result['ci']})\n")
        print(markdown_table(result["estimates"], COLUMNS))
    return 0


def _config(path: str) -> Any:
    from stream_app.cli import CliError
    from stream_app.core.catalogue import ConfigError, parse_config

    try:
        return parse_config(orjson.loads(Path(path).read_bytes()))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, ConfigError) as exc:
        raise CliError(f"{path}: {exc}") from None
