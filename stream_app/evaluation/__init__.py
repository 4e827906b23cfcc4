"""Offline evaluation: bandit logs, off-policy estimators, replay, and the learning-quality harness.

- ``logs``: the JSONL exchange format (``read_jsonl``, ``LoggedBandit``);
- ``engine_logs``: the engine's decisions + outcomes -> bandit records (``engine_records``);
- ``ope``: ``ips``, ``snips``, ``doubly_robust``, ``evaluate`` with confidence intervals;
- ``replay``: Li et al. rejection-sampling replay of a (learning) policy;
- ``benchmark`` / ``agents`` / ``report``: policies against the simulator, against the oracle
  (import ``stream_app.evaluation.benchmark`` explicitly; it pulls in River).
"""

from stream_app.evaluation.engine_logs import engine_records
from stream_app.evaluation.logs import BanditLogError, LoggedBandit, read_jsonl, write_jsonl
from stream_app.evaluation.ope import Estimate, doubly_robust, evaluate, ips, snips, target_matrix
from stream_app.evaluation.replay import ReplayResult, replay
from stream_app.evaluation.reward_models import ActionMean, RidgeReward

__all__ = [
    "ActionMean",
    "BanditLogError",
    "Estimate",
    "LoggedBandit",
    "ReplayResult",
    "RidgeReward",
    "doubly_robust",
    "engine_records",
    "evaluate",
    "ips",
    "read_jsonl",
    "replay",
    "snips",
    "target_matrix",
    "write_jsonl",
]
