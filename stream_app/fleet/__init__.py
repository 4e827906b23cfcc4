"""Fleet-wide learning: partitions teach lessons, one learner merges them, every worker reads
its snapshots.

- ``lessons``: what a partition learned, as numbered learning records (topic ``learning``);
- ``evidence``: the additive part (pooled Beta evidence, contextual arms), one function for the
  learner and the workers;
- ``learner``: ``FleetLearner``, the merge, the fleet's statistics and promotions;
- ``snapshot``: ``FleetSnapshot`` and its chunks on ``learner-snapshots``;
- ``view``: ``FleetView``, a partition's reading (the last snapshot + its own lessons);
- ``local``: ``LocalFleet``, the learner in-process for the benchmarks and the tests.

``learner`` and ``local`` import the decision core, which imports ``view``: import them by
module (``from stream_app.fleet.learner import FleetLearner``).
"""

from stream_app.fleet.evidence import POPULATION_KEY, SEGMENT_KEY, segment_key
from stream_app.fleet.lessons import Lessons, source_of
from stream_app.fleet.snapshot import Assembler, FleetSnapshot, SnapshotError
from stream_app.fleet.view import FleetView

__all__ = ["Assembler", "FleetSnapshot", "FleetView", "Lessons", "POPULATION_KEY",
           "SEGMENT_KEY", "SnapshotError", "segment_key", "source_of"]
