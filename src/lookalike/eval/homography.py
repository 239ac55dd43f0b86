"""Image matching on pairs with a known homography: MMA, homography accuracy, and the protocol.

Metrics (pure functions):

- :func:`match_accuracy`: the fraction of matches whose reprojection error ``|H x0 - x1|`` is within
  each threshold (D2-Net's "mean matching accuracy" for one pair).
- :func:`corner_error`: the mean distance between the image-0 corners mapped by the estimated and
  by the true homography (HPatches image matching / SuperPoint's homography estimation).

Protocol (:func:`evaluate_matching`), over every pair ``(0, k)`` of every sequence:

- MMA at 1..10 px (D2-Net, Dusmanu et al. 2019): keypoints are matched by *mutual nearest neighbour*
  and the pair's accuracy is averaged over pairs; a pair without any match counts 0.
- Number of matches: mutual NN matches per pair.
- Homography accuracy: the pipeline's own matcher (``smnn`` by default) and MAGSAC++ estimate ``H``;
  a pair is correct at ``eps`` if the mean corner error is ``<= eps`` (1, 3 and 5 px). A failed
  estimation (fewer than 4 matches) is wrong at every ``eps``.
- Numbers are reported per sequence, per data set (the first part of the sequence name:
  ``oxford-affine``, ``hpatches-sequences``, ``evd``) and over all pairs.

Convention:
    Points are ``(x, y)`` pixels, centres at integers; ``H`` maps image 0 to image ``k``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.core.check import check_not_empty
from lookalike.core.errors import ShapeError

if TYPE_CHECKING:
    from lookalike.data.sequences import HomographySequence
    from lookalike.matching.pipeline import ImageMatcher

__all__ = [
    "ACCURACY_THRESHOLDS",
    "MMA_THRESHOLDS",
    "MatchingReport",
    "PairResult",
    "corner_error",
    "evaluate_matching",
    "evaluate_pair",
    "match_accuracy",
    "project_points",
    "random_homography",
    "warp_image",
    "write_report",
]

log = logging.getLogger(__name__)

MMA_THRESHOLDS: tuple[int, ...] = tuple(range(1, 11))
ACCURACY_THRESHOLDS: tuple[int, ...] = (1, 3, 5)


def _xy(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError(f"{name}: expected shape (N, 2), got {arr.shape}")
    return arr


def _h(H: Any, name: str = "H") -> np.ndarray:
    arr = np.asarray(H, dtype=np.float64)
    if arr.shape != (3, 3):
        raise ShapeError(f"{name}: expected shape (3, 3), got {arr.shape}")
    return arr


def project_points(H: Any, points: Any) -> np.ndarray:
    """Map ``(N, 2)`` points by a homography (points at infinity become ``inf``).

    Example:
        >>> project_points([[2, 0, 1], [0, 2, 0], [0, 0, 1]], [[1.0, 1.0]]).tolist()
        [[3.0, 2.0]]
    """
    H, pts = _h(H), _xy(points, "points")
    hom = pts @ H[:, :2].T + H[:, 2]
    w = hom[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.abs(w) > 1e-12, hom[:, :2] / w, np.inf)
    return out


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

    Example:
        >>> match_accuracy([[0, 0], [10, 10]], [[0.5, 0], [14, 10]], np.eye(3), [1, 5]).tolist()
        [0.5, 1.0]
    """
    p0, p1 = _xy(points0, "points0"), _xy(points1, "points1")
    if p0.shape != p1.shape:
        raise ShapeError(
            f"points0 and points1: expected equal shapes, got {p0.shape} and {p1.shape}"
        )
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if p0.shape[0] == 0:
        return np.zeros(thr.shape[0])
    err = np.linalg.norm(project_points(H, p0) - p1, axis=1)
    err = np.where(np.isfinite(err), err, np.inf)
    return (err[:, None] <= thr[None, :]).mean(axis=0)


