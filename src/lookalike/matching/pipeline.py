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
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.core.check import check_int, check_option
from lookalike.core.errors import OptionError
from lookalike.matching.describe import Features, PatchDescriber, create_describer
from lookalike.matching.geometry import GEOMETRIES, ROBUST_METHODS, estimate_geometry
from lookalike.matching.keypoints import Keypoints, check_detector_options, detect_keypoints
from lookalike.matching.matchers import MATCHERS, match_descriptors
from lookalike.matching.resize import scale_keypoints, shrink_image
from lookalike.matching.views import check_tilts, detect_in_views

__all__ = [
    "DEFAULT_DESCRIPTOR",
    "DEFAULT_MAX_SIZE",
    "ImageMatcher",
    "MatchResult",
    "best_shipped_descriptor",
    "clear_matcher_cache",
    "match_images",
    "scale_keypoints",
    "shrink_image",
]

log = logging.getLogger(__name__)

#: The descriptor :func:`match_images` uses unless told otherwise.
DEFAULT_DESCRIPTOR = "sift"
#: Candidates for :func:`best_shipped_descriptor`, best first: only weights that ship with the
#: package (``src/lookalike/weights/``); a test checks that each one is installed. Ranked on held-out
#: nuisance pairs only (``benchmarks/matchability_gate.py --control``, 45 pairs, one run, stop 40):
#: ``hardnet_gated:bundled`` MMA@3 / H@3 .837 / .96 against .618 / .93 for ``hardnet:bundled``.
SHIPPED_CANDIDATES: tuple[str, ...] = ("hardnet_gated:bundled", "hardnet:bundled")
#: Longest image side (pixels) the pipeline detects and describes on. SIFT's DoG works on a 2x
#: up-sampled first octave, so its memory grows with 4x the pixel count: an 8000 x 8000 photo took
#: 52 s and 15.5 GB. 2048 px keeps a pair within seconds and ~1 GB, above the sizes of the usual
#: matching benchmarks (HPatches, Oxford: <= 1000 px; MegaDepth evaluations: 1200-1600 px).
DEFAULT_MAX_SIZE = 2048
#: How many configured pipelines :func:`match_images` keeps.
MATCHER_CACHE_SIZE = 4
_MATCHER_CACHE: OrderedDict[tuple, ImageMatcher] = OrderedDict()
#: Detectors run by OpenCV, which releases the GIL: the pipeline detects a pair's two images in two
#: threads. OpenCV's DoG builds each Gaussian pyramid serially, so on 2 cores the pair's detection
#: took 0.12 s in two threads against 0.19 s one after the other (``benchmarks/matching.py`` pair).
_THREADED_DETECTORS = ("dog", "harris-laplace")
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


def best_shipped_descriptor() -> str:
    """The best descriptor usable offline: a trained network whose weights are installed, else
    :data:`DEFAULT_DESCRIPTOR`. Never downloads.

    Example:
        >>> best_shipped_descriptor() in (DEFAULT_DESCRIPTOR, *SHIPPED_CANDIDATES)
        True
    """
    from lookalike._registry import best_shipped

    return best_shipped("descriptor", SHIPPED_CANDIDATES, DEFAULT_DESCRIPTOR)


def _check_float(value: Any, name: str, low: float, high: float | None = None) -> None:
    """``value`` is None or a number in ``(low, high]``."""
    if value is None:
        return
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and bool(np.isfinite(value)) and value > low and (high is None or value <= high)
    if not ok:
        upper = f", {high}]" if high is not None else ", inf)"
        raise OptionError(f"{name}: expected a number in ({low}{upper} or None, got {value!r}")


