"""Relative pose metrics as pure functions: angular errors, pose AUC, epipolar errors of matches.

The conventions of SuperGlue's ScanNet evaluation (Sarlin et al., CVPR 2020), which most relative
pose tables follow.

Convention:
    - A relative pose ``T_0to1`` (``4 x 4``) maps camera-0 coordinates to camera-1 coordinates:
      ``X1 = R X0 + t``. The essential matrix is ``E = [t]_x R`` (``x1^T E x0 = 0`` for normalised
      image points ``x = K^-1 (u, v, 1)``).
    - Rotation error: the angle of ``R_est^T R_gt`` in degrees. Translation error: the angle between
      ``t_est`` and ``t_gt`` in degrees with the sign ambiguity of an essential matrix removed
      (``min(e, 180 - e)``); a zero-length translation gives 90 degrees (it has no direction).
      Pose error: the larger of the two; a failed estimation counts ``inf``.
    - Pose AUC at ``tau`` degrees: the area under the recall-vs-error curve up to ``tau``, by the
      trapezoid rule, divided by ``tau`` (SuperGlue's ``pose_auc``: the curve joins the points
      ``(0, 0), (e_1, 1/n), (e_2, 2/n)...`` of the sorted errors below ``tau`` and stays flat from the
      last of them to ``tau``): 1 when every error is 0, 0 when none is below ``tau``.
    - Epipolar error of a match: SuperGlue's *symmetric* squared epipolar distance in normalised
      coordinates, ``(x1^T E x0)^2 (1 / ((E x0)_1^2 + (E x0)_2^2) + 1 / ((E^T x1)_1^2 + (E^T x1)_2^2))``;
      a match is correct below :data:`EPIPOLAR_THRESHOLD` (5e-4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookalike.core.errors import ShapeError, ValueRangeError

__all__ = [
    "AUC_THRESHOLDS",
    "EPIPOLAR_THRESHOLD",
    "essential_from_pose",
    "normalize_points",
    "pose_auc",
    "pose_errors",
    "rotation_error",
    "symmetric_epipolar_errors",
    "translation_error",
]

#: Pose AUC thresholds in degrees.
AUC_THRESHOLDS: tuple[float, ...] = (5.0, 10.0, 20.0)
#: Symmetric epipolar error (normalised coordinates) below which a match is correct.
EPIPOLAR_THRESHOLD = 5e-4


def _matrix(x: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise ShapeError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueRangeError(f"{name}: expected finite values, got NaN or inf")
    return a


def _points(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ShapeError(f"{name}: expected shape (M, 2), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueRangeError(f"{name}: expected finite values, got NaN or inf")
    return a


def rotation_error(R_est: Any, R_gt: Any) -> float:
    """Angle of ``R_est^T R_gt`` in degrees (0 for equal rotations).

    Example:
        >>> import numpy as np
        >>> c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
        >>> round(rotation_error(np.eye(3), [[c, -s, 0], [s, c, 0], [0, 0, 1]]), 6)
        30.0
    """
    R_est, R_gt = _matrix(R_est, (3, 3), "R_est"), _matrix(R_gt, (3, 3), "R_gt")
    cos = (np.trace(R_est.T @ R_gt) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def translation_error(t_est: Any, t_gt: Any) -> float:
    """Angle between two translations in degrees, sign ambiguity removed (in ``[0, 90]``).

    Example:
        >>> translation_error([1, 0, 0], [-2, 0, 0]), round(translation_error([1, 1, 0], [1, 0, 0]), 6)
        (0.0, 45.0)
    """
    t_est = _matrix(np.reshape(t_est, -1), (3,), "t_est")
    t_gt = _matrix(np.reshape(t_gt, -1), (3,), "t_gt")
    norm = np.linalg.norm(t_est) * np.linalg.norm(t_gt)
    if norm == 0.0:
        return 90.0
    angle = float(np.degrees(np.arccos(np.clip(t_est @ t_gt / norm, -1.0, 1.0))))
    return min(angle, 180.0 - angle)


def pose_errors(R_est: Any, t_est: Any, T_0to1: Any) -> tuple[float, float]:
    """``(rotation error, translation error)`` in degrees against the true ``T_0to1``."""
    T = _matrix(T_0to1, (4, 4), "T_0to1")
    return rotation_error(R_est, T[:3, :3]), translation_error(t_est, T[:3, 3])


def pose_auc(errors: Sequence[float], thresholds: Sequence[float] = AUC_THRESHOLDS) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by it (module Convention).

    Args:
        errors: pose errors in degrees (``inf`` for failures; NaN is refused).
        thresholds: positive thresholds in degrees.

    Example:
        >>> pose_auc([0.0, 0.0], [5.0])
        [1.0]
        >>> pose_auc([5.0], [10.0]), pose_auc([float("inf")], [10.0])
        ([0.75], [0.0])
    """
    errs = np.asarray(errors, dtype=np.float64).reshape(-1)
    if np.isnan(errs).any():
        raise ValueRangeError("errors: expected numbers or inf, got NaN")
    if len(errs) == 0:
        raise ShapeError("errors: expected at least one pose error, got none")
    order = np.sort(errs)
    recall = (np.arange(len(order)) + 1) / len(order)
    order = np.concatenate([[0.0], order])
    recall = np.concatenate([[0.0], recall])
    out = []
    for t in thresholds:
        if not (np.isfinite(t) and t > 0):
            raise ValueRangeError(f"thresholds: expected positive numbers, got {t!r}")
        last = int(np.searchsorted(order, t))
        x = np.concatenate([order[:last], [t]])
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        out.append(float(np.trapezoid(y, x) / t))
    return out


