"""Working on a downscaled copy of a large image: shrink it, and map keypoints between the two sizes.

Convention: pixel centres are at integer coordinates in both images, so a resize by ``(sx, sy)`` maps
``x`` to ``(x + 0.5) sx - 0.5``; keypoint sizes scale by ``sqrt(sx sy)``; angles are kept.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lookalike.matching.keypoints import Keypoints

__all__ = ["scale_keypoints", "shrink_image"]


def shrink_image(gray: np.ndarray, max_size: int | None) -> tuple[np.ndarray, float, float]:
    """Downscale ``gray`` (``INTER_AREA``) so its longest side is at most ``max_size`` pixels.

    Returns:
        ``(image, sx, sy)``: the (possibly unchanged) image and its scale along x and y
        (``new_width / width``, ``new_height / height``; 1 when unchanged or ``max_size`` is 0/None).

    Example:
        >>> small, sx, sy = shrink_image(np.zeros((300, 4000), np.uint8), 2000)
        >>> small.shape, sx, sy
        ((150, 2000), 0.5, 0.5)
    """
    import cv2

    h, w = gray.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return gray, 1.0, 1.0
    scale = max_size / max(h, w)
    width, height = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return small, width / w, height / h


def scale_keypoints(kps: Keypoints, sx: float, sy: float, image_size: tuple[int, int]) -> Keypoints:
    """Keypoints of an image resized by ``(sx, sy)``: positions (pixel centres at integers) and sizes.

    ``x' = (x + 0.5) sx - 0.5`` (the same for y) and ``size' = size sqrt(sx sy)``; angles are kept.

    Example:
        >>> kps = Keypoints.from_arrays([[9.5, 19.5]], size=[3.0], image_size=(40, 20))
        >>> out = scale_keypoints(kps, 0.5, 0.5, (20, 10))
        >>> out.xy.tolist(), out.size.tolist(), out.image_size
        ([[4.5, 9.5]], [1.5], (20, 10))
    """
    if sx == 1.0 and sy == 1.0:
        return replace(kps, image_size=tuple(image_size))
    scale = np.array([sx, sy], dtype=np.float64)
    xy = ((kps.xy.astype(np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    size = (kps.size.astype(np.float64) * float(np.sqrt(sx * sy))).astype(np.float32)
    return replace(kps, xy=xy, size=size, image_size=(int(image_size[0]), int(image_size[1])))
