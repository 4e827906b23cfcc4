"""What a partition learned that the whole fleet must learn from: lessons, sent as learning
records.

A partition never trains a population-level learner itself. Each event that teaches something
(an interaction, a settled decision, an experiment exposure) becomes a *lesson*: the facts a
learner needs, with the customer's profile as it was before the event (``Profile.encode``,
base64), so the learner computes every feature itself and the worker pays nothing for
training. The lessons of a batch travel as one record (or a few) on the ``learning`` topic
(``schemas/learning.v1.json``), keyed by the partition's source id, numbered by ``(epoch, seq)``:
the epoch names one life of the partition's session (it changes at every start and hand-over),
``seq`` counts its records from 1. The learner skips a record whose number it has applied
already, so a redelivered record is never counted twice. A partition with nothing to teach
still sends an empty record once per ``HEARTBEAT_MS`` of its event time, so the learner's event
time (its report windows) moves with the fleet's.

Lesson kinds (``k``):

- ``i`` an interaction: ``p`` the profile before it, ``e`` the interaction, ``s`` the segment
  the worker assigned after it;
- ``s`` a silence: the customer did not interact again until ``ts``, when the churn checkpoints
  after their last interaction became final (``ModelSuite.silence_due_ms``; the partition's
  silence timer): ``p`` the profile, ``ts``; sent once per silence;
- ``o`` a settled decision (an outcome, or an offer ignored until its window closed): ``p`` the
  profile before the outcome, ``offer``/``key``/``urgent``, ``r`` the reward, ``ts``, ``ch`` the
  channel, ``at`` the decision time, ``v`` the value, ``seg`` the decision's segment, ``uc`` its
  use case and ``hl`` its half-life, ``x`` the contextual features (or null),
  ``pol``/``prop``/``sh`` the policy, its propensity and the challengers' probabilities;
- ``x`` a customer enrolled in an experiment (first exposure), ``w`` a customer's measurement
  window closed (``r`` 1 if they converted, ``v`` the goal's value), ``g`` a guardrail event:
  ``exp``, ``arm`` (and ``m``, the guardrail metric).

>>> out = Lessons("p0", epoch=7)
>>> out.teach({"k": "x", "exp": "e1", "arm": "control"})
>>> [record] = out.records(ts=5)
>>> record["source"], record["epoch"], record["seq"], len(record["lessons"])
('p0', 7, 1, 1)
>>> out.records(ts=6)
[]
>>> [beat] = out.records(ts=60_000)    # nothing learned, but a report window went by
>>> beat["seq"], beat["lessons"]
(2, [])
"""

from __future__ import annotations

import base64
from typing import Any

from stream_app.profile import Profile

__all__ = ["LESSONS_PER_RECORD", "Lessons", "decode_profile", "encode_profile", "source_of"]

LESSONS_PER_RECORD = 400  # ~1 kB each at most: a record stays well below the broker's 1 MB
HEARTBEAT_MS = 60_000  # the learner's report window (``learner.REPORT_EVERY_MS``)


def source_of(partition: int) -> str:
    """The source id of a partition's learning records."""
    return f"p{partition}"


def encode_profile(profile: Profile) -> str:
    return base64.b64encode(profile.encode()).decode("ascii")


def decode_profile(text: str) -> Profile:
    return Profile.decode(base64.b64decode(text))


class Lessons:
    """A partition's outgoing lessons, cut into numbered learning records once per batch."""

    __slots__ = ("source", "epoch", "seq", "_batch", "_beat_ms")

    def __init__(self, source: str, epoch: int) -> None:
        self.source, self.epoch, self.seq = source, int(epoch), 0
        self._batch: list[dict[str, Any]] = []
        self._beat_ms: int | None = None  # event time of the next heartbeat

    def teach(self, lesson: dict[str, Any]) -> None:
        self._batch.append(lesson)

    def __len__(self) -> int:
        return len(self._batch)

    def records(self, ts: int | None, force: bool = False) -> list[dict[str, Any]]:
        """The batch's learning records (one, unless it learned more than
        ``LESSONS_PER_RECORD`` lessons; none when it learned nothing, unless ``force``: then an
        empty one); starts a new batch."""
        batch, self._batch = self._batch, []
        out = []
        if ts is not None:
            if self._beat_ms is None or ts >= self._beat_ms:
                if not batch and self._beat_ms is not None:
                    out.append(self._record(ts, []))
                self._beat_ms = (ts // HEARTBEAT_MS + 1) * HEARTBEAT_MS
        for start in range(0, len(batch), LESSONS_PER_RECORD):
            out.append(self._record(ts, batch[start:start + LESSONS_PER_RECORD]))
        if force and not out:
            out.append(self._record(ts, []))
        return out

    def _record(self, ts: int | None, lessons: list[dict[str, Any]]) -> dict[str, Any]:
        self.seq += 1
        return {"schema_version": 1, "kind": "lessons", "source": self.source,
                "epoch": self.epoch, "seq": self.seq, "ts": ts, "lessons": lessons}