def corner_error(H_est: Any, H_true: Any, image_size: tuple[int, int]) -> float:
    """Mean distance between the 4 image corners mapped by ``H_est`` and by ``H_true``.

    Args:
        H_est: estimated homography, or ``None`` (failed estimation).
        H_true: ground truth.
        image_size: ``(H, W)`` of image 0; corners ``(0, 0), (W-1, 0), (0, H-1), (W-1, H-1)``.

    Returns:
        The error in pixels; ``inf`` when ``H_est`` is ``None`` or maps a corner to infinity.

    Example:
        >>> corner_error(np.eye(3), [[1, 0, 3], [0, 1, 4], [0, 0, 1]], (10, 20))
        5.0
    """
    if H_est is None:
        return float("inf")
    h, w = image_size
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    diff = project_points(H_est, corners) - project_points(H_true, corners)
    err = np.linalg.norm(diff, axis=1)
    return float(err.mean()) if np.isfinite(err).all() else float("inf")


def random_homography(
    image_size: tuple[int, int],
    rng: np.random.Generator,
    *,
    max_angle: float = 30.0,
    scale: tuple[float, float] = (0.75, 1.25),
    perspective: float = 0.15,
) -> np.ndarray:
    """A random, plausible homography keeping the image centre in view.

    Rotation about the centre up to ``max_angle`` degrees, isotropic scale in ``scale``, and each
    corner moved independently by up to ``perspective`` times the image size.

    Example:
        >>> H = random_homography((100, 200), np.random.default_rng(0))
        >>> H.shape, round(float(H[2, 2]), 6)
        ((3, 3), 1.0)
    """
    import cv2

    h, w = image_size
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    center = corners.mean(axis=0)
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
    s = rng.uniform(*scale)
    R = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    jitter = rng.uniform(-perspective, perspective, size=(4, 2)) * np.array([w, h])
    moved = (corners - center + jitter) @ R.T + center
    H = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    return H / H[2, 2]


