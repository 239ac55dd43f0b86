"""Training pairs cut exactly as the matching pipeline cuts them (dataset ``pipeline_pairs``).

:class:`~lookalike.data.bundled_pairs.BundledPairs` cuts a photo's keypoints through the local affine map of
each homography, with OpenCV's sampler and a synthetic frame jitter. Here nothing differs from what
:class:`~lookalike.matching.pipeline.ImageMatcher` does at test time:

1. two random homographic views of a bundled photo, each with its own illumination change
   (:func:`~lookalike.data.illumination.random_illumination`) and photometric change
   (:func:`~lookalike.data.synth.random_photometric`), quantised to 8 bits;
2. keypoints detected *in each view* by the pipeline's DoG detector
   (:func:`~lookalike.matching.keypoints.detect_keypoints`: scale and orientation as detected, the
   pipeline's keypoint budget);
3. a pair is two real detections that agree with the true homography
   (:func:`keypoint_correspondences`: position, scale and orientation within tolerances, mutual nearest);
4. patches cut by the pipeline's sampler (:func:`pipeline_patches`: ``keypoints_to_laf`` with the
   network's ``extent`` and ``extract_patches``' kornia pyramid).

Pairs whose regions overlap in view 0 are thinned (the stronger keypoint wins) and every point is
labelled by its 8-pixel cell in the source photo, so a batch never holds the same surface twice.

Validation never uses ``LOOKALIKE_DATA``: :meth:`PipelinePairs.validation_set` scores the whole pipeline
(MMA at 3 px, mutual NN, as ``lookalike evaluate matching``) on the nuisance pairs of the held-out photos
(:mod:`lookalike.data.nuisance_pairs`; :data:`~lookalike.data.bundled_pairs.VALIDATION_PHOTOS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lookalike._registry import register
from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.bundled import BUNDLED_PHOTOS, bundled_gray
from lookalike.data.bundled_pairs import VALIDATION_PHOTOS, PairSource, split_photos
from lookalike.data.illumination import IlluminationRanges, random_illumination
from lookalike.data.images import quantize_u8
from lookalike.data.synth import (
    PhotometricRanges,
    _inside_source,
    random_photometric,
    suppress_overlaps,
)
from lookalike.descriptors._base import NETWORK_EXTENT
from lookalike.geometry import (
    WarpRanges,
    homography_jacobian,
    project_points,
    random_homography,
    warp_image,
)

__all__ = [
    "MatchingValidation",
    "PipelinePairs",
    "held_out_pairs",
    "keypoint_correspondences",
    "pipeline_patches",
    "render_view",
]

_LABEL_STRIDE = 1_000_000  # label = photo index * stride + source cell
_CELL = 8  # source-photo cell (pixels) that names a point


def _check_tolerances(
    pixel_tolerance: float, scale_tolerance: float, angle_tolerance: float
) -> None:
    check_positive(pixel_tolerance, "pixel_tolerance")
    check_positive(angle_tolerance, "angle_tolerance")
    ok = isinstance(scale_tolerance, (int, float)) and not isinstance(scale_tolerance, bool)
    if not ok or not scale_tolerance >= 1:
        raise OptionError(f"scale_tolerance: expected a number >= 1, got {scale_tolerance!r}")


def keypoint_correspondences(
    kps0: Any,
    kps1: Any,
    H: np.ndarray,
    *,
    pixel_tolerance: float = 2.0,
    scale_tolerance: float = 1.3,
    angle_tolerance: float = 20.0,
) -> np.ndarray:
    """Pairs of detections that are the same keypoint under the homography ``H`` (image 0 -> image 1).

    ``kps0[i]`` and ``kps1[j]`` correspond when ``|H x_i - x_j| <= pixel_tolerance``, the size ratio
    ``size_j / (size_i * sqrt|det J_i|)`` is within ``[1 / scale_tolerance, scale_tolerance]`` and the
    angle of ``J_i d_i`` (``d_i`` the unit vector of ``angle_i``, ``J_i`` the Jacobian of ``H`` at ``x_i``)
    is within ``angle_tolerance`` degrees of ``angle_j``; among those, pairs that are each other's nearest
    (in pixels) are kept.

    Args:
        kps0, kps1: :class:`~lookalike.matching.keypoints.Keypoints` (OpenCV conventions).
        H: ``(3, 3)`` homography from image 0 to image 1.
        pixel_tolerance: in pixels of image 1.
        scale_tolerance: >= 1.
        angle_tolerance: degrees; ``>= 180`` ignores the orientation.

    Returns:
        ``(M, 2)`` int64 index pairs ``(i, j)``, sorted by ``i``.

    Example:
        >>> from lookalike.matching.keypoints import Keypoints
        >>> k0 = Keypoints.from_arrays([[10.0, 10.0], [30.0, 5.0]], size=[4.0, 4.0], angle=[0.0, 0.0])
        >>> k1 = Keypoints.from_arrays([[20.5, 20.0]], size=[8.0], angle=[0.0])
        >>> keypoint_correspondences(k0, k1, np.diag([2.0, 2.0, 1.0])).tolist()
        [[0, 0]]
    """
    _check_tolerances(pixel_tolerance, scale_tolerance, angle_tolerance)
    if len(kps0) == 0 or len(kps1) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    xy0 = kps0.xy.astype(np.float64)
    proj = project_points(H, xy0)
    jac = homography_jacobian(H, xy0)
    local = np.sqrt(np.abs(np.linalg.det(jac)))
    rad = np.radians(kps0.angle.astype(np.float64))
    mapped = np.einsum("nij,nj->ni", jac, np.stack([np.cos(rad), np.sin(rad)], axis=1))
    angle0 = np.degrees(np.arctan2(mapped[:, 1], mapped[:, 0]))
    dist = np.linalg.norm(proj[:, None, :] - kps1.xy[None, :, :].astype(np.float64), axis=2)
    ratio = kps1.size[None, :] / (kps0.size[:, None] * local[:, None])
    turn = np.abs((kps1.angle[None, :] - angle0[:, None] + 180.0) % 360.0 - 180.0)
    ok = (dist <= pixel_tolerance) & (ratio <= scale_tolerance) & (ratio >= 1.0 / scale_tolerance)
    if angle_tolerance < 180:
        ok &= turn <= angle_tolerance
    ok &= np.isfinite(dist)
    cost = np.where(ok, dist, np.inf)
    best1 = np.argmin(cost, axis=1)  # for each i
    best0 = np.argmin(cost, axis=0)  # for each j
    i = np.flatnonzero(np.isfinite(cost[np.arange(len(xy0)), best1]))
    i = i[best0[best1[i]] == i]
    return np.stack([i, best1[i]], axis=1).astype(np.int64)


def pipeline_patches(
    image: Any, keypoints: Any, *, patch_size: int = 32, extent: float = NETWORK_EXTENT
) -> torch.Tensor:
    """``(N, 1, P, P)`` float32 patches exactly as :class:`~lookalike.matching.describe.PatchDescriber` cuts them.

    ``keypoints_to_laf(keypoints, extent=extent)`` then ``extract_patches`` (kornia pyramid, level bias 0)
    on ``image_to_tensor(image)`` (8-bit gray / 255).

    Example:
        >>> from lookalike.matching.keypoints import Keypoints
        >>> kps = Keypoints.from_arrays([[20.0, 20.0]], size=[4.0])
        >>> pipeline_patches(np.zeros((40, 40), np.uint8), kps).shape
        torch.Size([1, 1, 32, 32])
    """
    from lookalike.matching.patches import extract_patches, image_to_tensor, keypoints_to_laf

    check_positive(patch_size, "patch_size")
    check_positive(extent, "extent")
    tensor = image_to_tensor(image)
    lafs = keypoints_to_laf(keypoints, extent=extent)
    return extract_patches(tensor, lafs, int(patch_size))


def render_view(
    gray: np.ndarray,
    H: np.ndarray,
    rng: np.random.Generator,
    *,
    illumination: IlluminationRanges | None = None,
    photometric: PhotometricRanges | None = None,
    strength: float = 1.0,
) -> np.ndarray:
    """A ``(H, W)`` uint8 view: ``gray`` (float in [0, 1]) warped by ``H``, re-lit, photometric change.

    Example:
        >>> view = render_view(np.full((8, 8), 0.5, np.float32), np.eye(3), np.random.default_rng(0))
        >>> view.dtype, int(view[4, 4])
        (dtype('uint8'), 128)
    """
    view = warp_image(np.asarray(gray, dtype=np.float32), H)
    if illumination is not None:
        view = random_illumination(view, rng, illumination, strength=strength)
    if photometric is not None:
        view = random_photometric(view, rng, photometric)
    return quantize_u8(view)


def _thin(kps: Any, extent: float, max_overlap: float) -> np.ndarray:
    """Indices kept by a greedy suppression of overlapping regions, strongest response first."""
    order = np.argsort(-kps.response, kind="stable")
    xy = kps.xy[order].astype(np.float64)
    radius = extent * kps.size[order].astype(np.float64) / 2.0
    return np.sort(order[suppress_overlaps(xy, radius, max_overlap)])


def _inside(kps: Any, H: np.ndarray, size: tuple[int, int], extent: float) -> np.ndarray:
    """Keypoints of a view whose patch square maps back inside the source photo (no black border)."""
    from lookalike.matching.patches import keypoints_to_laf

    lafs = keypoints_to_laf(kps, extent=extent, dtype=torch.float64)[0].numpy()
    return _inside_source(H, lafs, size)


@register("dataset", "pipeline_pairs")
class PipelinePairs(PairSource):
    """Endless stream of pipeline-cut patch pairs from re-lit homographic views of the bundled photos.

    Args:
        batch_size: pairs per batch (distinct points).
        patch_size: patch side ``P`` (the network's ``patch_size``).
        extent: patch half-width in units of the keypoint ``size / 2`` (the network's ``patch_extent``).
        output: ``"pairs"`` (``(anchors, positives)``) or ``"labels"`` (``(patches, labels)``).
        seed: seed of the stream.
        photos: training photos (default: every bundled photo except ``val_photos``).
        val_photos: held-out photos of :meth:`validation_set`.
        warp: :class:`~lookalike.geometry.WarpRanges` of each view (or a mapping).
        photometric: :class:`~lookalike.data.synth.PhotometricRanges` (mapping, ``True`` for the defaults,
            ``None``/``False`` for none).
        illumination: :class:`~lookalike.data.illumination.IlluminationRanges` (mapping, ``True``, or
            ``None``/``False``), drawn independently for each view.
        illumination_strength: ``strength`` of :func:`~lookalike.data.illumination.random_illumination`.
        max_keypoints: the detector's keypoint budget per view (the pipeline's, 2048).
        upright: detect upright keypoints (as ``ImageMatcher(upright=True)``).
        pixel_tolerance, scale_tolerance, angle_tolerance: of :func:`keypoint_correspondences`.
        max_overlap: pairs whose view-0 regions overlap more than this (IoU) with a stronger one are dropped.
        points_per_warp: maximum pairs cut from one draw of views.
        max_side: photos with a longer side are downscaled to it first.
        buffer_batches: shuffle buffer, in batches.
        val_seeds: seeds of the held-out pairs of :meth:`validation_set`.
        val_pairs: the held-out pairs of :meth:`validation_set`: ``"nuisance"`` (default,
            :func:`~lookalike.data.nuisance_pairs.nuisance_pairs`: zoom, viewpoint, blur, JPEG, light)
            or ``"demo"`` (:func:`held_out_pairs`: the demo's two homographies, re-lit).

    Example:
        >>> import lookalike
        >>> data = lookalike.create("dataset", "pipeline_pairs", batch_size=8, photos=["camera"])
        >>> anchors, positives = next(iter(data))
        >>> tuple(anchors.shape), tuple(positives.shape)
        ((8, 1, 32, 32), (8, 1, 32, 32))
    """

    n_views = 2

    def __init__(
        self,
        *,
        batch_size: int = 256,
        patch_size: int = 32,
        extent: float = NETWORK_EXTENT,
        output: str = "pairs",
        seed: int = 0,
        photos: Sequence[str] | None = None,
        val_photos: Sequence[str] = VALIDATION_PHOTOS,
        warp: WarpRanges | dict[str, Any] | None = None,
        photometric: PhotometricRanges | dict[str, Any] | bool | None = True,
        illumination: IlluminationRanges | dict[str, Any] | bool | None = True,
        illumination_strength: float = 1.0,
        max_keypoints: int = 2048,
        upright: bool = False,
        pixel_tolerance: float = 3.0,
        scale_tolerance: float = 1.4,
        angle_tolerance: float = 30.0,
        max_overlap: float = 0.5,
        points_per_warp: int = 256,
        max_side: int = 768,
        buffer_batches: int = 4,
        val_seeds: Sequence[int] = (0, 1),
        val_pairs: str = "nuisance",
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("patch_size", patch_size),
            ("extent", extent),
            ("max_keypoints", max_keypoints),
            ("points_per_warp", points_per_warp),
            ("max_side", max_side),
            ("buffer_batches", buffer_batches),
        ):
            check_positive(value, name)
        check_positive(illumination_strength, "illumination_strength", strict=False)
        check_option(output, ("pairs", "labels"), "output")
        check_option(val_pairs, ("nuisance", "demo"), "val_pairs")
        self.train_photos, self.val_photos = split_photos(photos, val_photos)
        self.batch_size, self.patch_size = int(batch_size), int(patch_size)
        self.extent, self.output, self.seed = float(extent), output, int(seed)
        self.warp = WarpRanges.coerce(warp, "warp")
        self.photometric = _coerce(photometric, PhotometricRanges, "photometric")
        self.illumination = _coerce(illumination, IlluminationRanges, "illumination")
        self.illumination_strength = float(illumination_strength)
        self.max_keypoints, self.upright = int(max_keypoints), bool(upright)
        self.tolerances = {
            "pixel_tolerance": float(pixel_tolerance),
            "scale_tolerance": float(scale_tolerance),
            "angle_tolerance": float(angle_tolerance),
        }
        _check_tolerances(**self.tolerances)
        self.max_overlap = float(max_overlap)
        self.points_per_warp, self.max_side = int(points_per_warp), int(max_side)
        self.buffer_batches = int(buffer_batches)
        self.val_seeds = tuple(int(s) for s in val_seeds)
        self.val_pairs = val_pairs
        self._cache: dict[str, np.ndarray] = {}

    def patch_geometry(self) -> dict[str, Any]:
        """How the patches are cut, for a weights file's metadata (what the pipeline must reproduce)."""
        return {
            "patch_size": self.patch_size,
            "patch_extent": self.extent,
            "keypoints": "dog (lookalike.matching.keypoints.detect_keypoints)",
            "orientation": "detected (OpenCV clockwise angle; LAF orientation = -angle)"
            if not self.upright
            else "upright",
            "sampler": "lookalike.matching.patches.extract_patches (kornia pyrdown pyramid, level_bias 0)",
            "preprocessing": "8-bit gray / 255, per-patch standardisation in the network",
        }

    def photo(self, name: str) -> np.ndarray:
        """The cached ``(H, W)`` float32 gray photo, downscaled to ``max_side``."""
        if name not in self._cache:
            self._cache[name] = bundled_gray(name, self.max_side)
        return self._cache[name]

    def _photo_points(self, name: str) -> int:
        return self.points_per_warp  # every training photo is drawn equally often

    def views(
        self, rng: np.random.Generator, name: str
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[Any]]:
        """One draw: ``([H0, H1], [view0, view1] uint8, [keypoints0, keypoints1])`` of a photo."""
        from lookalike.matching.keypoints import detect_keypoints

        gray = self.photo(name)
        Hs = [random_homography(rng, gray.shape[:2], self.warp) for _ in range(2)]
        views, kps = [], []
        for H in Hs:
            view = render_view(
                gray, H, rng, illumination=self.illumination, photometric=self.photometric,
                strength=self.illumination_strength,
            )  # fmt: skip
            found = detect_keypoints(view, max_keypoints=self.max_keypoints, upright=self.upright)
            views.append(view)
            kps.append(found.subset(_inside(found, H, gray.shape[:2], self.extent)))
        return Hs, views, kps

    def _draw(
        self, rng: np.random.Generator, name: str, max_points: int, *args: Any, **kwargs: Any
    ) -> tuple[np.ndarray, torch.Tensor]:
        """``(labels (M,), patches (M, 2, 1, P, P))`` of one draw of two views."""
        (H0, H1), (v0, v1), (k0, k1) = self.views(rng, name)
        pairs = keypoint_correspondences(k0, k1, H1 @ np.linalg.inv(H0), **self.tolerances)
        if pairs.size:
            pairs = pairs[_thin(k0.subset(pairs[:, 0]), self.extent, self.max_overlap)]
        if len(pairs) > max_points:
            pairs = pairs[np.sort(rng.choice(len(pairs), size=max_points, replace=False))]
        P = self.patch_size
        if len(pairs) == 0:
            return np.zeros(0, dtype=np.int64), torch.zeros(0, 2, 1, P, P)
        a, b = k0.subset(pairs[:, 0]), k1.subset(pairs[:, 1])
        src = project_points(np.linalg.inv(H0), a.xy.astype(np.float64))
        cells = np.floor(src / _CELL).astype(np.int64)
        base = list(BUNDLED_PHOTOS).index(name) * _LABEL_STRIDE
        labels = base + cells[:, 1] * 1000 + cells[:, 0]
        patches = torch.stack(
            [
                pipeline_patches(v0, a, patch_size=P, extent=self.extent),
                pipeline_patches(v1, b, patch_size=P, extent=self.extent),
            ],
            dim=1,
        )
        return labels, patches

    def validation_set(self, *, n_points: int | None = None) -> MatchingValidation:
        """The held-out matching score: :class:`MatchingValidation` on the :attr:`val_pairs` pairs.

        ``n_points`` is accepted for the training engine and ignored (the set is the held-out pairs of
        :attr:`val_seeds`).
        """
        from lookalike.data.nuisance_pairs import nuisance_pairs

        make = nuisance_pairs if self.val_pairs == "nuisance" else held_out_pairs
        pairs = [p for s in self.val_seeds for p in make(seed=s, photos=self.val_photos)]
        return MatchingValidation(pairs, extent=self.extent, max_keypoints=self.max_keypoints)


def _coerce(value: Any, cls: type, name: str) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        return cls()
    return cls.coerce(value, name) if hasattr(cls, "coerce") else value


def held_out_pairs(
    *,
    seed: int = 0,
    photos: Sequence[str] = VALIDATION_PHOTOS,
    illumination: IlluminationRanges | dict[str, Any] | None = None,
    strength: float = 1.0,
) -> list[Any]:
    """The demo's homographic pairs of held-out photos, each view re-lit differently (8-bit gray).

    :func:`~lookalike.eval.protocols.demo.demo_pairs` (one moderate and one strong homography per photo)
    with an independent :func:`~lookalike.data.illumination.random_illumination` of each view (seeded by
    ``seed``, the photo and the view).

    Example:
        >>> [p.name for p in held_out_pairs(photos=("coffee",))]
        ['coffee moderate', 'coffee strong']
    """
    from lookalike.eval.protocols.demo import demo_pairs

    ranges = IlluminationRanges.coerce(illumination)
    out = []
    for k, pair in enumerate(demo_pairs(seed=seed, photos=tuple(photos))):
        lit = []
        for v, rgb in enumerate((pair.image0, pair.image1)):
            gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
            rng = np.random.default_rng([seed, k, v, 7])
            img = random_illumination(gray, rng, ranges, strength=strength)
            lit.append(quantize_u8(img))
        pair.image0, pair.image1 = lit
        out.append(pair)
    return out


@dataclass
class MatchingValidation:
    """The matching protocol's MMA at 3 px on held-out pairs: a validation set that scores itself.

    Each pair is scored exactly as ``lookalike evaluate matching`` scores a sequence pair
    (:func:`~lookalike.eval.protocols.homography.evaluate_pair`): MMA over *mutual nearest neighbour*
    matches (D2-Net), homography from the pipeline's ratio-tested matches and MAGSAC++. So a choice made
    here optimises the number the shared benchmarks report. (Before, the validation scored the precision
    of the ratio-tested matches: on the re-lit demo pairs, seeds 0-1, that ranked ``hardnet:bundled`` far
    above our 24-px RootSIFT, 0.947 against 0.895, while mutual NN puts it below, 0.717 against 0.803,
    as the real sequences do.)

    Attributes:
        pairs: :class:`~lookalike.eval.protocols.demo.DemoPair` s (images and true homography).
        extent: the patch extent the network is described with.
        max_keypoints: keypoint budget per image.
        metric: ``"mma3"`` (the training engine's name for the number).
        higher_is_better: True.
    """

    pairs: list[Any] = field(repr=False)
    extent: float = NETWORK_EXTENT
    max_keypoints: int = 2048
    metric: str = "mma3"
    higher_is_better: bool = True

    def scores(self, model: Any, device: Any = None) -> dict[str, float]:
        """Means over the pairs: ``mma3`` (mutual NN matches within 3 px), ``h3`` (corner error <= 3 px).

        Also ``{family}/mma3`` per pair family (the pairs' ``strength``: ``moderate``, ``zoom``...).
        """
        from lookalike.eval.protocols.demo import THRESHOLD_PX
        from lookalike.eval.protocols.homography import evaluate_pair
        from lookalike.matching.pipeline import ImageMatcher

        if not self.pairs:
            raise EmptyInputError("MatchingValidation: no held-out pair")
        options = {"extent": self.extent} if isinstance(model, torch.nn.Module) else {}
        matcher = ImageMatcher(model, max_keypoints=self.max_keypoints, descriptor_options=options)
        mma, errors, family = [], [], []
        for pair in self.pairs:
            f0, f1 = matcher.features(pair.image0), matcher.features(pair.image1)
            shape = pair.image0.shape[:2]
            row = evaluate_pair(matcher, f0, f1, pair.H, shape, thresholds=(THRESHOLD_PX,))
            mma.append(row.mma[0])
            errors.append(row.corner_error)
            family.append(pair.strength)
        out = {
            "mma3": float(np.mean(mma)),
            "h3": float(np.mean(np.asarray(errors) <= THRESHOLD_PX)),
        }
        for name in dict.fromkeys(family):
            out[f"{name}/mma3"] = float(np.mean([m for m, f in zip(mma, family) if f == name]))
        return out

    def evaluate(self, model: Any, device: Any = None) -> float:
        """The MMA at 3 px (what the training engine records)."""
        return self.scores(model, device)["mma3"]
