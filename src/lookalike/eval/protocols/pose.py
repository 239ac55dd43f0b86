"""Relative pose on image pairs with known intrinsics and pose (``relative_pose``), SuperGlue's protocol.

For every pair of a ScanNet-style pair list (:mod:`lookalike.data.scannet`):

1. both images are read in gray and resized to 640 x 480 (the intrinsics scaled with them), as in
   SuperGlue's ScanNet evaluation (Sarlin et al., CVPR 2020);
2. each descriptor's pipeline (:class:`~lookalike.matching.pipeline.ImageMatcher`: DoG keypoints, the
   pipeline's matcher, ``smnn`` by default) matches them; pipelines with the same detector settings
   describe the same keypoints (detected once per image);
3. the essential matrix is estimated with OpenCV's USAC MAGSAC++ on the matches (threshold 1 px,
   normalised by the mean focal length; confidence 0.99999) and ``recoverPose`` gives ``R, t``
   (:func:`~lookalike.matching.geometry.estimate_relative_pose`);
4. pose error = max(rotation error, translation angle with the sign ambiguity removed), ``inf`` when
   the estimation fails; the pose AUC at 5/10/20 degrees is the trapezoid area of SuperGlue's
   ``pose_auc`` (:func:`~lookalike.eval.metrics.pose.pose_auc`);
5. match precision: the fraction of a pair's matches whose *symmetric* squared epipolar error in
   normalised coordinates (SuperGlue's ``compute_epipolar_error``) is below 5e-4, averaged over pairs
   (a pair without matches counts 0).

:func:`evaluate_pose` runs configured matchers on pairs; :func:`run_pose` is the whole command (find the
pairs, build the matchers, run, stamp the settings); :func:`evaluate_matched_pair` scores one pair from
its matched points (what a hand-built two-view case checks). Rendering is left to the caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike._registry import register
from lookalike.core.check import check_not_empty, check_positive
from lookalike.data.scannet import SCANNET_RESIZE, LoadedPair, ScanNetPair, find_scannet_pairs
from lookalike.eval.metrics.pose import (
    AUC_THRESHOLDS,
    EPIPOLAR_THRESHOLD,
    normalize_points,
    pose_auc,
    pose_errors,
    symmetric_epipolar_errors,
)
from lookalike.eval.protocols._common import (
    MatcherOptions,
    MatcherReport,
    make_matchers,
    matcher_for,
    network_precisions,
    options_from,
    run_matchers,
    version_stamp,
)

if TYPE_CHECKING:
    from lookalike.matching.pipeline import ImageMatcher

__all__ = [
    "PoseOptions",
    "PosePairResult",
    "PoseReport",
    "RelativePoseProtocol",
    "evaluate_matched_pair",
    "evaluate_pose",
    "run_pose",
    "summarize_pose",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoseOptions(MatcherOptions):
    """Settings of the matchers and of the protocol (defaults: SuperGlue's evaluation).

    Attributes:
        matcher: pipeline matcher (``smnn`` default; ``snn`` with ``ratio_threshold=0.8`` is Lowe's test).
        detector: ``dog``, ``harris-laplace`` or ``hessian``.
        max_keypoints: keypoints per image.
        ratio_threshold: ratio-test threshold (None: the pipeline's 0.9).
        ransac_threshold: essential-matrix inlier threshold in pixels (divided by the mean focal length).
        confidence: RANSAC confidence.
        resize: ``(width, height)`` the images are evaluated at (None: full resolution).
        epipolar_threshold: symmetric epipolar error below which a match is correct.
        thresholds: pose AUC thresholds in degrees.
    """

    ransac_threshold: float = 1.0
    confidence: float = 0.99999
    resize: tuple[int, int] | None = SCANNET_RESIZE
    epipolar_threshold: float = EPIPOLAR_THRESHOLD
    thresholds: tuple[float, ...] = AUC_THRESHOLDS

    def __post_init__(self) -> None:
        check_positive(self.ransac_threshold, "ransac_threshold")
        check_positive(self.epipolar_threshold, "epipolar_threshold")
        check_not_empty(list(self.thresholds), "thresholds")
        for t in self.thresholds:
            check_positive(t, "thresholds")

    def matcher_kwargs(self) -> dict[str, Any]:
        """Keywords of :class:`~lookalike.matching.pipeline.ImageMatcher` (no geometry: done here)."""
        return {**super().matcher_kwargs(), "geometry": "none"}


@dataclass(frozen=True)
class PosePairResult:
    """Numbers of one pair.

    Attributes:
        pair: ``"<name0> <name1>"``.
        rotation_error, translation_error: degrees (``inf`` when the estimation failed).
        error: ``max`` of the two.
        num_matches: matches fed to the estimation.
        num_inliers: matches ``recoverPose`` kept.
        precision: fraction of matches with a symmetric epipolar error below the threshold (0 without
            matches).
        num_keypoints: keypoints described in image 0 and image 1.
    """

    pair: str
    rotation_error: float
    translation_error: float
    error: float
    num_matches: int
    num_inliers: int
    precision: float
    num_keypoints: tuple[int, int] = (0, 0)


def evaluate_matched_pair(
    points0: Any,
    points1: Any,
    K0: Any,
    K1: Any,
    T_0to1: Any,
    *,
    options: PoseOptions | None = None,
    pair: str = "",
    num_keypoints: tuple[int, int] = (0, 0),
) -> PosePairResult:
    """Score one pair from its matched pixel coordinates (steps 3-5 of the module docstring).

    Args:
        points0, points1: ``(M, 2)`` matching pixel coordinates in the evaluated images.
        K0, K1: ``3 x 3`` intrinsics of those images.
        T_0to1: the true ``4 x 4`` relative pose (``X1 = R X0 + t``).
        options: :class:`PoseOptions` (RANSAC threshold, confidence, epipolar threshold).
        pair: label of the pair.
        num_keypoints: recorded as is.

    Returns:
        :class:`PosePairResult`.
    """
    from lookalike.matching.geometry import estimate_relative_pose

    opts = options or PoseOptions()
    p0 = np.asarray(points0, dtype=np.float64).reshape(-1, 2)
    p1 = np.asarray(points1, dtype=np.float64).reshape(-1, 2)
    pose = estimate_relative_pose(
        p0, p1, K0, K1, threshold=opts.ransac_threshold, confidence=opts.confidence
    )
    if pose.R is None:
        err_r = err_t = float("inf")
    else:
        err_r, err_t = pose_errors(pose.R, pose.t, T_0to1)
    if len(p0):
        epi = symmetric_epipolar_errors(normalize_points(p0, K0), normalize_points(p1, K1), T_0to1)
        precision = float(np.mean(epi < opts.epipolar_threshold))
    else:
        precision = 0.0
    return PosePairResult(
        pair=pair,
        rotation_error=err_r,
        translation_error=err_t,
        error=max(err_r, err_t),
        num_matches=len(p0),
        num_inliers=pose.num_inliers,
        precision=precision,
        num_keypoints=(int(num_keypoints[0]), int(num_keypoints[1])),
    )


def summarize_pose(
    pairs: Sequence[PosePairResult], thresholds: Sequence[float] = AUC_THRESHOLDS
) -> dict[str, Any]:
    """Pose AUC per threshold (``"auc"``: threshold -> value in [0, 1]), mean precision, matches."""
    if not pairs:
        return {"pairs": 0}
    auc = pose_auc([p.error for p in pairs], thresholds)
    errors = np.array([p.error for p in pairs])
    return {
        "pairs": len(pairs),
        "auc": {f"{t:g}": round(float(a), 4) for t, a in zip(thresholds, auc)},
        "precision": round(float(np.mean([p.precision for p in pairs])), 4),
        "matches": round(float(np.mean([p.num_matches for p in pairs])), 1),
        "inliers": round(float(np.mean([p.num_inliers for p in pairs])), 1),
        "failed": int(np.sum(~np.isfinite(errors))),
        "median_error": round(float(np.median(errors)), 2) if np.isfinite(errors).any() else None,
    }


@dataclass
class PoseReport(MatcherReport[PosePairResult]):
    """Results of :func:`evaluate_pose`: pair results per descriptor and their summaries."""

    thresholds: tuple[float, ...] = AUC_THRESHOLDS

    def summary(self, descriptor: str) -> dict[str, Any]:
        """:func:`summarize_pose` over every pair of ``descriptor``."""
        return summarize_pose(self.pairs[descriptor], self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, and per descriptor its summary, seconds and pair results."""

        def finite(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        out: dict[str, Any] = {"thresholds": list(self.thresholds), "config": self.config}
        out["descriptors"] = {
            name: {
                "summary": self.summary(name),
                "seconds": round(self.seconds.get(name, 0.0), 2),
                "pairs": [
                    {
                        **asdict(p),
                        "rotation_error": finite(p.rotation_error),
                        "translation_error": finite(p.translation_error),
                        "error": finite(p.error),
                    }
                    for p in pairs
                ],
            }
            for name, pairs in self.pairs.items()
        }
        return out


def _loaded(pair: ScanNetPair | LoadedPair, resize: tuple[int, int] | None) -> LoadedPair:
    return pair if isinstance(pair, LoadedPair) else pair.load(resize)


def evaluate_pose(
    pairs: Iterable[ScanNetPair | LoadedPair],
    matchers: dict[str, ImageMatcher],
    *,
    options: PoseOptions | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> PoseReport:
    """Run the protocol for every matcher on every pair.

    Args:
        pairs: :class:`~lookalike.data.scannet.ScanNetPair` (read and resized here) or already loaded
            :class:`~lookalike.data.scannet.LoadedPair`.
        matchers: label -> configured :class:`~lookalike.matching.pipeline.ImageMatcher`.
        options: :class:`PoseOptions`.
        progress: called as ``progress(label, pair_name)`` after each pair and matcher.

    Raises:
        EmptyInputError: no pair or no matcher.
    """
    opts = options or PoseOptions()
    items = list(pairs)
    check_not_empty(items, "pairs")
    check_not_empty(list(matchers), "matchers")
    report = PoseReport.for_labels(list(matchers), thresholds=tuple(opts.thresholds))
    for item in items:
        loaded = _loaded(item, opts.resize)
        images = (loaded.image0, loaded.image1)
        score = partial(_score_pair, loaded, opts)
        run_matchers(report, matchers, images, score, name=loaded.name, progress=progress)
    return report


def _score_pair(
    loaded: LoadedPair, opts: PoseOptions, matcher: ImageMatcher, feats: list[Any]
) -> list[PosePairResult]:
    """:func:`evaluate_matched_pair` of the pipeline's matches between the two images' features."""
    f0, f1 = feats
    idx, _ = matcher.match_features(f0, f1)
    result = evaluate_matched_pair(
        f0.keypoints.xy[idx[:, 0]],
        f1.keypoints.xy[idx[:, 1]],
        loaded.K0,
        loaded.K1,
        loaded.T_0to1,
        options=opts,
        pair=loaded.name,
        num_keypoints=(len(f0), len(f1)),
    )
    return [result]


def run_pose(
    data: str | os.PathLike[str] | None,
    descriptors: Sequence[str],
    *,
    options: PoseOptions | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> PoseReport:
    """Find the pairs (``data``: the ``scannet-sample`` folder or a data root), build one matcher per
    descriptor and run :func:`evaluate_pose`; the report's ``config`` holds the settings and version.
    """
    opts = options or PoseOptions()
    matchers = make_matchers(descriptors, opts.matcher_kwargs())
    root, pairs = find_scannet_pairs(data)
    log.debug("relative pose of %d descriptors on %d pairs in %s", len(matchers), len(pairs), root)
    report = evaluate_pose(pairs, matchers, options=opts, progress=progress)
    report.config = {
        "data": str(root),
        "descriptors": list(descriptors),
        "pairs": len(pairs),
        "protocol": (
            "SuperGlue's: images resized (K scaled), E by OpenCV USAC MAGSAC++ on normalised points, "
            "recoverPose, error = max(R angle, t angle without sign), AUC by trapezoid; precision = "
            "symmetric epipolar error < threshold"
        ),
        **{k: v for k, v in asdict(opts).items() if k != "thresholds"},
        "thresholds": list(opts.thresholds),
        "network_precision": network_precisions(matchers),
        **version_stamp(),
    }
    return report


@register("protocol", "relative_pose")
class RelativePoseProtocol:
    """Relative pose on ScanNet-style pairs: ``protocol(describer, data) -> summary dict``.

    ``describer`` is a descriptor spec (``"sift"``, ``"opencv-sift"``, ``"hardnet:bundled"``), a patch
    descriptor module, or a configured :class:`~lookalike.matching.pipeline.ImageMatcher`; ``data`` is a
    list of :class:`~lookalike.data.scannet.ScanNetPair` / ``LoadedPair`` or a folder holding a pair
    list (:func:`~lookalike.data.scannet.find_scannet_pairs`). The result is :func:`summarize_pose`
    (``"auc"`` per threshold, ``"precision"``, ``"matches"``...).

    Args:
        options: :class:`PoseOptions` (or a mapping of its fields).
    """

    def __init__(self, *, options: PoseOptions | dict[str, Any] | None = None) -> None:
        self.options = options_from(options, PoseOptions)

    def __call__(self, describer: Any, data: Any) -> dict[str, Any]:
        if isinstance(data, (str, os.PathLike)):
            data = find_scannet_pairs(data)[1]
        matcher = matcher_for(describer, self.options.matcher_kwargs())
        report = evaluate_pose(data, {matcher.descriptor: matcher}, options=self.options)
        summary = report.summary(matcher.descriptor)
        summary.pop("median_error", None)  # None when every pair failed: not a number
        return summary