def warp_image(image: np.ndarray, H: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """Warp ``image`` by ``H`` (image -> output pixels) into an output of ``size = (H, W)``."""
    import cv2

    h, w = size if size is not None else image.shape[:2]
    return cv2.warpPerspective(image, _h(H), (int(w), int(h)), flags=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class PairResult:
    """Numbers of one image pair.

    Attributes:
        sequence: sequence name.
        index: ``k`` of the pair ``(0, k)``.
        mma: accuracy at each of :data:`MMA_THRESHOLDS` (mutual NN matches).
        num_matches: number of mutual NN matches.
        num_keypoints: keypoints described in image 0 and image k.
        corner_error: mean corner error of the estimated ``H`` (``inf`` when it failed).
        num_inliers: RANSAC inliers of the estimation matches.
    """

    sequence: str
    index: int
    mma: tuple[float, ...]
    num_matches: int
    num_keypoints: tuple[int, int]
    corner_error: float
    num_inliers: int


def evaluate_pair(
    matcher: ImageMatcher,
    features0: Any,
    features1: Any,
    H: Any,
    image_size: tuple[int, int],
    *,
    sequence: str = "",
    index: int = 1,
    thresholds: Sequence[float] = MMA_THRESHOLDS,
) -> PairResult:
    """Evaluate one pair from described features (see the module docstring for the protocol)."""
    idx, _ = matcher.match_features(features0, features1, matcher="mnn")
    p0 = features0.keypoints.xy[idx[:, 0]]
    p1 = features1.keypoints.xy[idx[:, 1]]
    mma = match_accuracy(p0, p1, H, thresholds)
    est_idx, _ = matcher.match_features(features0, features1)
    fit = matcher.verify(
        features0.keypoints.xy[est_idx[:, 0]], features1.keypoints.xy[est_idx[:, 1]]
    )
    model = fit.model if fit.kind == "homography" else None
    return PairResult(
        sequence=sequence,
        index=int(index),
        mma=tuple(float(v) for v in mma),
        num_matches=int(idx.shape[0]),
        num_keypoints=(len(features0), len(features1)),
        corner_error=corner_error(model, H, image_size),
        num_inliers=fit.num_inliers,
    )


def _group(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else name


def summarize(pairs: Sequence[PairResult]) -> dict[str, Any]:
    """Means over ``pairs``: MMA per threshold, matches, homography accuracy at 1/3/5 px."""
    if not pairs:
        return {"pairs": 0}
    mma = np.mean([p.mma for p in pairs], axis=0)
    err = np.array([p.corner_error for p in pairs])
    return {
        "pairs": len(pairs),
        "mma": [round(float(v), 4) for v in mma],
        "matches": round(float(np.mean([p.num_matches for p in pairs])), 1),
        "inliers": round(float(np.mean([p.num_inliers for p in pairs])), 1),
        "homography_accuracy": {
            str(t): round(float(np.mean(err <= t)), 4) for t in ACCURACY_THRESHOLDS
        },
        "median_corner_error": round(float(np.median(err)), 2) if np.isfinite(err).any() else None,
    }


@dataclass
class MatchingReport:
    """Results of :func:`evaluate_matching`: pair results per descriptor and their summaries."""

    thresholds: tuple[float, ...] = MMA_THRESHOLDS
    config: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, list[PairResult]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def descriptors(self) -> list[str]:
        return list(self.pairs)

    def groups(self) -> list[str]:
        names = {_group(p.sequence) for ps in self.pairs.values() for p in ps}
        return sorted(names)

    def summary(
        self, descriptor: str, *, group: str | None = None, sequence: str | None = None
    ) -> dict:
        """Summary over all pairs of ``descriptor``, or one data set / one sequence."""
        pairs = self.pairs[descriptor]
        if group is not None:
            pairs = [p for p in pairs if _group(p.sequence) == group]
        if sequence is not None:
            pairs = [p for p in pairs if p.sequence == sequence]
        return summarize(pairs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "thresholds": list(self.thresholds),
            "config": self.config,
            "descriptors": {},
        }
        for name, pairs in self.pairs.items():
            sequences = sorted({p.sequence for p in pairs})
            out["descriptors"][name] = {
                "overall": self.summary(name),
                "groups": {g: self.summary(name, group=g) for g in self.groups()},
                "sequences": {s: self.summary(name, sequence=s) for s in sequences},
                "seconds": round(self.seconds.get(name, 0.0), 2),
                "pairs": [
                    {
                        **asdict(p),
                        "corner_error": p.corner_error if np.isfinite(p.corner_error) else None,
                    }
                    for p in pairs
                ],
            }
        return out

    def to_markdown(self) -> str:
        """Tables: MMA@3 and homography accuracy per data set, then per sequence."""
        groups = self.groups()
        i3 = list(self.thresholds).index(3) if 3 in self.thresholds else 0
        lines = ["# Image matching on homography sequences", ""]
        lines += [
            "MMA@3: mean matching accuracy at 3 px (mutual NN, D2-Net protocol); "
            "H@e: fraction of pairs whose estimated homography has a mean corner error <= e px "
            "(pipeline matcher + MAGSAC++); #m: mutual NN matches per pair.",
            "",
        ]
        header = ["descriptor"]
        for g in [*groups, "all"]:
            header += [f"{g} MMA@3", f"{g} H@1/3/5", f"{g} #m"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for name in self.descriptors:
            row = [name]
            for g in [*groups, None]:
                s = self.summary(name, group=g)
                if not s["pairs"]:
                    row += ["-", "-", "-"]
                    continue
                acc = s["homography_accuracy"]
                row += [
                    f"{s['mma'][i3]:.3f}",
                    "/".join(f"{acc[str(t)]:.2f}" for t in ACCURACY_THRESHOLDS),
                    f"{s['matches']:.0f}",
                ]
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "## Per sequence (MMA@3 / H@3)", ""]
        sequences = sorted({p.sequence for ps in self.pairs.values() for p in ps})
        lines.append("| sequence | " + " | ".join(self.descriptors) + " |")
        lines.append("|---|" + "---|" * len(self.descriptors))
        for seq in sequences:
            cells = []
            for name in self.descriptors:
                s = self.summary(name, sequence=seq)
                cells.append(
                    f"{s['mma'][i3]:.2f} / {s['homography_accuracy']['3']:.2f}"
                    if s["pairs"]
                    else "-"
                )
            lines.append(f"| {seq} | " + " | ".join(cells) + " |")
        if self.config:
            lines += ["", "## Settings", "", "```json", json.dumps(self.config, indent=2), "```"]
        return "\n".join(lines) + "\n"


def _detector_key(matcher: ImageMatcher) -> tuple:
    options = tuple(sorted((k, repr(v)) for k, v in matcher.detector_options.items()))
    return (matcher.detector, matcher.max_keypoints, matcher.upright, options)


def evaluate_matching(
    sequences: Iterable[HomographySequence],
    matchers: dict[str, ImageMatcher],
    *,
    thresholds: Sequence[float] = MMA_THRESHOLDS,
    progress: Callable[[str, str], None] | None = None,
) -> MatchingReport:
    """Run the protocol for every matcher over every pair of every sequence.

    Matchers with the same detector settings describe the same keypoints (detected once per image;
    the detection time is counted for the first of them only).

    Args:
        sequences: homography sequences (:func:`lookalike.data.sequences.find_sequences`).
        matchers: label -> configured :class:`~lookalike.matching.pipeline.ImageMatcher`.
        thresholds: MMA thresholds in pixels.
        progress: called as ``progress(label, sequence_name)`` after each sequence and matcher.

    Returns:
        :class:`MatchingReport`.

    Raises:
        EmptyInputError: no sequence or no matcher.
    """
    import time

    seqs = list(sequences)
    check_not_empty(seqs, "sequences")
    check_not_empty(list(matchers), "matchers")
    report = MatchingReport(thresholds=tuple(thresholds))
    for label in matchers:
        report.pairs[label] = []
        report.seconds[label] = 0.0
    for seq in seqs:
        images = [seq.load(i, gray=True) for i in range(len(seq.images))]
        keypoints: dict[tuple, list[Any]] = {}  # detector settings -> keypoints of each image
        for label, matcher in matchers.items():
            start = time.perf_counter()
            key = _detector_key(matcher)
            if key not in keypoints:
                keypoints[key] = [matcher.detect(image) for image in images]
            feats = [matcher.features(im, kp) for im, kp in zip(images, keypoints[key])]
            for _, k, H in seq.pairs():
                report.pairs[label].append(
                    evaluate_pair(
                        matcher,
                        feats[0],
                        feats[k],
                        H,
                        images[0].shape[:2],
                        sequence=seq.name,
                        index=k,
                        thresholds=thresholds,
                    )
                )
            report.seconds[label] += time.perf_counter() - start
            if progress is not None:
                progress(label, seq.name)
    return report


def write_report(report: MatchingReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.md``, ``results.json`` and ``mma.png`` (MMA vs threshold) into ``out_dir``."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "json": out / "results.json", "plot": out / "mma.png"}
    paths["markdown"].write_text(report.to_markdown())
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1))
    plot_mma(report, paths["plot"])
    return paths


def plot_mma(report: MatchingReport, path: str | Path) -> Path:
    """MMA vs threshold, one panel per data set and one over all pairs (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [*report.groups(), None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, group in zip(axes[0], panels):
        for name in report.descriptors:
            s = report.summary(name, group=group)
            if s["pairs"]:
                ax.plot(report.thresholds, s["mma"], marker="o", markersize=3, label=name)
        ax.set_title(group or "all pairs")
        ax.set_xlabel("threshold (px)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MMA (mutual NN)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
