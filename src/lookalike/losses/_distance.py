"""Shared helpers of the metric-learning losses: distance matrices, safe square root, door checks.

Private module (not auto-imported by the registry); the public losses re-export what users need.
"""

from __future__ import annotations

import warnings
from collections.abc import MutableMapping

import torch
import torch.nn.functional as F

from lookalike.core.check import (
    check_dtype,
    check_finite,
    check_not_empty,
    check_option,
    check_positive,
    check_shape,
)

__all__ = [
    "METRICS",
    "DegenerateBatchWarning",
    "check_labels",
    "check_pair",
    "pairwise_distance",
    "safe_sqrt",
    "warn_degenerate",
    "zero_loss",
]

METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class DegenerateBatchWarning(RuntimeWarning):
    """A loss got a batch that gives no training signal (no valid negative, positive or neighbour).

    The loss then returns zero (still attached to the graph, so ``backward`` works and all gradients
    are zero). Silence it with ``warnings.simplefilter("ignore", DegenerateBatchWarning)``.
    """


def warn_degenerate(message: str) -> None:
    """Emit a :class:`DegenerateBatchWarning` pointing at the caller of the public function."""
    warnings.warn(message, DegenerateBatchWarning, stacklevel=3)


def zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar ``0`` connected to the graph of ``tensors`` (zero gradients, ``backward`` works)."""
    total = tensors[0].new_zeros(())
    for t in tensors:
        total = total + (t * 0).sum()
    return total


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` whose gradient at exactly ``0`` is ``0`` instead of ``inf``/NaN.

    Zero is a valid subgradient of a norm at the origin, so the result stays finite.
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def pairwise_distance(
    x: torch.Tensor, y: torch.Tensor, *, metric: str = "euclidean", eps: float = 1e-6
) -> torch.Tensor:
    """Distance matrix between the rows of ``x`` (N, D) and ``y`` (M, D), shape (N, M).

    Metrics:

    - ``"euclidean"``: ``sqrt(max(|x|² + |y|² - 2 x·y, 0) + eps)``. The ``eps`` (default ``1e-6``,
      as in the original HardNet code) keeps the gradient bounded for identical rows; identical rows
      are ``sqrt(eps)`` (``1e-3``) apart. ``eps=0`` gives exact distances with a zero gradient at 0.
    - ``"sqeuclidean"``: ``max(|x|² + |y|² - 2 x·y, 0)`` (``eps`` unused).
    - ``"cosine"``: ``1 - cos(x, y)`` in ``[0, 2]``; an all-zero row is at distance 1 from anything.

    No input checks (internal helper): callers check at their door.
    """
    if metric == "cosine":
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    sq = sq.clamp_min(0.0)
    if metric == "sqeuclidean":
        return sq
    return safe_sqrt(sq + eps)


def check_pair(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    names: tuple[str, str] = ("anchors", "positives"),
) -> MutableMapping[str, int]:
    """Door checks for matched (N, D) descriptor batches: shapes agree, not empty, finite."""
    dims = check_shape(anchors, ["N", "D"], names[0])
    check_shape(positives, ["N", "D"], names[1], dims)
    check_not_empty(anchors, names[0])
    check_finite(anchors, names[0])
    check_finite(positives, names[1])
    return dims


def check_labels(
    labels: torch.Tensor, dims: MutableMapping[str, int], name: str = "labels"
) -> None:
    """Door checks for integer class labels of shape (N,)."""
    check_shape(labels, ["N"], name, dims)
    check_dtype(labels, _INT_DTYPES, name)


def check_eps(eps: float) -> None:
    """``eps`` must be a number ``>= 0``."""
    check_positive(eps, "eps", strict=False)


def check_metric(metric: str) -> None:
    """``metric`` must be one of :data:`METRICS`."""
    check_option(metric, METRICS, "metric")
