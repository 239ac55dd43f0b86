"""Robust two-view geometry: homography and fundamental matrix with OpenCV's USAC (MAGSAC++).

Convention:
    - Points are ``(M, 2)`` pixel coordinates ``(x, y)`` of the matched keypoints, row ``m`` of
      ``points0`` matching row ``m`` of ``points1``.
    - A homography ``H`` maps image 0 to image 1 (``x1 ~ H x0``); a fundamental matrix ``F`` satisfies
      ``x1^T F x0 = 0``. Both are float64 ``3 x 3``, ``H`` scaled so that ``H[2, 2] = 1``.
    - ``threshold`` is the reprojection error in pixels (homography) or the distance to the epipolar
      line (fundamental) below which a match is an inlier.
    - Too few matches (< 4 for a homography, < 8 for a fundamental matrix), degenerate points or a
      failed estimation give ``model=None`` and an all-False inlier mask, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import ShapeError

__all__ = [
    "GEOMETRIES",
    "ROBUST_METHODS",
    "GeometryResult",
    "RelativePose",
    "estimate_fundamental",
    "estimate_geometry",
    "estimate_homography",
    "estimate_relative_pose",
]

log = logging.getLogger(__name__)

GEOMETRIES: tuple[str, ...] = ("homography", "fundamental", "none")
ROBUST_METHODS: tuple[str, ...] = ("magsac", "usac", "accurate", "ransac")
_MIN_POINTS = {"homography": 4, "fundamental": 8, "essential": 5}


@dataclass(frozen=True)
class GeometryResult:
    """A robustly fitted model.

    Attributes:
        model: float64 ``3 x 3`` (``H`` or ``F``), or ``None`` when estimation was impossible.
        inliers: ``(M,)`` bool mask over the input matches.
        kind: ``"homography"``, ``"fundamental"`` or ``"none"``.
    """

    model: np.ndarray | None
    inliers: np.ndarray
    kind: str

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def _points(points: Any, name: str) -> np.ndarray:
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError(f"{name}: expected shape (M, 2), got {arr.shape}")
    return arr


def _cv_method(method: str) -> int:
    import cv2

    return {
        "magsac": cv2.USAC_MAGSAC,
        "usac": cv2.USAC_DEFAULT,
        "accurate": cv2.USAC_ACCURATE,
        "ransac": cv2.RANSAC,
    }[method]


def _check(points0: Any, points1: Any, method: str, threshold: float) -> tuple[np.ndarray, ...]:
    check_option(method, ROBUST_METHODS, "robust method")
    check_positive(threshold, "threshold")
    p0, p1 = _points(points0, "points0"), _points(points1, "points1")
    if p0.shape != p1.shape:
        raise ShapeError(
            f"points0 and points1: expected equal shapes, got {p0.shape} and {p1.shape}"
        )
    return p0, p1


def estimate_homography(
    points0: Any,
    points1: Any,
    *,
    method: str = "magsac",
    threshold: float = 3.0,
    confidence: float = 0.9999,
    max_iters: int = 10_000,
) -> GeometryResult:
    """Fit ``H`` (image 0 to image 1) robustly.

    Args:
        points0: ``(M, 2)`` points in image 0.
        points1: ``(M, 2)`` matching points in image 1.
        method: ``"magsac"`` (MAGSAC++, default), ``"usac"``, ``"accurate"`` (OpenCV USAC variants) or
            ``"ransac"``.
        threshold: inlier reprojection error in pixels.
        confidence: RANSAC confidence.
        max_iters: iteration cap.

    Returns:
        :class:`GeometryResult`; ``model=None`` with fewer than 4 matches or a failed fit.

    Example:
        >>> import numpy as np
        >>> p0 = np.random.default_rng(0).uniform(0, 100, (30, 2))
        >>> r = estimate_homography(p0, p0 + [5.0, -2.0])
        >>> r.num_inliers, np.round(r.model[:2, 2], 3).tolist()
        (30, [5.0, -2.0])
        >>> estimate_homography(p0[:3], p0[:3]).model is None
        True
    """
    import cv2

    p0, p1 = _check(points0, points1, method, threshold)
    m = p0.shape[0]
    none = GeometryResult(None, np.zeros(m, dtype=bool), "homography")
    if m < _MIN_POINTS["homography"] or not (np.isfinite(p0).all() and np.isfinite(p1).all()):
        return none
    try:
        H, mask = cv2.findHomography(
            p0,
            p1,
            _cv_method(method),
            float(threshold),
            maxIters=int(max_iters),
            confidence=confidence,
        )
    except cv2.error as exc:  # degenerate configurations can raise inside USAC
        log.debug("findHomography failed: %s", exc)
        return none
    if H is None or mask is None or not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12:
        return none
    return GeometryResult(H / H[2, 2], mask.reshape(-1).astype(bool), "homography")


def estimate_fundamental(
    points0: Any,
    points1: Any,
    *,
    method: str = "magsac",
    threshold: float = 1.0,
    confidence: float = 0.9999,
    max_iters: int = 10_000,
) -> GeometryResult:
    """Fit a fundamental matrix ``F`` (``x1^T F x0 = 0``) robustly.

    Args:
        points0, points1: ``(M, 2)`` matching points.
        method: as :func:`estimate_homography`.
        threshold: inlier distance to the epipolar line in pixels.
        confidence: RANSAC confidence.
        max_iters: iteration cap.

    Returns:
        :class:`GeometryResult`; ``model=None`` with fewer than 8 matches or a failed fit.
    """
    import cv2

    p0, p1 = _check(points0, points1, method, threshold)
    m = p0.shape[0]
    none = GeometryResult(None, np.zeros(m, dtype=bool), "fundamental")
    if m < _MIN_POINTS["fundamental"] or not (np.isfinite(p0).all() and np.isfinite(p1).all()):
        return none
    try:
        F, mask = cv2.findFundamentalMat(
            p0, p1, _cv_method(method), float(threshold), confidence, int(max_iters)
        )
    except cv2.error as exc:
        log.debug("findFundamentalMat failed: %s", exc)
        return none
    if F is None or mask is None or F.shape != (3, 3) or not np.isfinite(F).all():
        return none  # OpenCV may stack several 3 x 3 solutions for 7 points
    return GeometryResult(F, mask.reshape(-1).astype(bool), "fundamental")


def estimate_geometry(
    points0: Any, points1: Any, kind: str = "homography", **options: Any
) -> GeometryResult:
    """Dispatch to :func:`estimate_homography`/:func:`estimate_fundamental`; ``"none"`` fits nothing.

    With ``kind="none"`` every match counts as an inlier and the model is ``None``.
    """
    check_option(kind, GEOMETRIES, "geometry")
    if kind == "homography":
        return estimate_homography(points0, points1, **options)
    if kind == "fundamental":
        return estimate_fundamental(points0, points1, **options)
    p0 = _points(points0, "points0")
    return GeometryResult(None, np.ones(p0.shape[0], dtype=bool), "none")


@dataclass(frozen=True)
class RelativePose:
    """A relative pose recovered from an essential matrix.

    Attributes:
        R: float64 ``3 x 3`` rotation, or ``None`` when estimation failed.
        t: float64 ``(3,)`` unit translation (camera 0 to camera 1, up to scale and sign), or ``None``.
        E: the essential matrix the pose came from, or ``None``.
        inliers: ``(M,)`` bool, matches consistent with ``E`` and in front of both cameras.
    """

    R: np.ndarray | None
    t: np.ndarray | None
    E: np.ndarray | None
    inliers: np.ndarray

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def _intrinsics(K: Any, name: str) -> np.ndarray:
    arr = np.asarray(K, dtype=np.float64)
    if arr.shape != (3, 3):
        raise ShapeError(f"{name}: expected shape (3, 3), got {arr.shape}")
    if not np.isfinite(arr).all() or arr[0, 0] <= 0 or arr[1, 1] <= 0:
        from lookalike.core.errors import ValueRangeError

        raise ValueRangeError(f"{name}: expected finite intrinsics with positive focal lengths")
    return arr


def estimate_relative_pose(
    points0: Any,
    points1: Any,
    K0: Any,
    K1: Any,
    *,
    method: str = "magsac",
    threshold: float = 1.0,
    confidence: float = 0.99999,
    max_iters: int = 10_000,
) -> RelativePose:
    """Essential matrix (OpenCV USAC MAGSAC++ by default) and the pose ``recoverPose`` finds in it.

    The points are normalised with their intrinsics (``K^-1 (u, v, 1)``) and the pixel ``threshold``
    becomes ``threshold / mean(fx0, fy0, fx1, fy1)`` in normalised units (SuperGlue's evaluation). When
    OpenCV returns several candidate matrices, the one whose ``recoverPose`` keeps most matches wins.

    Args:
        points0, points1: ``(M, 2)`` matching pixel coordinates.
        K0, K1: ``3 x 3`` intrinsics of image 0 and image 1.
        method: ``"magsac"`` (default), ``"usac"``, ``"accurate"`` or ``"ransac"``.
        threshold: inlier threshold in pixels.
        confidence: RANSAC confidence.
        max_iters: iteration cap.

    Returns:
        :class:`RelativePose` with ``X1 = R X0 + t`` (``t`` of unit length); ``R = t = None`` with
        fewer than 5 matches or a failed estimation.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.uniform([-1, -1, 4], [1, 1, 6], (50, 3))
        >>> K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        >>> t = np.array([0.5, 0.0, 0.0])
        >>> project = lambda P: (P @ K.T)[:, :2] / P[:, 2:]
        >>> pose = estimate_relative_pose(project(X), project(X + t), K, K)
        >>> np.allclose(pose.R, np.eye(3), atol=1e-4), np.allclose(pose.t, [1, 0, 0], atol=1e-3)
        (True, True)
    """
    import cv2

    p0, p1 = _check(points0, points1, method, threshold)
    K0, K1 = _intrinsics(K0, "K0"), _intrinsics(K1, "K1")
    m = p0.shape[0]
    none = RelativePose(None, None, None, np.zeros(m, dtype=bool))
    if m < _MIN_POINTS["essential"] or not (np.isfinite(p0).all() and np.isfinite(p1).all()):
        return none
    n0 = cv2.undistortPoints(p0.reshape(-1, 1, 2), K0, None).reshape(-1, 2)
    n1 = cv2.undistortPoints(p1.reshape(-1, 1, 2), K1, None).reshape(-1, 2)
    norm_threshold = float(threshold) / float(np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]]))
    try:
        E, mask = cv2.findEssentialMat(
            n0,
            n1,
            np.eye(3),
            method=_cv_method(method),
            prob=float(confidence),
            threshold=norm_threshold,
            maxIters=int(max_iters),
        )
    except cv2.error as exc:
        log.debug("findEssentialMat failed: %s", exc)
        return none
    if E is None or mask is None or not np.isfinite(E).all():
        return none
    best = none
    for candidate in np.split(E, len(E) // 3):
        kept, R, t, pose_mask = cv2.recoverPose(candidate, n0, n1, np.eye(3), 1e9, mask=mask.copy())
        if kept > best.num_inliers:
            inliers = pose_mask.reshape(-1) > 0
            best = RelativePose(R, t.reshape(-1), candidate, inliers)
    return best
