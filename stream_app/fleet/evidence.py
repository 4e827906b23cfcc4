"""The additive part of what the fleet learns: pooled Beta evidence and contextual arms.

Every settled decision adds its reward to the Beta evidence of its offer in the decision's
segment (``SEGMENT_KEY`` + segment) and in the whole population (``POPULATION_KEY``), and, for
a contextual policy, to the use case's ridge regression (``LinearArms``). The learner applies
every partition's outcome lessons to the fleet's evidence; a worker applies its own lessons
since the last snapshot on top of the snapshot's copy (``view.FleetView``): the same function,
so the two never disagree on what a lesson adds.

>>> from stream_app.core.catalogue import offer_key
>>> from stream_app.core.population import PopulationState
>>> population = PopulationState()
>>> learn_evidence(population, {"k": "o", "key": offer_key("a"), "r": 1.0, "ts": 0,
...                             "seg": "2", "hl": None, "x": None, "uc": "default"})
>>> sorted(population.arms)
[b'\\x00population', b'\\x00segment:2']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from stream_app.core.arms import Arms
from stream_app.policies.linear_arms import LinearArms

__all__ = ["EMPTY_ARMS", "POPULATION_KEY", "SEGMENT_KEY", "learn_evidence", "segment_key"]

POPULATION_KEY = b"\x00population"  # the whole population's arms
SEGMENT_KEY = b"\x00segment:"  # a segment's arms: SEGMENT_KEY + the segment's name
EMPTY_ARMS = Arms.empty()


def segment_key(segment: str) -> bytes:
    return SEGMENT_KEY + segment.encode()


class Evidence(Protocol):
    arms: dict[bytes, Arms]

    def linear_for(self, use_case: str, dim: int, ridge: float = 1.0,
                   half_life_s: float | None = None) -> LinearArms: ...


def learn_evidence(target: Evidence, lesson: Mapping[str, Any]) -> None:
    """Add an outcome lesson (``k == "o"``) to ``target``'s pooled arms and contextual arms."""
    key, reward, ts, hl = lesson["key"], float(lesson["r"]), int(lesson["ts"]), lesson.get("hl")
    arms = target.arms
    for pooled in (segment_key(lesson["seg"]), POPULATION_KEY):
        arms[pooled] = arms.get(pooled, EMPTY_ARMS).updated(key, reward, ts, hl)
    x = lesson.get("x")
    if x is not None:
        target.linear_for(lesson["uc"], len(x), half_life_s=hl).update(
            key, np.asarray(x, np.float64), reward, now_ms=ts)
