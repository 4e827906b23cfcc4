"""Predictive layer: online River models with selection and drift detection, segmentation, scores.

- ``ModelSuite`` (``suite``): propensity per offer, engagement, churn, capacity, segments; learns
  from ``observe_interaction`` / ``observe_outcome`` / ``observe_silence``; ``to_bytes`` checkpoint.
- ``ModelSelector`` (``selection``): candidates, decayed-loss selection, ADWIN drift records.
- ``OnlineKMeans`` (``kmeans``), ``segment_vector`` (``segments``), ``SegmentReport``.
- ``customer_scores``, ``should_emit``, ``mark_emitted`` (``scores``): the customer-scores topic.
- ``auc``, ``adjusted_rand_index``, ``mae`` (``evaluation``); ``synthetic``: seeded test world.

Imports River (not Kafka). Model checkpoints are pickles in a versioned envelope (``checkpoint``);
per-customer state never is.
"""

from stream_app.models.checkpoint import CheckpointError
from stream_app.models.evaluation import adjusted_rand_index, auc, mae
from stream_app.models.scores import customer_scores, mark_emitted, should_emit
from stream_app.models.segment_report import SegmentReport
from stream_app.models.kmeans import OnlineKMeans
from stream_app.models.segments import SEGMENT_FEATURES, segment_vector, teaches_segmenter
from stream_app.models.selection import ModelSelector
from stream_app.models.suite import ModelSuite, SuiteConfig

__all__ = [
    "SEGMENT_FEATURES",
    "CheckpointError",
    "ModelSelector",
    "ModelSuite",
    "OnlineKMeans",
    "SegmentReport",
    "SuiteConfig",
    "adjusted_rand_index",
    "auc",
    "customer_scores",
    "mae",
    "mark_emitted",
    "segment_vector",
    "should_emit",
    "teaches_segmenter",
]
