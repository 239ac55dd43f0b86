"""Keypoint detection: DoG (OpenCV SIFT) by default, Harris-Laplace and Hessian as options.

Convention:
    Keypoints follow OpenCV's ``cv2.KeyPoint`` conventions, so they round-trip through OpenCV unchanged:

    - ``xy`` is ``(x, y)`` in pixels of the full-resolution image, pixel centres at integers, y pointing
      down. (OpenCV's SIFT reports keypoints of its up-sampled first octave at ``c / 2``, a quarter pixel
      from the exact ``c / 2 - 1 / 4``; the offset is kept, as in OpenCV.)
    - ``size`` is a *diameter* in pixels: twice the Gaussian scale sigma of a DoG blob.
    - ``angle`` is in degrees in ``[0, 360)``, measured *clockwise on screen* (from +x towards +y, y down).
      kornia's LAF orientation has the opposite sign: ``ori_kornia = -angle`` (see
      :mod:`lookalike.matching.patches`). Upright keypoints have angle 0.
    - ``response`` is the detector's strength; the keypoint budget keeps the strongest responses.
    - ``octave`` is OpenCV's packed octave/layer word (``0`` for non-SIFT detectors); OpenCV's SIFT
      descriptor uses it to pick the blurred layer, so keep it when handing keypoints back to OpenCV.
    - An image without structure (flat, or smaller than a few pixels) gives zero keypoints, not an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lookalike.core.check import check_option, check_positive
from lookalike.matching.laf import SIFT_EXTENT, keypoints_to_laf, laf_geometry

__all__ = [
    "DETECTORS",
    "Keypoints",
    "available_detectors",
    "check_detector_options",
    "detect_keypoints",
    "laf_to_keypoints",
]

log = logging.getLogger(__name__)

#: Detector names accepted by :func:`detect_keypoints`.
DETECTORS: tuple[str, ...] = ("dog", "harris-laplace", "hessian")

# OpenCV SIFT's own defaults; a lower contrast threshold gives more (weaker) keypoints to choose from.
_DOG_DEFAULTS: dict[str, Any] = {"contrast_threshold": 0.04, "edge_threshold": 10.0, "sigma": 1.6}
_ORIENTATION_EXTENT = 4.5


@dataclass(frozen=True)
class Keypoints:
    """Keypoints of one image (OpenCV conventions, see the module docstring).

    Attributes:
        xy: ``(N, 2)`` float32 pixel coordinates ``(x, y)``.
        size: ``(N,)`` float32 diameters in pixels.
        angle: ``(N,)`` float32 degrees, clockwise on screen, in ``[0, 360)``.
        response: ``(N,)`` float32 detector responses.
        octave: ``(N,)`` int32 OpenCV packed octave (0 when unknown).
        image_size: ``(H, W)`` of the image they were detected in.
        affine: ``(N, 2, 2)`` float32 affine shapes of unit determinant, or ``None`` (circular
            regions, the default). A keypoint's region is ``xy + size / 2 * affine @ R(angle) u`` for
            ``u`` in the unit disc: ``angle`` is measured in the shape-normalised frame. View synthesis
            (:mod:`lookalike.matching.views`) fills it; the patch sampler follows it.

    Example:
        >>> kps = Keypoints.from_arrays([[10.0, 20.0]], size=[4.0], image_size=(64, 48))
        >>> len(kps), kps.angle.tolist(), kps.image_size
        (1, [0.0], (64, 48))
    """

    xy: np.ndarray = field(repr=False)
    size: np.ndarray = field(repr=False)
    angle: np.ndarray = field(repr=False)
    response: np.ndarray = field(repr=False)
    octave: np.ndarray = field(repr=False)
    image_size: tuple[int, int] = (0, 0)
    affine: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def __repr__(self) -> str:
        return f"Keypoints(n={len(self)}, image_size={self.image_size})"

    @classmethod
    def from_arrays(
        cls,
        xy: Any,
        *,
        size: Any = None,
        angle: Any = None,
        response: Any = None,
        octave: Any = None,
        image_size: tuple[int, int] = (0, 0),
    ) -> Keypoints:
        """Build from array-likes; missing fields default to size 1, angle 0, response 0, octave 0."""
        xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
        n = xy.shape[0]

        def col(values: Any, default: float, dtype: Any) -> np.ndarray:
            if values is None:
                return np.full(n, default, dtype=dtype)
            out = np.asarray(values, dtype=dtype).reshape(-1)
            if out.shape[0] != n:
                from lookalike.core.errors import ShapeError

                raise ShapeError(f"keypoint field: expected {n} values, got {out.shape[0]}")
            return out

        return cls(
            xy=xy,
            size=col(size, 1.0, np.float32),
            angle=np.mod(col(angle, 0.0, np.float32), 360.0).astype(np.float32),
            response=col(response, 0.0, np.float32),
            octave=col(octave, 0, np.int32),
            image_size=(int(image_size[0]), int(image_size[1])),
        )

    @classmethod
    def empty(cls, image_size: tuple[int, int] = (0, 0)) -> Keypoints:
        """No keypoints."""
        return cls.from_arrays(np.zeros((0, 2)), image_size=image_size)

    @classmethod
    def from_cv(cls, keypoints: Any, image_size: tuple[int, int]) -> Keypoints:
        """From a sequence of ``cv2.KeyPoint``."""
        kps = list(keypoints)
        if not kps:
            return cls.empty(image_size)
        return cls.from_arrays(
            [k.pt for k in kps],
            size=[k.size for k in kps],
            angle=[max(k.angle, 0.0) for k in kps],  # OpenCV uses -1 for "no orientation"
            response=[k.response for k in kps],
            octave=[k.octave for k in kps],
            image_size=image_size,
        )

    def to_cv(self) -> list[Any]:
        """As ``cv2.KeyPoint`` objects whose ``class_id`` is their index here (to track survivors).

        ``cv2.KeyPoint`` has no affine shape: affine regions become circles of the same area."""
        import cv2

        return [
            cv2.KeyPoint(float(x), float(y), float(s), float(a), float(r), int(o), int(i))
            for i, ((x, y), s, a, r, o) in enumerate(
                zip(self.xy, self.size, self.angle, self.response, self.octave)
            )
        ]

    def subset(self, index: Any) -> Keypoints:
        """Keypoints selected by an index array or boolean mask (order kept)."""
        index = np.asarray(index)
        return Keypoints(
            xy=self.xy[index].reshape(-1, 2),
            size=self.size[index].reshape(-1),
            angle=self.angle[index].reshape(-1),
            response=self.response[index].reshape(-1),
            octave=self.octave[index].reshape(-1),
            image_size=self.image_size,
            affine=None if self.affine is None else self.affine[index].reshape(-1, 2, 2),
        )

    def shapes(self) -> np.ndarray:
        """``(N, 2, 2)`` float32 affine shapes: :attr:`affine`, or identities for circular regions."""
        if self.affine is not None:
            return self.affine.astype(np.float32, copy=False)
        return np.tile(np.eye(2, dtype=np.float32), (len(self), 1, 1))

    @classmethod
    def concat(cls, parts: list[Keypoints], image_size: tuple[int, int]) -> Keypoints:
        """All keypoints of ``parts`` in order; affine shapes kept (identity where a part has none)."""
        if not parts:
            return cls.empty(image_size)
        affine = None
        if any(p.affine is not None for p in parts):
            affine = np.concatenate([p.shapes() for p in parts])
        return cls(
            xy=np.concatenate([p.xy for p in parts]),
            size=np.concatenate([p.size for p in parts]),
            angle=np.concatenate([p.angle for p in parts]),
            response=np.concatenate([p.response for p in parts]),
            octave=np.concatenate([p.octave for p in parts]),
            image_size=(int(image_size[0]), int(image_size[1])),
            affine=affine,
        )

    def upright(self) -> Keypoints:
        """The same keypoints with angle 0, duplicates (same place and size) removed."""
        if len(self) == 0:
            return self
        key = np.concatenate([self.xy, self.size[:, None]], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        kept = self.subset(np.sort(first))
        return replace(kept, angle=np.zeros_like(kept.angle))

    def strongest(self, budget: int | None) -> Keypoints:
        """At most ``budget`` keypoints, by decreasing response (ties keep detection order)."""
        if budget is None or len(self) <= budget:
            order = np.argsort(-self.response, kind="stable")
        else:
            order = np.argsort(-self.response, kind="stable")[:budget]
        return self.subset(order)


def available_detectors() -> list[str]:
    """Detector names that work with the installed OpenCV/kornia.

    Example:
        >>> "dog" in available_detectors()
        True
    """
    names = ["dog", "hessian"]
    import cv2

    xf = getattr(cv2, "xfeatures2d", None)
    if xf is not None and hasattr(xf, "HarrisLaplaceFeatureDetector_create"):
        names.insert(1, "harris-laplace")
    return names


def _hessian_options() -> set[str]:
    import inspect

    import kornia.feature as KF

    params = inspect.signature(KF.ScaleSpaceDetector).parameters
    return {"mr_size", *params} - {"self", "num_features", "resp_module"}


def check_detector_options(method: str, options: dict[str, Any]) -> None:
    """Check detector options before any work (see :func:`detect_keypoints` for what each takes).

    Raises:
        OptionError: an unknown detector, or an option it does not take (the valid ones are listed).
            Harris-Laplace options go to OpenCV unchecked (OpenCV rejects them when detecting).

    Example:
        >>> check_detector_options("dog", {"edge_threshold": 5})
        >>> check_detector_options("dog", {"threshold": 5})
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: detector 'dog': unknown option(s) ['threshold']; valid options: ['contrast_threshold', 'edge_threshold', 'sigma']
    """
    from lookalike.core.errors import OptionError

    check_option(method, DETECTORS, "detector")
    if method == "dog":
        valid = set(_DOG_DEFAULTS)
    elif method == "hessian":
        valid = _hessian_options()
    else:
        return
    unknown = sorted(set(options) - valid)
    if unknown:
        raise OptionError(
            f"detector {method!r}: unknown option(s) {unknown}; valid options: {sorted(valid)}"
        )


def _detect_dog(gray: np.ndarray, options: dict[str, Any]) -> Keypoints:
    import cv2

    opts = {**_DOG_DEFAULTS, **options}
    sift = cv2.SIFT_create(
        nfeatures=0,
        contrastThreshold=float(opts["contrast_threshold"]),
        edgeThreshold=float(opts["edge_threshold"]),
        sigma=float(opts["sigma"]),
    )
    return Keypoints.from_cv(sift.detect(gray, None), gray.shape[:2])


def _detect_harris_laplace(gray: np.ndarray, options: dict[str, Any]) -> Keypoints:
    import cv2

    xf = getattr(cv2, "xfeatures2d", None)
    if xf is None or not hasattr(xf, "HarrisLaplaceFeatureDetector_create"):
        from lookalike.core.errors import OptionError

        raise OptionError(
            "detector 'harris-laplace' needs opencv-contrib (cv2.xfeatures2d); "
            f"available: {available_detectors()}"
        )
    detector = xf.HarrisLaplaceFeatureDetector_create(**options)
    return Keypoints.from_cv(detector.detect(gray), gray.shape[:2])


def _detect_hessian(gray: np.ndarray, max_keypoints: int, options: dict[str, Any]) -> Keypoints:
    """kornia's scale-space Hessian blob detector; its LAF scale is ``mr_size`` sigmas."""
    import kornia.feature as KF
    import torch

    mr_size = float(options.pop("mr_size", 6.0))
    detector = KF.ScaleSpaceDetector(
        num_features=max_keypoints, resp_module=KF.BlobHessian(), mr_size=mr_size, **options
    )
    image = torch.from_numpy(gray).float().div(255.0)[None, None]
    with torch.no_grad():
        lafs, responses = detector(image)
    scale = KF.get_laf_scale(lafs).reshape(-1)
    filled = scale > 1e-6  # unfilled slots hold a zero LAF
    centers = KF.get_laf_center(lafs).reshape(-1, 2)[filled]
    return Keypoints.from_arrays(
        centers.numpy(),
        size=(2.0 * scale[filled] / mr_size).numpy(),  # size = 2 sigma, as OpenCV
        response=responses.reshape(-1)[filled].numpy(),
        image_size=gray.shape[:2],
    )


