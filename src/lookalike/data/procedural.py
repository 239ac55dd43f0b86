"""Procedural training images: dead leaves (occluding random shapes), no data needed.

Baradad et al., "Learning to See by Looking at Noise" (NeurIPS 2021) pretrain useful image representations
on such images; the bundled-photo recipes (:mod:`lookalike.data.bundled_instances`) may add them as extra
instance classes, so the network also sees edges, T-junctions and colour patches the 14 photos lack.
"""

from __future__ import annotations

import numpy as np

from lookalike.core.check import check_int, check_positive
from lookalike.core.errors import OptionError

__all__ = ["dead_leaves"]


def _radii(rng: np.random.Generator, n: int, r_min: float, r_max: float) -> np.ndarray:
    """``n`` radii with density proportional to ``r^-3`` on ``[r_min, r_max]`` (scale invariance)."""
    u = rng.uniform(0.0, 1.0, n)
    a, b = r_min**-2, r_max**-2
    return (a - u * (a - b)) ** -0.5


def dead_leaves(
    size: int,
    *,
    rng: np.random.Generator,
    shapes: int = 400,
    r_min: float = 0.01,
    r_max: float = 0.3,
) -> np.ndarray:
    """A dead-leaves image: ``shapes`` random discs and rotated rectangles painted over each other.

    Args:
        size: side ``S`` of the square image in pixels (>= 8).
        rng: the random generator (the image is a function of its state).
        shapes: number of shapes painted.
        r_min, r_max: radius range as a fraction of ``size`` (``0 < r_min <= r_max``), drawn with a
            density proportional to ``r^-3``.

    Returns:
        ``(S, S, 3)`` uint8 RGB image.

    Convention:
        Shapes are painted in order, each over the earlier ones (the last is on top); a colour is
        uniform in RGB per shape, plus a linear shading across the shape so that not every region
        is flat. The background is a random uniform colour.

    Example:
        >>> import numpy as np
        >>> image = dead_leaves(32, rng=np.random.default_rng(0), shapes=20)
        >>> image.shape, image.dtype.name
        ((32, 32, 3), 'uint8')
    """
    import cv2

    check_int(size, "size", 8)
    check_positive(shapes, "shapes")
    if not (0 < r_min <= r_max):
        raise OptionError(f"r_min, r_max: expected 0 < r_min <= r_max, got {r_min!r}, {r_max!r}")
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radii = _radii(rng, int(shapes), r_min * size, r_max * size)
    for radius in radii:
        cx, cy = rng.uniform(-0.1, 1.1, 2) * size
        mask = np.zeros((size, size), np.uint8)
        if rng.uniform() < 0.5:
            cv2.circle(mask, (int(cx), int(cy)), max(1, int(radius)), 1, -1, cv2.LINE_8)
        else:
            angle = rng.uniform(0, 180)
            aspect = rng.uniform(0.3, 1.0)
            box = ((float(cx), float(cy)), (2 * float(radius), 2 * float(radius) * aspect), angle)
            cv2.fillPoly(mask, [cv2.boxPoints(box).astype(np.int32)], 1)
        inside = mask.astype(bool)
        if not inside.any():
            continue
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        gx, gy = rng.normal(0.0, 40.0 / max(radius, 1.0), 2)
        shade = (xx[inside] - cx) * gx + (yy[inside] - cy) * gy
        image[inside] = colour + shade[:, None]
    return np.clip(image, 0, 255).astype(np.uint8)
