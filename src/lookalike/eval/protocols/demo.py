"""The demo protocol: the whole matching pipeline on held-out bundled photos under known homographies.

No data set is needed. Every photo of :data:`~lookalike.data.bundled.HELD_OUT_PHOTOS` (photos that no
shipped model trains on) is warped by two seeded random homographies, one of each strength of
:data:`DEMO_WARPS` (``moderate``, ``strong``); each descriptor then runs detect → describe → match →
MAGSAC++ on every pair.

Convention:
    - A match ``(x0, x1)`` is *correct* when ``|H x0 - x1| <= 3`` px (:data:`THRESHOLD_PX`) with ``H`` the
      true homography, else *wrong* (pictures: correct green, wrong red).
    - *precision* of a pair = correct matches / matches (0 without matches); the summary averages it over
      the pairs.
    - *H ok*: the estimated homography's mean corner error is ``<= 3`` px.
    - Photos are downscaled to a longer side of at most :data:`MAX_SIDE` pixels before warping.

:func:`run_demo` returns a :class:`DemoResult`; :func:`lookalike.eval.report.demo.write_demo` renders it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.core.check import check_not_empty, check_positive
from lookalike.data.bundled import HELD_OUT_PHOTOS
from lookalike.geometry import WarpRanges, project_points, random_homography, warp_image

__all__ = [
    "DEMO_PHOTOS",
    "DEMO_WARPS",
    "THRESHOLD_PX",
    "DemoPair",
    "DemoResult",
    "demo_pairs",
    "evaluate_demo_pair",
    "run_demo",
]

#: Photos the demo scores: exactly the held-out ones.
DEMO_PHOTOS: tuple[str, ...] = HELD_OUT_PHOTOS
#: Correctness threshold in pixels.
THRESHOLD_PX = 3.0
#: Longer side of the photos before warping.
MAX_SIDE = 640
#: The two homography strengths drawn per photo (angles in radians).
DEMO_WARPS: dict[str, WarpRanges] = {
    "moderate": WarpRanges(
        rotation=(math.radians(10), math.radians(20)),
        scale=(0.85, 1.15),
        anisotropy=(0.9, 1.1),
        shear=(-0.05, 0.05),
        perspective=(-0.15, 0.15),
        translation=(-0.05, 0.05),
    ),
    "strong": WarpRanges(
        rotation=(math.radians(35), math.radians(45)),
        scale=(0.6, 0.7),
        anisotropy=(0.8, 1.25),
        shear=(-0.1, 0.1),
        perspective=(-0.4, 0.4),
        translation=(-0.05, 0.05),
    ),
}


@dataclass
class DemoPair:
    """A photo and its warped view, with the true homography ``H`` (photo -> view)."""

    name: str
    photo: str
    strength: str
    image0: np.ndarray = field(repr=False)
    image1: np.ndarray = field(repr=False)
    H: np.ndarray = field(repr=False)


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    scale = max_side / max(rgb.shape[:2])
    if scale >= 1.0:
        return rgb
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def demo_pairs(seed: int = 0, photos: Sequence[str] = DEMO_PHOTOS) -> list[DemoPair]:
    """One seeded homography of each strength of :data:`DEMO_WARPS` per photo.

    Example:
        >>> [p.name for p in demo_pairs(photos=("coffee",))]
        ['coffee moderate', 'coffee strong']
    """
    from lookalike.data.bundled import bundled_photos

    pairs = []
    for i, photo in enumerate(bundled_photos(list(photos))):
        rgb = _downscale(photo.rgb, MAX_SIDE)
        for j, (strength, ranges) in enumerate(DEMO_WARPS.items()):
            rng = np.random.default_rng([seed, i, j])
            H = random_homography(rng, rgb.shape[:2], ranges)
            view = warp_image(rgb, H)
            pairs.append(DemoPair(f"{photo.name} {strength}", photo.name, strength, rgb, view, H))
    return pairs


def evaluate_demo_pair(matcher: Any, pair: DemoPair) -> tuple[Any, dict[str, Any], np.ndarray]:
    """Match one pair: ``(MatchResult, row of numbers, (M,) bool correct)`` (module Convention)."""
    from lookalike.eval.metrics.matching import corner_error

    result = matcher(pair.image0, pair.image1)
    p0, p1 = result.points0, result.points1
    err = np.linalg.norm(project_points(pair.H, p0) - p1, axis=1) if len(p0) else np.zeros(0)
    correct = np.isfinite(err) & (err <= THRESHOLD_PX)
    row: dict[str, Any] = {
        "pair": pair.name,
        "photo": pair.photo,
        "strength": pair.strength,
        "matches": int(result.num_matches),
        "correct": int(correct.sum()),
        "precision": float(correct.mean()) if correct.size else 0.0,
        "inliers": int(result.num_inliers),
        "corner_error": corner_error(result.model, pair.H, pair.image0.shape[:2]),
        "seconds": float(result.timings["total"]),
    }
    return result, row, correct


@dataclass
class DemoResult:
    """What :func:`run_demo` measured.

    Attributes:
        descriptors: the descriptors, in order.
        pairs: the image pairs.
        rows: one dict of numbers per pair and descriptor (``descriptor``, ``pair``, ``matches``,
            ``correct``, ``precision``, ``inliers``, ``corner_error``, ``seconds``...).
        matches: ``(pair name, descriptor)`` -> ``(MatchResult, correct mask)`` for the pictures.
        config: settings.
    """

    descriptors: list[str]
    pairs: list[DemoPair]
    rows: list[dict[str, Any]] = field(default_factory=list)
    matches: dict[tuple[str, str], tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per descriptor: mean precision, pairs with ``H ok``, correct / all matches, seconds per pair."""
        out = {}
        for name in self.descriptors:
            mine = [r for r in self.rows if r["descriptor"] == name]
            errors = np.array([r["corner_error"] for r in mine], dtype=np.float64)
            out[name] = {
                "pairs": len(mine),
                "precision": float(np.mean([r["precision"] for r in mine])) if mine else 0.0,
                "h_ok": int(np.sum(errors <= THRESHOLD_PX)),
                "h_accuracy": float(np.mean(errors <= THRESHOLD_PX)) if mine else 0.0,
                "correct": int(sum(r["correct"] for r in mine)),
                "matches": int(sum(r["matches"] for r in mine)),
                "seconds": float(np.mean([r["seconds"] for r in mine])) if mine else 0.0,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (``results.json``); an infinite corner error is ``None``."""
        rows = [
            {**r, "corner_error": r["corner_error"] if np.isfinite(r["corner_error"]) else None}
            for r in self.rows
        ]
        return {
            "threshold_px": THRESHOLD_PX,
            "photos": list(dict.fromkeys(p.photo for p in self.pairs)),
            "config": self.config,
            "summary": self.summary(),
            "pairs": rows,
        }


def run_demo(
    descriptors: Sequence[str],
    *,
    seed: int = 0,
    max_keypoints: int = 1024,
    photos: Sequence[str] = DEMO_PHOTOS,
    progress: Callable[[str, str], None] | None = None,
) -> DemoResult:
    """Run every descriptor on every demo pair.

    Args:
        descriptors: descriptor specs; all are built (and so checked) before any pair is matched.
        seed: seed of the homographies.
        max_keypoints: keypoints per image.
        photos: bundled photos to warp (default: the held-out ones).
        progress: called as ``progress(descriptor, pair name)`` before each match.

    Returns:
        A :class:`DemoResult`.

    Raises:
        EmptyInputError: no descriptor.
        RegistryError, OptionError: an unknown descriptor or bad option.
    """
    from lookalike.matching.pipeline import ImageMatcher

    names = list(descriptors)
    check_not_empty(names, "descriptors")
    check_positive(max_keypoints, "max_keypoints")
    matchers = {name: ImageMatcher(name, max_keypoints=max_keypoints) for name in names}
    pairs = demo_pairs(seed=seed, photos=tuple(photos))
    config = {"seed": seed, "max_keypoints": max_keypoints, "threshold_px": THRESHOLD_PX}
    result = DemoResult(names, pairs, config=config)
    start = time.perf_counter()
    for pair in pairs:
        for name, matcher in matchers.items():
            if progress is not None:
                progress(name, pair.name)
            match, row, correct = evaluate_demo_pair(matcher, pair)
            result.rows.append({"descriptor": name, **row})
            result.matches[(pair.name, name)] = (match, correct)
    result.config["seconds"] = round(time.perf_counter() - start, 2)
    return result
