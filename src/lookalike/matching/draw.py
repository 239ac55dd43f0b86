"""Pictures of matches: two images side by side with lines between matched keypoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lookalike.matching.pipeline import MatchResult

__all__ = ["draw_matches"]


def _fit_height(image: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    import cv2

    scale = height / image.shape[0]
    if abs(scale - 1.0) < 1e-9:
        return image, 1.0
    width = max(1, round(image.shape[1] * scale))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), scale


def draw_matches(
    image0: Any,
    image1: Any,
    result: MatchResult,
    *,
    inliers_only: bool = True,
    correct: np.ndarray | None = None,
    max_matches: int = 400,
    max_height: int = 600,
    seed: int = 0,
) -> np.ndarray:
    """Draw the (inlier) matches of ``result`` between two images side by side.

    Args:
        image0, image1: the matched images (anything :func:`lookalike.data.images.load_image` takes).
        result: the :class:`~lookalike.matching.pipeline.MatchResult` of these two images.
        inliers_only: draw only the matches consistent with the model (all when there is no model).
        correct: optional ``(M,)`` bool ground-truth correctness: correct matches in green, wrong
            ones in red (instead of one colour per match).
        max_matches: draw at most this many (a seeded random subset).
        max_height: both images are scaled to the smaller of their heights and this.
        seed: seed of the subset.

    Returns:
        ``(H, W0 + W1, 3)`` uint8 RGB picture.

    Example:
        >>> import numpy as np
        >>> from lookalike.matching.pipeline import match_images
        >>> a = np.zeros((40, 50), np.uint8)
        >>> draw_matches(a, a, match_images(a, a, "opencv-sift")).shape
        (40, 100, 3)
    """
    import cv2

    from lookalike.data.images import load_image

    rgb0 = load_image(image0, gray=False, name="image0")
    rgb1 = load_image(image1, gray=False, name="image1")
    height = min(rgb0.shape[0], rgb1.shape[0], max_height)
    rgb0, s0 = _fit_height(rgb0, height)
    rgb1, s1 = _fit_height(rgb1, height)
    canvas = np.concatenate([rgb0, rgb1], axis=1).copy()
    chosen = np.arange(result.num_matches)
    if inliers_only and result.model is not None:
        chosen = chosen[result.inliers]
    rng = np.random.default_rng(seed)
    if chosen.size > max_matches:
        chosen = np.sort(rng.choice(chosen, max_matches, replace=False))
    p0 = result.points0[chosen] * s0
    p1 = result.points1[chosen] * s1 + np.array([rgb0.shape[1], 0.0])
    colours = rng.integers(64, 256, size=(chosen.size, 3))
    if correct is not None:
        ok = np.asarray(correct, dtype=bool)[chosen]
        colours = np.where(ok[:, None], [[40, 220, 40]], [[230, 40, 40]])
    thickness = 1 if height < 800 else 2
    for a, b, c in zip(p0, p1, colours):
        colour = tuple(int(v) for v in c)
        pa = (round(float(a[0])), round(float(a[1])))
        pb = (round(float(b[0])), round(float(b[1])))
        cv2.line(canvas, pa, pb, colour, thickness, cv2.LINE_AA)
        cv2.circle(canvas, pa, 2, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, pb, 2, colour, -1, cv2.LINE_AA)
    return canvas
