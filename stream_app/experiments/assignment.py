"""Which arm a customer is in: a deterministic hash, so assignment needs no state.

``bucket(salt, customer_id)`` maps the pair through BLAKE2b to a number uniform in [0, 1); the
arm is where that number falls among the cumulative arm shares. Hence assignment is

- *sticky*: the same customer always gets the same arm, on any worker, after any restart;
- *balanced*: arm sizes follow the configured shares up to binomial noise;
- *independent across experiments*: different salts give unrelated buckets, so two experiments
  running at once do not confound each other.

Changing an experiment's arms or shares moves customers between arms; changing its salt
re-randomises everyone (do it when restarting an experiment from scratch).

>>> from stream_app.experiments.config import parse_experiment
>>> exp = parse_experiment({"id": "e1", "arms": [{"name": "A"}, {"name": "B"}]})
>>> a = assign(exp, "customer-42")
>>> a == assign(exp, "customer-42"), a.arm in ("A", "B")
(True, True)
>>> 0.0 <= bucket("e1", "customer-42") < 1.0
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from stream_app.experiments.config import Experiment

__all__ = ["Assignment", "assign", "assign_index", "assignments_for", "bucket", "buckets"]

_SCALE = 2.0**-53


def bucket(salt: str, customer_id: str) -> float:
    """Uniform in [0, 1): the top 53 bits of BLAKE2b(salt NUL customer_id)."""
    digest = hashlib.blake2b(f"{salt}\x00{customer_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) * _SCALE


def buckets(salt: str, customer_ids: Iterable[str]) -> np.ndarray:
    """``bucket`` for many customers at once."""
    return np.fromiter((bucket(salt, c) for c in customer_ids), np.float64)


def _arm_of(experiment: Experiment, u: np.ndarray | float) -> np.ndarray:
    edges = np.cumsum(experiment.shares)[:-1]  # the last edge is 1 (up to rounding): never used
    return np.searchsorted(edges, u, side="right")


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment_id: str
    arm: str
    index: int
    control: bool
    treatment: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The ``experiment`` field of a ``decisions`` message."""
        return {"id": self.experiment_id, "arm": self.arm, "control": self.control,
                "treatment": dict(self.treatment)}  # fmt: skip


def assign_index(experiment: Experiment, customer_ids: Iterable[str]) -> np.ndarray:
    """Arm index of each customer (vectorised over the arm search)."""
    return _arm_of(experiment, buckets(experiment.salt, customer_ids))


def assign(experiment: Experiment, customer_id: str) -> Assignment:
    i = int(_arm_of(experiment, bucket(experiment.salt, customer_id)))
    arm = experiment.arms[i]
    return Assignment(experiment.id, arm.name, i, arm.control, arm.treatment)


def assignments_for(
    experiments: Mapping[str, Experiment] | Iterable[Experiment], customer_id: str, use_case: str
) -> list[Assignment]:
    """The customer's arm in every enabled experiment that covers ``use_case`` (sorted by id)."""
    exps = experiments.values() if isinstance(experiments, Mapping) else experiments
    live = sorted((e for e in exps if e.applies_to(use_case)), key=lambda e: e.id)
    return [assign(e, customer_id) for e in live]
