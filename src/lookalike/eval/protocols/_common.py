"""What the matching-based protocols share: options from a mapping, a matcher from a describer, the
report's per-descriptor rows, the describe-then-score loop over matchers and the run stamp."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lookalike.core.check import check_not_empty

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "MatcherOptions",
    "MatcherReport",
    "detector_key",
    "make_matchers",
    "matcher_for",
    "options_from",
    "run_matchers",
    "version_stamp",
]


def options_from(options: T | Mapping[str, Any] | None, cls: type[T]) -> T:
    """``cls(**options)`` for a mapping, ``cls()`` for None, the options themselves otherwise."""
    if options is None:
        return cls()
    if isinstance(options, Mapping):
        return cls(**options)
    return options


def matcher_for(describer: Any, matcher_kwargs: Mapping[str, Any]) -> Any:
    """A configured :class:`~lookalike.matching.pipeline.ImageMatcher` as is, else a new one.

    ``describer`` is a descriptor spec (``"sift"``, ``"opencv-sift"``, ``"hardnet:bundled"``), a patch
    descriptor module, or an ``ImageMatcher`` (whose own settings are then kept).
    """
    from lookalike.matching.pipeline import ImageMatcher

    if isinstance(describer, ImageMatcher):
        return describer
    return ImageMatcher(describer, **matcher_kwargs)


def detector_key(matcher: Any) -> tuple:
    """What decides a matcher's keypoints: matchers with equal keys can share detected keypoints.

    Detector, keypoint budget, upright flag, ``max_size`` (keypoints found on a downscaled copy
    differ) and the detector options.
    """
    options = tuple(sorted((k, repr(v)) for k, v in matcher.detector_options.items()))
    views = getattr(matcher, "views", None)
    return (
        matcher.detector,
        matcher.max_keypoints,
        matcher.upright,
        matcher.max_size,
        options,
        views,
    )


@dataclass(frozen=True)
class MatcherOptions:
    """The pipeline settings every matching protocol takes; a protocol's options subclass it and add
    their own fields (after these) and keywords.

    Attributes:
        matcher: pipeline matcher (``smnn`` default).
        detector: ``dog``, ``harris-laplace`` or ``hessian``.
        max_keypoints: keypoints per image.
        ratio_threshold: ratio-test threshold (None: the pipeline's 0.9).

    Example:
        >>> MatcherOptions(max_keypoints=500).matcher_kwargs()
        {'matcher': 'smnn', 'detector': 'dog', 'max_keypoints': 500, 'ratio_threshold': None}
    """

    matcher: str = "smnn"
    detector: str = "dog"
    max_keypoints: int = 2048
    ratio_threshold: float | None = None

    def matcher_kwargs(self) -> dict[str, Any]:
        """Keywords of :class:`~lookalike.matching.pipeline.ImageMatcher`."""
        return {
            "matcher": self.matcher,
            "detector": self.detector,
            "max_keypoints": self.max_keypoints,
            "ratio_threshold": self.ratio_threshold,
        }


@dataclass
class MatcherReport(Generic[R]):
    """Rows of a matching protocol: per descriptor label its results and the seconds it took.

    The protocols' reports (:class:`~lookalike.eval.protocols.homography.MatchingReport`,
    :class:`~lookalike.eval.protocols.pose.PoseReport`) subclass it with their own ``thresholds``
    default, summaries and ``to_dict``.

    Example:
        >>> report = MatcherReport.for_labels(["sift", "hardnet"], thresholds=(1.0, 3.0))
        >>> report.descriptors, report.pairs["sift"], report.seconds["hardnet"]
        (['sift', 'hardnet'], [], 0.0)
    """

    thresholds: tuple[float, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, list[R]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_labels(cls, labels: Sequence[str], **fields: Any) -> Any:
        """A report with an empty row list and 0 seconds for each label (in order)."""
        report = cls(**fields)
        for label in labels:
            report.pairs[label], report.seconds[label] = [], 0.0
        return report

    @property
    def descriptors(self) -> list[str]:
        return list(self.pairs)


def run_matchers(
    report: MatcherReport[R],
    matchers: Mapping[str, Any],
    images: Sequence[Any],
    score: Callable[[Any, list[Any]], Sequence[R]],
    *,
    name: str,
    progress: Callable[[str, str], None] | None = None,
) -> None:
    """Describe ``images`` with every matcher and add what ``score`` makes of them to ``report``.

    Matchers with equal :func:`detector_key` describe the same keypoints (detected once per image,
    by the first of them; the detection time counts for that one only). For each ``label, matcher``:
    ``score(matcher, features)`` (``features[i]`` of ``images[i]``) returns the rows appended to
    ``report.pairs[label]``; the seconds go to ``report.seconds[label]``; then
    ``progress(label, name)``.
    """
    keypoints: dict[tuple, list[Any]] = {}  # detector settings -> keypoints of each image
    for label, matcher in matchers.items():
        start = time.perf_counter()
        key = detector_key(matcher)
        if key not in keypoints:
            keypoints[key] = [matcher.detect(image) for image in images]
        feats = [matcher.features(im, kp) for im, kp in zip(images, keypoints[key])]
        report.pairs[label].extend(score(matcher, feats))
        report.seconds[label] += time.perf_counter() - start
        if progress is not None:
            progress(label, name)


def make_matchers(descriptors: Sequence[str], matcher_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One :class:`~lookalike.matching.pipeline.ImageMatcher` per descriptor spec, by spec (every
    spec is checked before any image is read).

    Raises:
        EmptyInputError: no descriptor.
    """
    from lookalike.matching.pipeline import ImageMatcher

    check_not_empty(list(descriptors), "descriptors")
    return {name: ImageMatcher(name, **matcher_kwargs) for name in descriptors}


def network_precisions(matchers: Mapping[str, Any]) -> dict[str, str]:
    """``{label: trunk dtype}`` of the matchers whose describer runs a fused network.

    The fused precision depends on the machine (``precision="auto"``: bfloat16, int8 or float32),
    so a report records it next to its numbers.
    """
    out = {}
    for label, matcher in matchers.items():
        describer = getattr(matcher, "describer", None)
        if getattr(describer, "fused", False):
            out[label] = str(describer.network.dtype).removeprefix("torch.")
    return out


def version_stamp() -> dict[str, Any]:
    """``{"lookalike": version, "git": revision}``: the code version a report's ``config`` ends with."""
    from lookalike import __version__
    from lookalike.core.runs import git_revision

    return {"lookalike": __version__, "git": git_revision()}
