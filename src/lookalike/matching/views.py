"""View synthesis for wide baselines (ASIFT/MODS style): detect in affine-warped views of an image.

A keypoint detector that finds circular regions fails when the two images differ by a strong
out-of-plane rotation: the same surface patch is an ellipse in one image and a circle in the other.
Simulating the camera tilts the detector cannot absorb fixes that (Morel & Yu, "ASIFT", SIAM J.
Imaging Sciences 2009; Mishkin et al., "MODS", CVIU 2015): the image is rotated by ``phi`` and
compressed by the tilt ``t`` along x (after an anti-aliasing blur of ``0.8 sqrt(t^2 - 1)`` pixels, as
ASIFT), keypoints are detected in every view, and each one is mapped back to the original image as an
*affine region*: centre ``L^-1 (x_v - b)``, shape ``L^-1`` normalised to unit determinant, size scaled by
``sqrt|det L^-1|``, angle kept (it lives in the normalised frame). The patch sampler then cuts the
region's normalised patch straight from the original image, so any patch descriptor works unchanged.

Convention:
    ``tilts`` lists the simulated tilts; tilt 1 is the original image. Tilt ``t > 1`` is simulated at the
    rotations ``0, d, 2 d, ... < 180`` degrees with ``d = 72 / t`` (ASIFT's sampling), so ``(1, 2, 4)``
    gives 1 + 5 + 10 = 16 views. Each view keeps its own keypoint budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lookalike.core.errors import OptionError
from lookalike.matching.keypoints import Keypoints

__all__ = ["VIEW_PRESETS", "affine_views", "check_tilts", "detect_in_views", "warp_view"]

#: Named tilt sets accepted wherever ``views`` is.
VIEW_PRESETS: dict[str, tuple[float, ...]] = {"asift": (1.0, 2.0, 4.0)}


def check_tilts(views: Any) -> tuple[float, ...] | None:
    """``None`` (no synthesis), a preset name or a sequence of tilts ``>= 1`` -> sorted unique tilts.

    Example:
        >>> check_tilts("asift"), check_tilts([2, 1]), check_tilts(None)
        ((1.0, 2.0, 4.0), (1.0, 2.0), None)
    """
    if views is None:
        return None
    if isinstance(views, str):
        if views not in VIEW_PRESETS:
            raise OptionError(
                f"views: expected one of {sorted(VIEW_PRESETS)} or tilts, got {views!r}"
            )
        return VIEW_PRESETS[views]
    try:
        tilts = sorted({float(t) for t in views})
    except (TypeError, ValueError):
        raise OptionError(
            f"views: expected a preset name or a sequence of tilts, got {views!r}"
        ) from None
    if not tilts or any(not math.isfinite(t) or t < 1.0 for t in tilts):
        raise OptionError(f"views: expected tilts >= 1, got {views!r}")
    return tuple(tilts)


def affine_views(tilts: Sequence[float]) -> list[tuple[float, float]]:
    """``(tilt, rotation in degrees)`` of every simulated view (see the module Convention).

    Example:
        >>> affine_views((1.0, 2.0))
        [(1.0, 0.0), (2.0, 0.0), (2.0, 36.0), (2.0, 72.0), (2.0, 108.0), (2.0, 144.0)]
    """
    out: list[tuple[float, float]] = []
    for t in tilts:
        if t == 1.0:
            out.append((1.0, 0.0))
            continue
        step = 72.0 / t
        out.extend((float(t), k * step) for k in range(math.ceil(180.0 / step - 1e-9)))
    return out


def warp_view(gray: np.ndarray, tilt: float, rotation: float) -> tuple[np.ndarray, np.ndarray]:
    """The simulated view and its ``(2, 3)`` map ``x_view = L x + b`` from original pixels.

    The image is rotated by ``rotation`` degrees (counter-clockwise on screen) into its bounding box,
    blurred along x by ``0.8 sqrt(t^2 - 1)`` pixels and resampled ``t`` times narrower.
    """
    import cv2

    h, w = gray.shape[:2]
    if tilt == 1.0 and rotation == 0.0:
        return gray, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    phi = math.radians(rotation)
    c, s = math.cos(phi), math.sin(phi)
    R = np.array([[c, s], [-s, c]])  # y down: counter-clockwise on screen
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    turned = corners @ R.T
    low = turned.min(axis=0)
    size = np.ceil(turned.max(axis=0) - low).astype(int) + 1
    M = np.hstack([R, -low[:, None]])
    view = cv2.warpAffine(
        gray, M, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR, borderValue=0
    )
    if tilt > 1.0:
        sigma = 0.8 * math.sqrt(tilt * tilt - 1.0)
        view = cv2.GaussianBlur(view, (0, 0), sigmaX=sigma, sigmaY=0.01)
        width = max(1, round(view.shape[1] / tilt))
        view = cv2.resize(view, (width, view.shape[0]), interpolation=cv2.INTER_LINEAR)
        sx = width / size[0]
        # x' = (x + 0.5) sx - 0.5 (cv2.resize's pixel-centre convention)
        M = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, 1.0, 0.0]]) @ np.vstack([M, [0, 0, 1]])
    return view, M


def _map_back(kps: Keypoints, M: np.ndarray, image_size: tuple[int, int]) -> Keypoints:
    """Keypoints of a view as affine regions of the original image (inside it only)."""
    L = M[:, :2]
    Linv = np.linalg.inv(L)
    xy = (kps.xy.astype(np.float64) - M[:, 2]) @ Linv.T
    root = math.sqrt(abs(np.linalg.det(Linv)))
    shape = (Linv / root).astype(np.float32)
    h, w = image_size
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)
    out = Keypoints(
        xy=xy.astype(np.float32),
        size=(kps.size.astype(np.float64) * root).astype(np.float32),
        angle=kps.angle,
        response=kps.response,
        octave=np.zeros_like(kps.octave),  # OpenCV's octave word is the view's, not the image's
        image_size=(int(h), int(w)),
        affine=np.einsum("ij,njk->nik", shape, kps.shapes()).astype(np.float32),
    )
    return out.subset(np.flatnonzero(inside))


def detect_in_views(
    gray: np.ndarray, detect: Callable[[np.ndarray], Keypoints], tilts: Sequence[float]
) -> Keypoints:
    """Keypoints of every simulated view of ``gray`` as affine regions of ``gray``, view by view.

    ``detect`` finds the keypoints of one (8-bit gray) view with its own budget.
    """
    parts = []
    for tilt, rotation in affine_views(tilts):
        view, M = warp_view(gray, tilt, rotation)
        kps = detect(view)
        parts.append(_map_back(kps, M, gray.shape[:2]) if (tilt, rotation) != (1.0, 0.0) else kps)
    return Keypoints.concat(parts, gray.shape[:2])
