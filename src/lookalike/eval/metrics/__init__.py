"""Metrics as pure functions on arrays: no I/O, no rendering, no model.

- :mod:`~lookalike.eval.metrics.patch`: FPR at a recall, average precision (HPatches and step), pairwise
  distances, Brown-revisited SNN mAP.
- :mod:`~lookalike.eval.metrics.matching`: match accuracy (MMA), reprojection and corner errors,
  homography accuracy, look-up of a per-threshold value by its threshold.
"""

from lookalike.eval.metrics.matching import (
    ACCURACY_THRESHOLDS,
    MMA_THRESHOLDS,
    at_threshold,
    corner_error,
    homography_accuracy,
    match_accuracy,
    reprojection_errors,
)
from lookalike.eval.metrics.patch import (
    average_precision,
    average_precision_step,
    fpr_at_recall,
    pairwise_distances,
    snn_map,
)

__all__ = [
    "ACCURACY_THRESHOLDS",
    "MMA_THRESHOLDS",
    "at_threshold",
    "average_precision",
    "average_precision_step",
    "corner_error",
    "fpr_at_recall",
    "homography_accuracy",
    "match_accuracy",
    "pairwise_distances",
    "reprojection_errors",
    "snn_map",
]
