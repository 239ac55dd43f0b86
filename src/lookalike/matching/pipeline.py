"""Two images in, matches and a geometric model out: detect, describe, match, verify.

:func:`match_images` is the one-call entry point; :class:`ImageMatcher` holds a configured pipeline
(descriptor network loaded once) for matching many pairs.

Convention:
    - The default descriptor is :data:`DEFAULT_DESCRIPTOR` (``"sift"``, our differentiable SIFT on
      pyramid patches): the best descriptor shipped *with weights-free construction*. Trained
      networks are used by naming them, e.g. ``descriptor="hardnet:bundled"``;
      :func:`best_shipped_descriptor` names the best one whose weights are installed.
    - Float descriptors are compared with L2 on unit rows (``metric="l2"``), binary ones with the
      Hamming distance; ``metric="cosine"`` ranks like L2 on unit rows.
    - ``matches[m] = (i, j)`` pairs ``keypoints0[i]`` with ``keypoints1[j]``; ``inliers[m]`` says whether
      the match agrees with ``model`` (``H`` maps image 0 to image 1; ``F`` has ``x1^T F x0 = 0``).
    - Degenerate input is not an error: an image without keypoints gives zero matches, fewer than 4
      matches give ``model=None`` and no inliers. Unreadable files raise one clear
      :class:`~lookalike.core.errors.LookalikeError`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.core.check import check_option
from lookalike.matching.describe import Features, create_describer
from lookalike.matching.geometry import GEOMETRIES, estimate_geometry
from lookalike.matching.keypoints import Keypoints, detect_keypoints
from lookalike.matching.matchers import MATCHERS, match_descriptors

__all__ = [
    "DEFAULT_DESCRIPTOR",
    "ImageMatcher",
    "MatchResult",
    "best_shipped_descriptor",
    "match_images",
]

log = logging.getLogger(__name__)

#: The descriptor :func:`match_images` uses unless told otherwise.
DEFAULT_DESCRIPTOR = "sift"
#: Candidates for :func:`best_shipped_descriptor`, best first.
SHIPPED_CANDIDATES: tuple[str, ...] = (
    "hardnet8:bundled",
    "hardnet:bundled",
    "sosnet:bundled",
    "l2net:bundled",
    "tfeat:bundled",
)
#: Default ratio threshold of the symmetric test in the pipeline: between Lowe's 0.8 and kornia's
#: 0.95; on synthetic warps of the bundled photos 0.8-0.95 gave the same homography accuracy (the
#: evaluation sets were not used to choose it).
PIPELINE_RATIO = 0.9


@dataclass(frozen=True)
class MatchResult:
    """The result of matching two images.

    Attributes:
        keypoints0, keypoints1: described keypoints of each image.
        matches: ``(M, 2)`` int64 index pairs into ``keypoints0``/``keypoints1``.
        distances: ``(M,)`` float32 descriptor distances.
        inliers: ``(M,)`` bool, matches consistent with ``model`` (all True when no geometry is fit).
        model: ``3 x 3`` float64 homography or fundamental matrix, or ``None``.
        geometry: ``"homography"``, ``"fundamental"`` or ``"none"``.
        descriptor, matcher: what produced the matches.
        timings: seconds spent in ``detect``, ``describe``, ``match``, ``geometry`` and ``total``.
    """

    keypoints0: Keypoints
    keypoints1: Keypoints
    matches: np.ndarray = field(repr=False)
    distances: np.ndarray = field(repr=False)
    inliers: np.ndarray = field(repr=False)
    model: np.ndarray | None = field(repr=False)
    geometry: str = "homography"
    descriptor: str = ""
    matcher: str = ""
    timings: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def num_matches(self) -> int:
        return int(self.matches.shape[0])

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def points0(self) -> np.ndarray:
        """``(M, 2)`` matched positions in image 0."""
        return self.keypoints0.xy[self.matches[:, 0]]

    @property
    def points1(self) -> np.ndarray:
        """``(M, 2)`` matched positions in image 1."""
        return self.keypoints1.xy[self.matches[:, 1]]

    def __repr__(self) -> str:
        return (
            f"MatchResult({self.descriptor!r}, keypoints={len(self.keypoints0)}/{len(self.keypoints1)}, "
            f"matches={self.num_matches}, inliers={self.num_inliers}, "
            f"model={'None' if self.model is None else self.geometry})"
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts, model and timings."""
        return {
            "descriptor": self.descriptor,
            "matcher": self.matcher,
            "keypoints": [len(self.keypoints0), len(self.keypoints1)],
            "matches": self.num_matches,
            "inliers": self.num_inliers,
            "geometry": self.geometry,
            "model": None if self.model is None else np.asarray(self.model).tolist(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def _shipped(spec: str) -> bool:
    """Whether ``spec`` (``name:weights``) is registered with a weights file installed locally."""
    from importlib import resources

    from lookalike._registry import get_entry, split_spec
    from lookalike.core.errors import LookalikeError

    name, weights = split_spec(spec)
    try:
        entry = get_entry("descriptor", name)
    except LookalikeError:
        return False
    wspec = entry.weights.get(weights or "")
    if wspec is None or getattr(wspec, "file", None) is None:
        return False
    return (resources.files("lookalike") / "weights" / wspec.file).is_file()


def best_shipped_descriptor() -> str:
    """The best descriptor usable offline: a trained network whose weights are installed, else
    :data:`DEFAULT_DESCRIPTOR`. Never downloads.

    Example:
        >>> best_shipped_descriptor() in (DEFAULT_DESCRIPTOR, *SHIPPED_CANDIDATES)
        True
    """
    for spec in SHIPPED_CANDIDATES:
        if _shipped(spec):
            return spec
    return DEFAULT_DESCRIPTOR


class ImageMatcher:
    """A configured detect → describe → match → verify pipeline.

    Args:
        descriptor: a spec for :func:`~lookalike.matching.describe.create_describer` (registered name,
            ``"name:weights"``, ``"opencv-sift"``, ``"kornia-sift"``...) or a patch descriptor module.
        matcher: ``"nn"``, ``"mnn"``, ``"snn"`` or ``"smnn"``.
        detector: ``"dog"``, ``"harris-laplace"`` or ``"hessian"``.
        max_keypoints: keypoint budget per image (strongest responses).
        upright: ignore keypoint orientation.
        ratio_threshold: for ``snn``/``smnn`` (default :data:`PIPELINE_RATIO` = 0.9).
        metric: ``"l2"`` or ``"cosine"`` for float descriptors (binary ones always use Hamming).
        geometry: ``"homography"``, ``"fundamental"`` or ``"none"``.
        ransac_threshold: inlier threshold in pixels (default 3 for H, 1 for F).
        ransac_method: ``"magsac"`` (default), ``"usac"``, ``"accurate"``, ``"ransac"``.
        detector_options: extra keywords for :func:`~lookalike.matching.keypoints.detect_keypoints`.
        descriptor_options: extra keywords for :func:`~lookalike.matching.describe.create_describer`
            (``extent``, ``batch_size``, ``device``, factory arguments...).

    Example:
        >>> import numpy as np
        >>> pm = ImageMatcher("opencv-sift")
        >>> result = pm(np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))
        >>> result.num_matches, result.model is None
        (0, True)
    """

    def __init__(
        self,
        descriptor: Any = DEFAULT_DESCRIPTOR,
        *,
        matcher: str = "smnn",
        detector: str = "dog",
        max_keypoints: int | None = 2048,
        upright: bool = False,
        ratio_threshold: float | None = None,
        metric: str = "l2",
        geometry: str = "homography",
        ransac_threshold: float | None = None,
        ransac_method: str = "magsac",
        detector_options: dict[str, Any] | None = None,
        descriptor_options: dict[str, Any] | None = None,
    ) -> None:
        check_option(matcher, MATCHERS, "matcher")
        check_option(metric, ("l2", "cosine"), "metric")
        check_option(geometry, GEOMETRIES, "geometry")
        self.describer = create_describer(descriptor, **(descriptor_options or {}))
        self.descriptor = self.describer.name if not isinstance(descriptor, str) else descriptor
        self.matcher = matcher
        self.detector = detector
        self.max_keypoints = max_keypoints
        self.upright = upright
        self.ratio_threshold = ratio_threshold if ratio_threshold is not None else PIPELINE_RATIO
        self.metric = metric
        self.geometry = geometry
        self.ransac_threshold = ransac_threshold
        self.ransac_method = ransac_method
        self.detector_options = dict(detector_options or {})
        # fail early on a bad detector name
        check_option(detector, ("dog", "harris-laplace", "hessian"), "detector")

    def __repr__(self) -> str:
        return (
            f"ImageMatcher({self.descriptor!r}, matcher={self.matcher!r}, detector={self.detector!r}, "
            f"max_keypoints={self.max_keypoints}, geometry={self.geometry!r})"
        )

    def detect(self, image: Any) -> Keypoints:
        """Keypoints of ``image`` with this pipeline's detector settings."""
        return detect_keypoints(
            image,
            method=self.detector,
            max_keypoints=self.max_keypoints,
            upright=self.upright,
            **self.detector_options,
        )

    def features(self, image: Any, keypoints: Keypoints | None = None) -> Features:
        """Detect (unless ``keypoints`` are given) and describe."""
        from lookalike.data.images import load_image

        gray = load_image(image, gray=True)
        kps = self.detect(gray) if keypoints is None else keypoints
        return self.describer(gray, kps)

    def match_features(
        self, f0: Features, f1: Features, *, matcher: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(indices (M, 2), distances (M,))`` between two described images."""
        method = matcher or self.matcher
        metric = "hamming" if f0.metric == "hamming" else self.metric
        matches = match_descriptors(
            f0.descriptors,
            f1.descriptors,
            method,
            metric=metric,
            ratio_threshold=self.ratio_threshold if method in ("snn", "smnn") else None,
        )
        return matches.numpy()

    def verify(self, points0: np.ndarray, points1: np.ndarray) -> Any:
        """Robust geometry on matched points (see :mod:`lookalike.matching.geometry`)."""
        options: dict[str, Any] = {}
        if self.geometry != "none":
            options["method"] = self.ransac_method
            if self.ransac_threshold is not None:
                options["threshold"] = self.ransac_threshold
        return estimate_geometry(points0, points1, self.geometry, **options)

    def __call__(self, image0: Any, image1: Any) -> MatchResult:
        """Match two images (paths, arrays or tensors; colour, RGBA and 16-bit are converted)."""
        from lookalike.data.images import load_image

        gray0 = load_image(image0, gray=True, name="image0")
        gray1 = load_image(image1, gray=True, name="image1")
        t0 = time.perf_counter()
        k0, k1 = self.detect(gray0), self.detect(gray1)
        t1 = time.perf_counter()
        f0, f1 = self.describer(gray0, k0), self.describer(gray1, k1)
        t2 = time.perf_counter()
        indices, distances = self.match_features(f0, f1)
        t3 = time.perf_counter()
        fit = self.verify(f0.keypoints.xy[indices[:, 0]], f1.keypoints.xy[indices[:, 1]])
        t4 = time.perf_counter()
        return MatchResult(
            keypoints0=f0.keypoints,
            keypoints1=f1.keypoints,
            matches=indices,
            distances=distances,
            inliers=fit.inliers,
            model=fit.model,
            geometry=self.geometry,
            descriptor=self.descriptor,
            matcher=self.matcher,
            timings={
                "detect": t1 - t0,
                "describe": t2 - t1,
                "match": t3 - t2,
                "geometry": t4 - t3,
                "total": t4 - t0,
            },
        )


def match_images(
    image0: Any,
    image1: Any,
    descriptor: Any = DEFAULT_DESCRIPTOR,
    matcher: str = "smnn",
    **options: Any,
) -> MatchResult:
    """Match two images end to end.

    Args:
        image0, image1: file paths, ``(H, W)``/``(H, W, 3)``/``(H, W, 4)`` arrays (uint8, uint16 or
            float in [0, 1]) or tensors.
        descriptor: see :class:`ImageMatcher` (default :data:`DEFAULT_DESCRIPTOR`).
        matcher: ``"nn"``, ``"mnn"``, ``"snn"`` or ``"smnn"``.
        **options: any other :class:`ImageMatcher` keyword (``detector``, ``max_keypoints``,
            ``geometry``, ``ransac_threshold``...).

    Returns:
        :class:`MatchResult` with keypoints, matches, distances, inliers and the model.

    Raises:
        DataNotFoundError: a path does not exist.
        ImageError: a file cannot be decoded or an array is not an image.
        OptionError, RegistryError: bad options or an unknown descriptor.

    Example:
        >>> import numpy as np
        >>> from lookalike.data import bundled_photos
        >>> image = bundled_photos(["camera"])[0].rgb
        >>> result = match_images(image, image, "opencv-sift")
        >>> result.num_inliers > 100 and np.allclose(result.model, np.eye(3), atol=1e-3)
        True
    """
    return ImageMatcher(descriptor, matcher=matcher, **options)(image0, image1)