def laf_to_keypoints(
    lafs: Any,
    *,
    extent: float = SIFT_EXTENT,
    image_size: tuple[int, int] = (0, 0),
    response: Any = None,
) -> Keypoints:
    """Inverse of :func:`~lookalike.matching.laf.keypoints_to_laf` for similarity LAFs.

    Args:
        lafs: ``(1, N, 2, 3)`` or ``(N, 2, 3)``.
        extent: as in :func:`~lookalike.matching.laf.keypoints_to_laf`.
        image_size: ``(H, W)`` recorded in the keypoints.
        response: optional ``(N,)`` responses.

    Returns:
        :class:`Keypoints` with ``size = 2 sqrt|det A| / extent`` and ``angle = -atan2(a12, a11)`` in
        ``[0, 360)`` (:func:`~lookalike.matching.laf.laf_geometry`).
    """
    xy, size, angle = laf_geometry(lafs, extent=extent)
    return Keypoints.from_arrays(
        xy,
        size=size,
        angle=angle,
        response=None if response is None else np.asarray(response).reshape(-1),
        image_size=image_size,
    )


def _orient(gray: np.ndarray, kps: Keypoints) -> Keypoints:
    """Dominant gradient orientation (kornia ``LAFOrienter``) for detectors that give none.

    Each keypoint may get one orientation only (OpenCV's SIFT adds secondary peaks as extra keypoints).
    """
    import kornia.feature as KF
    import torch

    if len(kps) == 0:
        return kps
    image = torch.from_numpy(gray).float().div(255.0)[None, None]
    # LAFOrienter weights its patch with a Gaussian of sigma = half-width / 3; a half-width of
    # 4.5 sigma gives SIFT's orientation window (Gaussian of 1.5 sigma).
    lafs = keypoints_to_laf(kps, extent=_ORIENTATION_EXTENT)
    with torch.no_grad():
        oriented = KF.LAFOrienter(patch_size=32)(lafs, image)
    angle = laf_to_keypoints(oriented, extent=_ORIENTATION_EXTENT).angle
    return replace(kps, angle=angle)