class ImageMatcher:
    """A configured detect → describe → match → verify pipeline.

    Args:
        descriptor: a spec for :func:`~lookalike.matching.describe.create_describer` (registered name,
            ``"name:weights"``, ``"opencv-sift"``, ``"kornia-mkd"``...), a patch descriptor module, or
            a describer (an object with ``describe_keypoints``).
        matcher: ``"nn"``, ``"mnn"``, ``"snn"`` or ``"smnn"``.
        detector: ``"dog"``, ``"harris-laplace"`` or ``"hessian"``.
        max_keypoints: keypoint budget per image (strongest responses); ``None`` keeps all.
        upright: ignore keypoint orientation.
        ratio_threshold: for ``snn``/``smnn``, in (0, 1] (default :data:`PIPELINE_RATIO` = 0.9).
        metric: ``"l2"`` or ``"cosine"`` for float descriptors (binary ones always use Hamming).
        geometry: ``"homography"``, ``"fundamental"`` or ``"none"``.
        ransac_threshold: inlier threshold in pixels of the original images (default 3 for H, 1
            for F).
        ransac_method: ``"magsac"`` (default), ``"usac"``, ``"accurate"``, ``"ransac"``.
        max_size: longest image side, in pixels, that detection and description work on (default
            :data:`DEFAULT_MAX_SIZE`); larger images are downscaled first (``INTER_AREA``). ``0`` or
            ``None`` works at full resolution.
        detector_options: extra keywords for :func:`~lookalike.matching.keypoints.detect_keypoints`.
        descriptor_options: extra keywords for :func:`~lookalike.matching.describe.create_describer`
            (``extent``, ``batch_size``, ``device``, ``fuse``, ``precision``, ``compile``, factory
            arguments...). A network named by a spec is described by its fused copy (bfloat16 where
            native, else int8 on a CPU with VNNI, else float32: ``precision="auto"``;
            ``compile=True`` to compile it), built once per pipeline.
        batch_pair: describe both images' patches in one call of the batched describe path (patch
            describers); ``False`` describes image by image, as before this option existed.
        views: view synthesis for wide baselines (:mod:`lookalike.matching.views`): ``None`` (off,
            default), ``"asift"`` (tilts 1, 2, 4: 16 views) or a sequence of tilts. Keypoints are
            detected in every view (each with ``max_keypoints``) and described as affine regions of
            the original image; patch describers only.

    Raises:
        OptionError: any bad option; every option is checked before the descriptor is built.
        RegistryError: unknown descriptor.

    Convention:
        Keypoints, matches and models are always in pixels of the original images: with
        ``max_size``, keypoints found in the downscaled image have their positions and sizes mapped
        back (:func:`scale_keypoints`) before matching and verification.

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
        max_size: int | None = DEFAULT_MAX_SIZE,
        detector_options: dict[str, Any] | None = None,
        descriptor_options: dict[str, Any] | None = None,
        batch_pair: bool = True,
        views: str | Sequence[float] | None = None,
    ) -> None:
        check_option(matcher, MATCHERS, "matcher")
        check_option(metric, ("l2", "cosine"), "metric")
        check_option(geometry, GEOMETRIES, "geometry")
        check_option(ransac_method, ROBUST_METHODS, "ransac_method")
        check_detector_options(detector, dict(detector_options or {}))
        check_int(max_keypoints, "max_keypoints", allow_none=True, low=1)
        check_int(max_size, "max_size", allow_none=True, low=0)
        _check_float(ratio_threshold, "ratio_threshold", 0.0, 1.0)
        _check_float(ransac_threshold, "ransac_threshold", 0.0)
        self.matcher = matcher
        self.detector = detector
        self.max_keypoints = max_keypoints
        self.upright = bool(upright)
        self.ratio_threshold = ratio_threshold if ratio_threshold is not None else PIPELINE_RATIO
        self.metric = metric
        self.geometry = geometry
        self.ransac_threshold = ransac_threshold
        self.ransac_method = ransac_method
        self.max_size = int(max_size) if max_size else None
        self.detector_options = dict(detector_options or {})
        self.batch_pair = bool(batch_pair)
        self.views = check_tilts(views)
        self.describer = create_describer(descriptor, **(descriptor_options or {}))
        if self.views is not None and not isinstance(self.describer, PatchDescriber):
            raise OptionError(
                f"views: expected a patch descriptor (affine regions are cut by the patch sampler), "
                f"got {self.describer!r}"
            )
        use_detector = getattr(self.describer, "use_detector", None)
        if callable(use_detector):  # OpenCV's VGG/BoostDesc/TEBLID: the detector's scale factor
            use_detector(detector)
        self.descriptor = self.describer.name if not isinstance(descriptor, str) else descriptor

    def __repr__(self) -> str:
        return (
            f"ImageMatcher({self.descriptor!r}, matcher={self.matcher!r}, detector={self.detector!r}, "
            f"max_keypoints={self.max_keypoints}, max_size={self.max_size}, "
            f"geometry={self.geometry!r})"
        )

    def _detect(self, gray: np.ndarray) -> Keypoints:
        if self.views is not None:
            return detect_in_views(gray, self._detect_view, self.views)
        return self._detect_view(gray)

    def _detect_view(self, gray: np.ndarray) -> Keypoints:
        return detect_keypoints(
            gray,
            method=self.detector,
            max_keypoints=self.max_keypoints,
            upright=self.upright,
            **self.detector_options,
        )

    def detect(self, image: Any) -> Keypoints:
        """Keypoints of ``image`` with this pipeline's detector settings, in original pixels."""
        from lookalike.data.images import load_image

        gray = load_image(image, gray=True)
        small, sx, sy = shrink_image(gray, self.max_size)
        return scale_keypoints(self._detect(small), 1 / sx, 1 / sy, gray.shape[:2])

    def _features(
        self, gray: np.ndarray, keypoints: Keypoints | None = None
    ) -> tuple[Features, float]:
        """Features in original pixels and the seconds spent detecting."""
        start = time.perf_counter()
        small, sx, sy = shrink_image(gray, self.max_size)
        if keypoints is None:
            kps = self._detect(small)
        else:
            kps = scale_keypoints(keypoints, sx, sy, small.shape[:2])
        detected = time.perf_counter() - start
        feats = self.describer.describe_keypoints(small, kps)
        kept = scale_keypoints(feats.keypoints, 1 / sx, 1 / sy, gray.shape[:2])
        return Features(kept, feats.descriptors, feats.metric), detected

    def _detect_both(self, small0: np.ndarray, small1: np.ndarray) -> list[Keypoints]:
        """Keypoints of both images; OpenCV detectors run the second image in a helper thread."""
        if self.detector not in _THREADED_DETECTORS:
            return [self._detect(small0), self._detect(small1)]
        found: dict[str, Any] = {}

        def second() -> None:
            try:
                found["kps"] = self._detect(small1)
            except BaseException as error:  # re-raised in the caller's thread
                found["error"] = error

        helper = threading.Thread(target=second, name="lookalike-detect", daemon=True)
        helper.start()
        try:
            first = self._detect(small0)
        finally:
            helper.join()
        if "error" in found:
            raise found["error"]
        return [first, found["kps"]]

    def _pair_features(
        self, gray0: np.ndarray, gray1: np.ndarray
    ) -> tuple[tuple[Features, Features], float]:
        """Both images' features, their patches described in one call; and the seconds detecting."""
        start = time.perf_counter()
        shrunk = [shrink_image(gray, self.max_size) for gray in (gray0, gray1)]
        kps = self._detect_both(shrunk[0][0], shrunk[1][0])
        detected = time.perf_counter() - start
        feats = self.describer.describe_images([small for small, _, _ in shrunk], kps)
        out = tuple(
            Features(
                scale_keypoints(f.keypoints, 1 / sx, 1 / sy, g.shape[:2]), f.descriptors, f.metric
            )
            for f, (_, sx, sy), g in zip(feats, shrunk, (gray0, gray1))
        )
        return out, detected  # type: ignore[return-value]

    def features(self, image: Any, keypoints: Keypoints | None = None) -> Features:
        """Detect (unless ``keypoints``, in original pixels, are given) and describe."""
        from lookalike.data.images import load_image

        return self._features(load_image(image, gray=True), keypoints)[0]

    def match_features(
        self, f0: Features, f1: Features, *, matcher: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(indices (M, 2), distances (M,))`` between two described images."""
        method = matcher or self.matcher
        metric = "hamming" if f0.metric == "hamming" else self.metric
        # view synthesis finds one place in several views: FGINN's second neighbour for the ratio
        positions = (f0.keypoints.xy, f1.keypoints.xy) if self.views is not None else None
        matches = match_descriptors(
            f0.descriptors,
            f1.descriptors,
            method,
            metric=metric,
            ratio_threshold=self.ratio_threshold if method in ("snn", "smnn") else None,
            positions=positions,
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
        if self.batch_pair and callable(getattr(self.describer, "describe_images", None)):
            (f0, f1), detected = self._pair_features(gray0, gray1)
        else:
            f0, d0 = self._features(gray0)
            f1, d1 = self._features(gray1)
            detected = d0 + d1
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
                "detect": detected,
                "describe": t2 - t0 - detected,
                "match": t3 - t2,
                "geometry": t4 - t3,
                "total": t4 - t0,
            },
        )


def _cache_key(descriptor: Any, matcher: str, options: dict[str, Any]) -> tuple | None:
    """A key for a spec string and plain options; ``None`` (not cached) for anything else."""
    if not isinstance(descriptor, str):
        return None
    try:
        key = (descriptor, matcher, repr(sorted(options.items())))
        hash(key)
    except TypeError:
        return None
    return key


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

    Convention:
        The configured pipeline (and so the descriptor network) is cached for the last
        :data:`MATCHER_CACHE_SIZE` combinations of a descriptor *name* and options: repeated calls do
        not rebuild it. :func:`clear_matcher_cache` empties the cache (e.g. to free GPU memory).

    Example:
        >>> import numpy as np
        >>> from lookalike.data import bundled_photos
        >>> image = bundled_photos(["camera"])[0].rgb
        >>> result = match_images(image, image, "opencv-sift")
        >>> result.num_inliers > 100 and np.allclose(result.model, np.eye(3), atol=1e-3)
        True
    """
    key = _cache_key(descriptor, matcher, options)
    pipeline = _MATCHER_CACHE.get(key) if key is not None else None
    if pipeline is None:
        pipeline = ImageMatcher(descriptor, matcher=matcher, **options)
        if key is not None:
            _MATCHER_CACHE[key] = pipeline
            while len(_MATCHER_CACHE) > MATCHER_CACHE_SIZE:
                _MATCHER_CACHE.popitem(last=False)
    else:
        _MATCHER_CACHE.move_to_end(key)
    return pipeline(image0, image1)


def clear_matcher_cache() -> None:
    """Forget the pipelines :func:`match_images` keeps (and so their descriptor networks)."""
    _MATCHER_CACHE.clear()