def normalize_points(points: Any, K: Any) -> np.ndarray:
    """``(M, 2)`` pixel points to normalised image coordinates ``K^-1 (u, v, 1)``.

    Example:
        >>> normalize_points([[110.0, 60.0]], [[100, 0, 10], [0, 50, 10], [0, 0, 1]]).tolist()
        [[1.0, 1.0]]
    """
    pts, K = _points(points, "points"), _matrix(K, (3, 3), "K")
    homog = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    out = homog @ np.linalg.inv(K).T
    return out[:, :2] / out[:, 2:]


def essential_from_pose(T_0to1: Any) -> np.ndarray:
    """``E = [t]_x R`` of a relative pose (module Convention)."""
    T = _matrix(T_0to1, (4, 4), "T_0to1")
    t = T[:3, 3]
    skew = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    return skew @ T[:3, :3]


def symmetric_epipolar_errors(points0: Any, points1: Any, T_0to1: Any) -> np.ndarray:
    """Symmetric squared epipolar distances of matches in *normalised* coordinates (Convention).

    Args:
        points0, points1: ``(M, 2)`` normalised coordinates (:func:`normalize_points`).
        T_0to1: the true ``4 x 4`` relative pose.

    Returns:
        ``(M,)`` float64 errors (0 for a match consistent with the pose).

    Example:
        >>> T = np.eye(4); T[0, 3] = 1.0  # camera 1 shifted along x: epipolar lines are horizontal
        >>> symmetric_epipolar_errors([[0.0, 0.0], [0.0, 0.0]], [[0.3, 0.0], [0.3, 0.1]], T).round(6)
        array([0.  , 0.02])
    """
    p0, p1 = _points(points0, "points0"), _points(points1, "points1")
    if len(p0) != len(p1):
        raise ShapeError(f"points1: expected {len(p0)} rows like points0, got {len(p1)}")
    E = essential_from_pose(T_0to1)
    x0 = np.concatenate([p0, np.ones((len(p0), 1))], axis=1)
    x1 = np.concatenate([p1, np.ones((len(p1), 1))], axis=1)
    Ex0 = x0 @ E.T
    Etx1 = x1 @ E
    num = np.sum(x1 * Ex0, axis=1) ** 2
    d0 = Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2
    d1 = Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        err = num * (1.0 / d0 + 1.0 / d1)
    return np.where(np.isfinite(err), err, np.inf)
