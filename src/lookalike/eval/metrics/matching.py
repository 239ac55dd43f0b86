"""Image-matching metrics as pure functions: match accuracy (MMA), corner error, homography accuracy.

- :func:`match_accuracy`: the fraction of matches whose reprojection error ``|H x0 - x1|`` is within each
  threshold (D2-Net's "mean matching accuracy" for one pair, Dusmanu et al. 2019).
- :func:`corner_error`: the mean distance between the image-0 corners mapped by the estimated and by the
  true homography (HPatches image matching, SuperPoint's homography estimation).
- :func:`homography_accuracy`: the fraction of pairs whose corner error is within each threshold.
- :func:`at_threshold`: a value of a per-threshold list looked up by its threshold (``MMA@3``), never
  by position.

Convention:
    Points are ``(x, y)`` pixels, centres at integers; ``H`` maps image 0 to image 1. A point that
    ``H`` maps behind the camera (:func:`lookalike.geometry.project_points`) is never correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookalike.core.errors import OptionError, ShapeError
from lookalike.geometry import image_corners, project_points

__all__ = [
    "ACCURACY_THRESHOLDS",
    "MMA_THRESHOLDS",
    "at_threshold",
    "corner_error",
    "homography_accuracy",
    "match_accuracy",
    "reprojection_errors",
]

#: MMA thresholds in pixels (D2-Net: 1 .. 10).
MMA_THRESHOLDS: tuple[int, ...] = tuple(range(1, 11))
#: Homography accuracy thresholds in pixels.
ACCURACY_THRESHOLDS: tuple[int, ...] = (1, 3, 5)


def _xy(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError(f"{name}: expected shape (N, 2), got {arr.shape}")
    return arr


def _thresholds(thresholds: Sequence[float]) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.size == 0 or not np.isfinite(thr).all() or (thr < 0).any():
        raise OptionError(
            f"thresholds: expected finite non-negative pixels, got {list(thresholds)!r}"
        )
    return thr


def reprojection_errors(points0: Any, points1: Any, H: Any) -> np.ndarray:
    """``|H points0[m] - points1[m]|`` in pixels, ``(M,)``; ``inf`` where ``H`` has no image of the point.

    Example:
        >>> reprojection_errors([[0, 0]], [[3, 4]], np.eye(3)).tolist()
        [5.0]
    """
    p0, p1 = _xy(points0, "points0"), _xy(points1, "points1")
    if p0.shape != p1.shape:
        raise ShapeError(
            f"points0 and points1: expected equal shapes, got {p0.shape} and {p1.shape}"
        )
    if p0.shape[0] == 0:
        return np.zeros(0)
    err = np.linalg.norm(project_points(H, p0) - p1, axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def match_accuracy(
    points0: Any, points1: Any, H: Any, thresholds: Sequence[float] = MMA_THRESHOLDS
) -> np.ndarray:
    """Fraction of matches ``(points0[m], points1[m])`` with ``|H points0[m] - points1[m]| <= t``.

    Args:
        points0: ``(M, 2)`` matched points in image 0.
        points1: ``(M, 2)`` matched points in image 1.
        H: true ``3 x 3`` homography from image 0 to image 1.
        thresholds: pixel thresholds.

    Returns:
        ``(len(thresholds),)`` float64 in [0, 1]; all zeros when there is no match.

    Raises:
        ShapeError: points not ``(M, 2)`` of equal shapes, or ``H`` not ``3 x 3``.
        OptionError: empty, negative or non-finite thresholds.

    Example:
        >>> match_accuracy([[0, 0], [10, 10]], [[0.5, 0], [14, 10]], np.eye(3), [1, 5]).tolist()
        [0.5, 1.0]
    """
    thr = _thresholds(thresholds)
    err = reprojection_errors(points0, points1, H)
    if err.size == 0:
        return np.zeros(thr.shape[0])
    return (err[:, None] <= thr[None, :]).mean(axis=0)


def corner_error(H_est: Any, H_true: Any, image_size: tuple[int, int]) -> float:
    """Mean distance between the 4 image corners mapped by ``H_est`` and by ``H_true``.

    Args:
        H_est: estimated homography, or ``None`` (failed estimation).
        H_true: ground truth.
        image_size: ``(H, W)`` of image 0; corners ``(0, 0), (W-1, 0), (0, H-1), (W-1, H-1)``.

    Returns:
        The error in pixels; ``inf`` when ``H_est`` is ``None`` or a corner has no image.

    Example:
        >>> corner_error(np.eye(3), [[1, 0, 3], [0, 1, 4], [0, 0, 1]], (10, 20))
        5.0
    """
    if H_est is None:
        return float("inf")
    corners = image_corners(image_size)
    err = np.linalg.norm(project_points(H_est, corners) - project_points(H_true, corners), axis=1)
    return float(err.mean()) if np.isfinite(err).all() else float("inf")


def homography_accuracy(
    corner_errors: Sequence[float], thresholds: Sequence[float] = ACCURACY_THRESHOLDS
) -> np.ndarray:
    """Fraction of pairs whose corner error is ``<= t`` for each threshold; ``inf`` errors never count.

    Raises:
        ShapeError: ``corner_errors`` is not 1-D.

    Example:
        >>> homography_accuracy([0.5, 2.0, float("inf")], [1, 3]).tolist()
        [0.3333333333333333, 0.6666666666666666]
    """
    err = np.asarray(corner_errors, dtype=np.float64)
    if err.ndim != 1:
        raise ShapeError(f"corner_errors: expected shape (N,), got {err.shape}")
    thr = _thresholds(thresholds)
    if err.size == 0:
        return np.zeros(thr.shape[0])
    err = np.where(np.isnan(err), np.inf, err)
    return (err[:, None] <= thr[None, :]).mean(axis=0)


def at_threshold(values: Sequence[float], thresholds: Sequence[float], threshold: float) -> float:
    """The entry of ``values`` (one per threshold) at ``threshold``, looked up by value.

    Raises:
        ShapeError: ``values`` and ``thresholds`` differ in length.
        OptionError: ``threshold`` is not one of ``thresholds``; the message lists them.

    Example:
        >>> at_threshold([0.2, 0.5, 0.9], [2, 3, 5], 3)
        0.5
    """
    vals, thr = list(values), [float(t) for t in thresholds]
    if len(vals) != len(thr):
        raise ShapeError(f"values: expected one per threshold ({len(thr)}), got {len(vals)}")
    for value, t in zip(vals, thr):
        if abs(t - float(threshold)) < 1e-9:
            return float(value)
    raise OptionError(f"threshold: expected one of {thr}, got {threshold!r}")