def detect_keypoints(
    image: Any,
    *,
    method: str = "dog",
    max_keypoints: int | None = 2048,
    upright: bool = False,
    **options: Any,
) -> Keypoints:
    """Detect keypoints with scale and orientation.

    Args:
        image: a path, an array or a tensor (see :func:`lookalike.data.images.load_image`); colour is
            converted to luminance.
        method: ``"dog"`` (OpenCV SIFT's difference of Gaussians, the default), ``"harris-laplace"``
            (``cv2.xfeatures2d``, when installed) or ``"hessian"`` (kornia's scale-space Hessian).
            Harris-Laplace and Hessian have no orientation of their own: they get the dominant
            gradient orientation unless ``upright``.
        max_keypoints: keypoint budget (e.g. 2048 or 8000): the strongest responses are kept.
            ``None`` keeps all.
        upright: set every angle to 0 (and drop DoG's extra orientations of the same blob).
        **options: detector options: for DoG ``contrast_threshold`` (0.04), ``edge_threshold`` (10),
            ``sigma`` (1.6); for Harris-Laplace the ``HarrisLaplaceFeatureDetector_create`` arguments;
            for Hessian the ``kornia.feature.ScaleSpaceDetector`` arguments.

    Returns:
        :class:`Keypoints`, strongest first. Zero keypoints for a flat or tiny image.

    Raises:
        OptionError: unknown method or option (the valid ones are listed), or a budget that is not a
            positive integer.
        ImageError, DataNotFoundError: the image cannot be read.

    Example:
        >>> import numpy as np
        >>> image = np.zeros((64, 64), dtype=np.uint8)
        >>> image[20:40, 20:40] = 255
        >>> kps = detect_keypoints(image, max_keypoints=10)
        >>> 0 < len(kps) <= 10
        True
        >>> len(detect_keypoints(np.zeros((1, 1), dtype=np.uint8)))
        0
    """
    from lookalike.data.images import load_image

    check_detector_options(method, options)
    if max_keypoints is not None:
        check_positive(max_keypoints, "max_keypoints")
        max_keypoints = int(max_keypoints)
    gray = load_image(image, gray=True)
    h, w = gray.shape
    if min(h, w) < 8 or int(gray.max()) == int(gray.min()):
        return Keypoints.empty((h, w))
    if method == "dog":
        kps = _detect_dog(gray, dict(options))
        if upright:
            kps = kps.upright()
        return kps.strongest(max_keypoints)
    if method == "harris-laplace":
        kps = _detect_harris_laplace(gray, dict(options))
    else:
        kps = _detect_hessian(gray, max_keypoints or 8000, dict(options))
    kps = kps.strongest(max_keypoints)
    return kps if upright else _orient(gray, kps)
