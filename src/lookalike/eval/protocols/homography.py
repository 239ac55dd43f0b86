"""Image matching on pairs with a known homography: MMA and homography accuracy (``homography_matching``).

Over every pair ``(0, k)`` of every sequence (:class:`~lookalike.data.sequences.HomographySequence`):

- MMA at 1..10 px (D2-Net, Dusmanu et al. 2019): keypoints are matched by *mutual nearest neighbour*
  and the pair's accuracy (:func:`~lookalike.eval.metrics.match_accuracy`) is averaged over pairs; a pair
  without any match counts 0.
- Number of matches: mutual NN matches per pair.
- Homography accuracy: the pipeline's own matcher (``smnn`` by default) and MAGSAC++ estimate ``H``;
  a pair is correct at ``eps`` if the mean corner error (:func:`~lookalike.eval.metrics.corner_error`)
  is ``<= eps`` (1, 3 and 5 px). A failed estimation (fewer than 4 matches) is wrong at every ``eps``.
- Numbers are reported per sequence, per data set (:func:`~lookalike.data.sequences.sequence_group`:
  ``oxford-affine``, ``hpatches-sequences``, ``evd``) and over all pairs.

:func:`evaluate_matching` runs configured matchers on sequences in memory; :func:`run_matching` is the
whole command (find the sequences below a folder, build the matchers, run, stamp the settings). The
rendering (markdown, JSON, plot, terminal table) is in :mod:`lookalike.eval.report`.
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
from lookalike.core.check import check_not_empty
from lookalike.data.sequences import sequence_group
from lookalike.eval.metrics.matching import (
    ACCURACY_THRESHOLDS,
    MMA_THRESHOLDS,
    at_threshold,
    corner_error,
    homography_accuracy,
    match_accuracy,
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
from lookalike.eval.protocols.sequences import find_evaluation_sequences

if TYPE_CHECKING:
    from lookalike.data.sequences import HomographySequence
    from lookalike.matching.pipeline import ImageMatcher

__all__ = [
    "HEADLINE_THRESHOLD",
    "HomographyMatchingProtocol",
    "MatchingOptions",
    "MatchingReport",
    "PairResult",
    "evaluate_matching",
    "evaluate_pair",
    "run_matching",
    "summarize",
]

log = logging.getLogger(__name__)

#: The MMA threshold of the summary tables (MMA@3), looked up by value.
HEADLINE_THRESHOLD = 3


@dataclass(frozen=True)
class MatchingOptions(MatcherOptions):
    """Settings of the matchers and of the protocol.

    Attributes:
        matcher: matcher of the homography estimation (``smnn`` default; MMA always uses mutual NN).
        detector: ``dog``, ``harris-laplace`` or ``hessian``.
        max_keypoints: keypoints per image.
        ratio_threshold: ratio-test threshold (None: the pipeline's 0.9).
        ransac_threshold: MAGSAC++ inlier threshold in px (None: the pipeline's 3).
        thresholds: MMA thresholds in pixels.
        views: view synthesis (None: off; ``"asift"`` or tilts, see :mod:`lookalike.matching.views`).
    """

    ransac_threshold: float | None = None
    thresholds: tuple[float, ...] = MMA_THRESHOLDS
    views: str | tuple[float, ...] | None = None

    def matcher_kwargs(self) -> dict[str, Any]:
        """Keywords of :class:`~lookalike.matching.pipeline.ImageMatcher`."""
        extra = {"ransac_threshold": self.ransac_threshold}
        if self.views is not None:
            extra["views"] = self.views
        return {**super().matcher_kwargs(), **extra}


@dataclass(frozen=True)
class PairResult:
    """Numbers of one image pair.

    Attributes:
        sequence: sequence name.
        index: ``k`` of the pair ``(0, k)``.
        mma: accuracy at each MMA threshold (mutual NN matches).
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


def summarize(pairs: Sequence[PairResult]) -> dict[str, Any]:
    """Means over ``pairs``: MMA per threshold, matches, homography accuracy at 1/3/5 px."""
    if not pairs:
        return {"pairs": 0}
    mma = np.mean([p.mma for p in pairs], axis=0)
    err = np.array([p.corner_error for p in pairs])
    acc = homography_accuracy(err, ACCURACY_THRESHOLDS)
    return {
        "pairs": len(pairs),
        "mma": [round(float(v), 4) for v in mma],
        "matches": round(float(np.mean([p.num_matches for p in pairs])), 1),
        "inliers": round(float(np.mean([p.num_inliers for p in pairs])), 1),
        "homography_accuracy": {
            str(t): round(float(a), 4) for t, a in zip(ACCURACY_THRESHOLDS, acc)
        },
        "median_corner_error": round(float(np.median(err)), 2) if np.isfinite(err).any() else None,
    }


@dataclass
class MatchingReport(MatcherReport[PairResult]):
    """Results of :func:`evaluate_matching`: pair results per descriptor and their summaries."""

    thresholds: tuple[float, ...] = MMA_THRESHOLDS

    @property
    def headline_threshold(self) -> float:
        """:data:`HEADLINE_THRESHOLD` when measured, else the measured threshold closest to it."""
        return min(self.thresholds, key=lambda t: (abs(t - HEADLINE_THRESHOLD), t))

    def groups(self) -> list[str]:
        return sorted({sequence_group(p.sequence) for ps in self.pairs.values() for p in ps})

    def sequences(self) -> list[str]:
        return sorted({p.sequence for ps in self.pairs.values() for p in ps})

    def summary(
        self, descriptor: str, *, group: str | None = None, sequence: str | None = None
    ) -> dict:
        """Summary over all pairs of ``descriptor``, or one data set / one sequence."""
        pairs = self.pairs[descriptor]
        if group is not None:
            pairs = [p for p in pairs if sequence_group(p.sequence) == group]
        if sequence is not None:
            pairs = [p for p in pairs if p.sequence == sequence]
        return summarize(pairs)

    def mma_at(self, summary: dict[str, Any], threshold: float | None = None) -> float:
        """MMA of a :meth:`summary` at ``threshold`` px (default :attr:`headline_threshold`)."""
        t = self.headline_threshold if threshold is None else threshold
        return at_threshold(summary["mma"], self.thresholds, t)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "thresholds": list(self.thresholds),
            "config": self.config,
            "descriptors": {},
        }
        for name, pairs in self.pairs.items():
            out["descriptors"][name] = {
                "overall": self.summary(name),
                "groups": {g: self.summary(name, group=g) for g in self.groups()},
                "sequences": {
                    s: self.summary(name, sequence=s) for s in sorted({p.sequence for p in pairs})
                },
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
    seqs = list(sequences)
    check_not_empty(seqs, "sequences")
    check_not_empty(list(matchers), "matchers")
    report = MatchingReport.for_labels(list(matchers), thresholds=tuple(thresholds))
    for seq in seqs:
        images = [seq.load(i, gray=True) for i in range(len(seq.images))]
        score = partial(_score_sequence, seq, images[0].shape[:2], tuple(thresholds))
        run_matchers(report, matchers, images, score, name=seq.name, progress=progress)
    return report


def _score_sequence(
    seq: HomographySequence,
    image_size: tuple[int, int],
    thresholds: tuple[float, ...],
    matcher: ImageMatcher,
    feats: list[Any],
) -> list[PairResult]:
    """:func:`evaluate_pair` of every pair ``(0, k)`` of ``seq`` from its images' features."""
    return [
        evaluate_pair(
            matcher,
            feats[0],
            feats[k],
            H,
            image_size,
            sequence=seq.name,
            index=k,
            thresholds=thresholds,
        )
        for _, k, H in seq.pairs()
    ]


def run_matching(
    data_root: str | os.PathLike[str] | None,
    descriptors: Sequence[str],
    *,
    sequences: Sequence[str] | None = None,
    options: MatchingOptions | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> MatchingReport:
    """Find the sequences below ``data_root``, build one matcher per descriptor and run the protocol.

    Args:
        data_root: folder of the sequences (default: ``LOOKALIKE_DATA``).
        descriptors: descriptor specs (checked before any image is read).
        sequences: keep sequences whose name contains one of these strings.
        options: :class:`MatchingOptions`.
        progress: see :func:`evaluate_matching`.

    Returns:
        The :class:`MatchingReport`, its ``config`` stamped with the settings and the code version.
    """
    opts = options or MatchingOptions()
    matchers = make_matchers(descriptors, opts.matcher_kwargs())
    root, found = find_evaluation_sequences(data_root, names=sequences)
    log.debug("matching %d descriptors on %d sequences below %s", len(matchers), len(found), root)
    report = evaluate_matching(found, matchers, thresholds=opts.thresholds, progress=progress)
    report.config = {
        "data": str(root),
        "descriptors": list(descriptors),
        "sequences": [s.name for s in found],
        "protocol": "MMA: mutual NN (D2-Net); homography: pipeline matcher + MAGSAC++, corner error",
        **opts.matcher_kwargs(),
        "thresholds": list(opts.thresholds),
        "network_precision": network_precisions(matchers),
        **version_stamp(),
    }
    return report


@register("protocol", "homography_matching")
class HomographyMatchingProtocol:
    """Image matching on homography sequences: ``protocol(describer, data) -> summary dict``.

    ``describer`` is a descriptor spec (``"sift"``, ``"opencv-sift"``, ``"hardnet:bundled"``), a patch
    descriptor module, or a configured :class:`~lookalike.matching.pipeline.ImageMatcher`; ``data`` is a
    list of :class:`~lookalike.data.sequences.HomographySequence` or a folder holding them. The result
    is :func:`summarize` over all pairs (``"mma"`` per threshold in ``"thresholds"``).

    Args:
        options: :class:`MatchingOptions` (or a mapping of its fields).
    """

    def __init__(self, *, options: MatchingOptions | dict[str, Any] | None = None) -> None:
        self.options = options_from(options, MatchingOptions)

    def __call__(self, describer: Any, data: Any) -> dict[str, Any]:
        if isinstance(data, (str, os.PathLike)):
            data = find_evaluation_sequences(data)[1]
        matcher = matcher_for(describer, self.options.matcher_kwargs())
        report = evaluate_matching(
            data, {matcher.descriptor: matcher}, thresholds=self.options.thresholds
        )
        return {
            **report.summary(matcher.descriptor),
            "thresholds": list(self.options.thresholds),
        }
