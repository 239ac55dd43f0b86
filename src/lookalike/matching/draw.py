"""Pictures of matches: two images side by side with lines between matched keypoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.core.errors import OptionError

if TYPE_CHECKING:
    from lookalike.matching.pipeline import MatchResult

__all__ = ["draw_matches"]


def _fit_height(image: np.ndarray, low: int, high: int) -> tuple[np.ndarray, float]:
    """Scale ``image`` so its height lies in ``[low, high]``: shrink by area, enlarge nearest."""
    import cv2

    h = image.shape[0]
    height = min(max(h, low), high)
    if height == h:
        return image, 1.0
    scale = height / h
    width = max(1, round(image.shape[1] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interpolation), scale


def draw_matches(
    image0: Any,
    image1: Any,
    result: MatchResult,
    *,
    inliers_only: bool = True,
    correct: np.ndarray | None = None,
    max_matches: int = 400,
    max_height: int = 600,
    min_height: int = 64,
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
        max_height: taller images are shrunk to this height (area averaging).
        min_height: shorter images are enlarged to this height (nearest pixel), so a tiny image
            still gives a picture one can see.
        seed: seed of the subset.

    Returns:
        ``(H, W0 + W1, 3)`` uint8 RGB picture: the two (scaled) images side by side, top-aligned,
        ``H`` the taller of them, the shorter one padded with black below.

    Raises:
        OptionError: ``min_height`` is not in ``[1, max_height]``.

    Example:
        >>> import numpy as np
        >>> from lookalike.matching.pipeline import match_images
        >>> a = np.zeros((40, 50), np.uint8)
        >>> draw_matches(a, a, match_images(a, a, "opencv-sift")).shape
        (64, 160, 3)
        >>> one = np.zeros((1, 1), np.uint8)
        >>> draw_matches(one, a, match_images(one, a, "opencv-sift")).shape
        (64, 144, 3)
    """
    import cv2

    from lookalike.data.images import load_image

    if not 1 <= min_height <= max_height:
        raise OptionError(
            f"min_height: expected 1 <= min_height <= max_height ({max_height}), got {min_height}"
        )
    rgb0 = load_image(image0, gray=False, name="image0")
    rgb1 = load_image(image1, gray=False, name="image1")
    rgb0, s0 = _fit_height(rgb0, min_height, max_height)
    rgb1, s1 = _fit_height(rgb1, min_height, max_height)
    height = max(rgb0.shape[0], rgb1.shape[0])
    canvas = np.zeros((height, rgb0.shape[1] + rgb1.shape[1], 3), np.uint8)
    canvas[: rgb0.shape[0], : rgb0.shape[1]] = rgb0
    canvas[: rgb1.shape[0], rgb0.shape[1] :] = rgb1
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
