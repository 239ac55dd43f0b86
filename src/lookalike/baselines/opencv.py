"""OpenCV's descriptors as registered baselines: ``opencv-{sift,rootsift,vgg,boostdesc,teblid,orb}``.

One object, two modes. *Patch mode* (``forward``) describes ``(B, 1, P, P)`` patches, for the patch
benchmarks; *keypoint mode* (:meth:`OpenCVDescriptor.describe_keypoints`) describes keypoints in a
whole image, for the matcher.

Convention:
    - Patch mode: each patch is an image of its own (8-bit: ``round(255 x)``, clipped to [0, 255]) with
      one upright keypoint (angle 0) at its centre ``((P - 1) / 2, (P - 1) / 2)``; OpenCV's batched
      ``compute(images, keypoints)`` runs one call per chunk. A patch in a mosaic would let the
      sampling overhang read the neighbouring tiles, hence one image per patch.
    - SIFT keypoint size (HPatches benchmark, ``extract_opencv_sift.py``): OpenCV samples a disc of
      radius ``3 * (size / 2) * sqrt(2) * (d + 1) / 2 = 5.303 * size`` (``d = 4`` cells per side); the
      size ``P / 5.303`` (:func:`sift_keypoint_size`) makes the disc's radius ``P``. OpenCV leaves the
      overhanging pixels out.
    - VGG, BoostDesc and TEBLID resample a square of side ``scale_factor * size``. The rule (OpenCV's
      documentation of ``VGG_create``, ``BoostDesc_create`` and ``TEBLID_create``): the scale factor
      depends on the detector that made the keypoints, 6.75 for SIFT keypoints, 6.25 for KAZE/SURF
      (the factories' default), 5.00 for AKAZE/MSD/AGAST/FAST/BRISK, and 0.75 (VGG, BoostDesc) or
      1.00 (TEBLID) for ORB (:data:`SCALE_FACTORS`). Our detectors map to those families by
      :data:`DETECTOR_FAMILY`: ``dog`` is OpenCV's SIFT detector; ``hessian`` a Hessian-determinant
      blob detector like SURF and KAZE (sizes ``2 sigma`` as OpenCV's); ``harris-laplace`` has no
      documented value and gets SIFT's (a Laplacian-scale detector reporting ``2 sigma`` sizes like
      SIFT). Keypoint mode uses the factor of the pipeline's detector
      (:meth:`OpenCVDescriptor.use_detector`, called by the matcher); a ``scale_factor`` given by
      the caller always wins. Patch mode: patches are cut around DoG keypoints, so SIFT's 6.75, and
      the size ``P / 6.75`` makes the sampled square the patch itself (every descriptor sees the same
      patch content, as in the HPatches benchmark).
    - ORB compares pixels of a 31 px window at a pyramid level ``L`` (scale ``1.2 ** L``). In patch mode
      ``L = floor(log(P / 31) / log(1.2))`` (at least 0, at most 7): the largest window that fits in the
      patch (``L = 4``, a 64.3 px window, for ``P = 65``). Patches under 31 px are padded by reflection
      (OpenCV's pyramid border). In keypoint mode ``L`` is the level whose window is closest to the
      keypoint's SIFT region (``7.5 * size`` pixels wide).
    - Patch mode output: ``(B, D)`` float32 on the input's device. Float descriptors (SIFT, RootSIFT,
      VGG) are L2-normalised; binary ones (BoostDesc, TEBLID, ORB) come as their unpacked bits in
      ``{0, 1}``, so the squared Euclidean distance is the Hamming distance (``metric="hamming"``). A flat
      patch gives an all-zero row; an empty batch ``(0, D)``; NaN or inf raise ValueRangeError.
    - Keypoint mode output: :class:`~lookalike.matching.describe.Features`: float rows L2-normalised,
      binary rows packed as uint8 (``D / 8`` bytes). OpenCV drops keypoints it cannot describe (too close
      to the border): the features hold the described keypoints only, in their input order.
    - ``patch_size`` (65, HPatches' side) is the side :func:`lookalike.descriptors.describe.describe_patches`
      resizes to; ``forward`` itself takes any square side, the rules above scale with ``P``.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lookalike._registry import register
from lookalike.baselines._common import (
    DescriptorUnavailableError,
    check_patches,
    flat_rows,
    rootsift,
)
from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import SIFT_EXTENT, InputSpec

if TYPE_CHECKING:
    from lookalike.matching.describe import Features
    from lookalike.matching.keypoints import Keypoints

__all__ = [
    "DETECTOR_FAMILY",
    "OPENCV_DESCRIPTORS",
    "SCALE_FACTORS",
    "OpenCVDescriptor",
    "available_opencv_descriptors",
    "scale_factor_for",
    "sift_keypoint_size",
]

log = logging.getLogger(__name__)

_SIFT_CELLS = 4  # OpenCV SIFT: d x d spatial cells
_SIFT_CELL_SCALE = 3.0  # SIFT_DESCR_SCL_FCTR: a cell is 3 * (size / 2) pixels wide
_SIFT_RADIUS_PER_SIZE = _SIFT_CELL_SCALE / 2 * math.sqrt(2) * (_SIFT_CELLS + 1) / 2  # 5.303

#: OpenCV's documented ``scale_factor`` of VGG, BoostDesc and TEBLID per keypoint family (the
#: ``scale_factor`` parameter documentation of ``cv::xfeatures2d::VGG::create``, ``BoostDesc::create``
#: and ``TEBLID::create``).
_DOCUMENTED = {"sift": 6.75, "surf": 6.25, "kaze": 6.25, "akaze": 5.0, "brisk": 5.0}
SCALE_FACTORS: dict[str, dict[str, float]] = {
    "vgg": {**_DOCUMENTED, "orb": 0.75},
    "boostdesc": {**_DOCUMENTED, "orb": 0.75},
    "teblid": {**_DOCUMENTED, "orb": 1.0},
}
#: The keypoint family of each detector of :mod:`lookalike.matching.keypoints` (module Convention).
DETECTOR_FAMILY: dict[str, str] = {"dog": "sift", "hessian": "surf", "harris-laplace": "sift"}

#: OpenCV baselines by kind: (module in cv2, factory, default kwargs, patch extent ``P / size``).
OPENCV_DESCRIPTORS: dict[str, tuple[str, str, dict[str, Any], float]] = {
    "sift": ("", "SIFT_create", {}, _SIFT_RADIUS_PER_SIZE),
    "rootsift": ("", "SIFT_create", {}, _SIFT_RADIUS_PER_SIZE),
    "vgg": ("xfeatures2d", "VGG_create", {}, SCALE_FACTORS["vgg"]["sift"]),
    "boostdesc": ("xfeatures2d", "BoostDesc_create", {}, SCALE_FACTORS["boostdesc"]["sift"]),
    "teblid": ("xfeatures2d", "TEBLID_create", {}, SCALE_FACTORS["teblid"]["sift"]),
    "orb": ("", "ORB_create", {"nlevels": 8, "scaleFactor": 1.2, "patchSize": 31}, SIFT_EXTENT),
}


def scale_factor_for(kind: str, detector: str) -> float:
    """OpenCV's documented ``scale_factor`` of ``kind`` for keypoints of ``detector`` (Convention).

    Args:
        kind: ``"vgg"``, ``"boostdesc"`` or ``"teblid"``.
        detector: one of our detectors (``"dog"``, ``"hessian"``, ``"harris-laplace"``) or a keypoint
            family of OpenCV's table (``"sift"``, ``"surf"``, ``"kaze"``, ``"akaze"``, ``"brisk"``,
            ``"orb"``).

    Raises:
        OptionError: ``kind`` takes no scale factor, or ``detector`` is unknown.

    Example:
        >>> scale_factor_for("vgg", "dog"), scale_factor_for("teblid", "hessian")
        (6.75, 6.25)
        >>> scale_factor_for("boostdesc", "orb"), scale_factor_for("teblid", "orb")
        (0.75, 1.0)
    """
    from lookalike.core.check import check_option

    check_option(kind, list(SCALE_FACTORS), "kind")
    family = DETECTOR_FAMILY.get(detector, detector)
    check_option(family, [*DETECTOR_FAMILY, *SCALE_FACTORS[kind]], "detector")
    return SCALE_FACTORS[kind][family]


def sift_keypoint_size(patch_size: int) -> float:
    """OpenCV keypoint size whose SIFT sampling disc has radius ``patch_size`` (HPatches benchmark).

    Example:
        >>> round(sift_keypoint_size(65), 3)
        12.257
    """
    check_positive(patch_size, "patch_size")
    return patch_size / _SIFT_RADIUS_PER_SIZE


def _owner(kind: str) -> Any:
    import cv2

    module = OPENCV_DESCRIPTORS[kind][0]
    return getattr(cv2, module, None) if module else cv2


def available_opencv_descriptors() -> dict[str, bool]:
    """Which OpenCV baselines the installed OpenCV provides (kind -> available).

    Example:
        >>> available_opencv_descriptors()["sift"]
        True
    """
    out = {}
    for kind, (_, factory, _, _) in OPENCV_DESCRIPTORS.items():
        owner = _owner(kind)
        out[kind] = owner is not None and hasattr(owner, factory)
    return out


class OpenCVDescriptor(nn.Module):
    """An OpenCV descriptor in patch mode (``forward``) and keypoint mode (see the module Convention).

    Args:
        kind: a key of :data:`OPENCV_DESCRIPTORS`.
        patch_size: the nominal patch side (what ``describe_patches`` resizes to).
        chunk_size: patches per OpenCV call in patch mode.
        detector: the detector whose keypoints keypoint mode describes (``"dog"`` default); sets the
            documented ``scale_factor`` of VGG, BoostDesc and TEBLID (:func:`scale_factor_for`).
        **options: keyword arguments of the OpenCV factory (override the defaults, ``scale_factor``
            included).

    Raises:
        OptionError: unknown kind, or options the OpenCV factory rejects.
        DescriptorUnavailableError: the installed OpenCV lacks this descriptor.

    Example:
        >>> import torch
        >>> sift = OpenCVDescriptor("sift")
        >>> sift(torch.rand(3, 1, 65, 65)).shape, sift.metric
        (torch.Size([3, 128]), 'l2')
    """

    needs_weights = False
    differentiable = False

    def __init__(
        self,
        kind: str,
        *,
        patch_size: int = 65,
        chunk_size: int = 1024,
        detector: str = "dog",
        **options: Any,
    ) -> None:
        import cv2

        super().__init__()
        if kind not in OPENCV_DESCRIPTORS:
            raise OptionError(
                f"unknown OpenCV descriptor {kind!r}; expected one of {sorted(OPENCV_DESCRIPTORS)}"
            )
        module, factory, defaults, extent = OPENCV_DESCRIPTORS[kind]
        if not available_opencv_descriptors()[kind]:
            raise DescriptorUnavailableError(
                f"opencv-{kind}: this OpenCV ({cv2.__version__}) has no "
                f"cv2.{module + '.' if module else ''}{factory}"
            )
        check_positive(patch_size, "patch_size")
        check_positive(chunk_size, "chunk_size")
        self.kind, self.name = kind, f"opencv-{kind}"
        self.patch_size, self.chunk_size = int(patch_size), int(chunk_size)
        self.input_spec = InputSpec(
            channels=1, size=self.patch_size, normalization="quantised to 8 bits, round(255 x)"
        )
        self.options = {**defaults, **options}
        self._given = dict(options)
        self.detector = "dog"
        self._build(detector)
        # Patch mode: patches are cut around DoG keypoints (module Convention).
        self._patch_extractor = self._make(self._patch_options())
        self.binary = self.extractor.descriptorType() == cv2.CV_8U
        self.metric = "hamming" if self.binary else "l2"
        width = int(self.extractor.descriptorSize())
        self.dim = 8 * width if self.binary else width
        # patch half-width in units of size / 2: the sampled square is the patch (module Convention)
        given = self._given.get("scale_factor") if kind in SCALE_FACTORS else None
        self.patch_extent = float(given if given is not None else extent)

    def extra_repr(self) -> str:
        return f"{self.kind!r}, dim={self.dim}, metric={self.metric!r}"

    def _make(self, options: dict[str, Any]) -> Any:
        import cv2

        factory = OPENCV_DESCRIPTORS[self.kind][1]
        try:
            return getattr(_owner(self.kind), factory)(**options)
        except (cv2.error, TypeError) as exc:
            raise OptionError(f"{self.name}: bad OpenCV options {self._given}: {exc}") from exc

    def _patch_options(self) -> dict[str, Any]:
        if self.kind == "orb":  # ORB's border filter would drop the centre of small patches
            return {**self.options, "edgeThreshold": 0}
        if self.kind in SCALE_FACTORS and "scale_factor" not in self._given:
            return {**self.options, "scale_factor": scale_factor_for(self.kind, "dog")}
        return dict(self.options)

    def _build(self, detector: str) -> None:
        """The keypoint-mode extractor for ``detector`` (the documented scale factor, module Convention)."""
        from lookalike.core.check import check_option

        check_option(detector, list(DETECTOR_FAMILY), "detector")
        if self.kind in SCALE_FACTORS and "scale_factor" not in self._given:
            self.options["scale_factor"] = scale_factor_for(self.kind, detector)
        self.extractor = self._make(self.options)
        self.detector = detector

    def use_detector(self, detector: str) -> None:
        """Describe keypoints of ``detector`` from now on (VGG/BoostDesc/TEBLID: its scale factor).

        A ``scale_factor`` given to the constructor is kept. Patch mode is not affected.

        Example:
            >>> vgg = OpenCVDescriptor("vgg")
            >>> vgg.use_detector("hessian")
            >>> vgg.options["scale_factor"], round(vgg.extractor.getScaleFactor(), 2)
            (6.25, 6.25)
        """
        if detector != self.detector:
            self._build(detector)

    # ------------------------------------------------------------------ patch mode
    def keypoint_size(self, patch_size: int) -> float:
        """The keypoint size used on ``patch_size`` patches (module Convention)."""
        check_positive(patch_size, "patch_size")
        return float(patch_size) / self.patch_extent

    def _orb_level(self, patch_size: int) -> int:
        window, scale = self.options["patchSize"], self.options["scaleFactor"]
        level = math.floor(math.log(max(patch_size / window, 1.0)) / math.log(scale) + 1e-9)
        return int(min(max(level, 0), self.options["nlevels"] - 1))

    def _patch_keypoint(self, patch_size: int) -> Any:
        import cv2

        centre, size = (patch_size - 1) / 2.0, self.keypoint_size(patch_size)
        if self.kind != "orb":
            return cv2.KeyPoint(centre, centre, size, 0.0)
        level = self._orb_level(patch_size)
        window = self.options["patchSize"] * self.options["scaleFactor"] ** level
        return cv2.KeyPoint(centre, centre, float(window), 0.0, 0.0, level, 0)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Describe ``(B, 1, P, P)`` patches in [0, 1]: ``(B, D)`` float32 (module Convention).

        Raises:
            ShapeError: not ``(B, 1, P, P)``.
            DTypeError: not floating point.
            ValueRangeError: NaN or infinite values.
        """
        check_patches(patches)
        side = int(patches.shape[-1])
        gray = (patches[:, 0].detach().float().cpu() * 255.0).round().clamp(0, 255)
        gray = gray.to(torch.uint8).numpy()
        rows: list[np.ndarray | None] = []
        keypoint = self._patch_keypoint(side)
        for start in range(0, len(gray), self.chunk_size):
            chunk = [np.ascontiguousarray(p) for p in gray[start : start + self.chunk_size]]
            kept, desc = self._patch_extractor.compute(chunk, [[keypoint] for _ in chunk])
            rows.extend(
                d[0] if k and d is not None and len(d) else None for k, d in zip(kept, desc)
            )
        out = torch.from_numpy(self._finish(rows))
        out[flat_rows(patches).cpu()] = 0.0
        return out.to(patches.device)

    def _finish(self, rows: list[np.ndarray | None]) -> np.ndarray:
        dropped = sum(r is None for r in rows)
        if dropped:  # not seen with the keypoints above; kept explicit rather than misaligned
            log.warning(
                "%s: OpenCV dropped %d of %d patches (zero rows)", self.name, dropped, len(rows)
            )
        width = self.dim // 8 if self.binary else self.dim
        dtype = np.uint8 if self.binary else np.float32
        desc = np.zeros((len(rows), width), dtype)
        for i, row in enumerate(rows):
            if row is not None:
                desc[i] = row.reshape(-1)
        if self.binary:
            return np.unpackbits(desc, axis=1).astype(np.float32)
        return _normalise(desc, self.kind == "rootsift")

    # ------------------------------------------------------------------ keypoint mode
    def _cv_keypoints(self, keypoints: Keypoints) -> list[Any]:
        kps = keypoints.to_cv()
        if self.kind == "orb":
            # the level whose 31 px window is closest to the keypoint's SIFT region
            window, scale = self.options["patchSize"], self.options["scaleFactor"]
            for kp in kps:
                level = round(math.log(max(SIFT_EXTENT * kp.size, 1e-6) / window) / math.log(scale))
                kp.octave = int(np.clip(level, 0, self.options["nlevels"] - 1))
                kp.size = float(window * scale**kp.octave)
        return kps

    def describe_keypoints(self, image: Any, keypoints: Keypoints) -> Features:
        """Describe ``keypoints`` of ``image``; those OpenCV drops are left out (module Convention).

        Args:
            image: anything :func:`lookalike.data.images.load_image` reads (converted to gray).
            keypoints: :class:`~lookalike.matching.keypoints.Keypoints` in pixels of ``image``.

        Example:
            >>> import numpy as np
            >>> from lookalike.matching.keypoints import Keypoints
            >>> image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
            >>> kps = Keypoints.from_arrays([[32.0, 32.0]], size=[4.0], image_size=(64, 64))
            >>> OpenCVDescriptor("teblid").describe_keypoints(image, kps).descriptors.shape
            torch.Size([1, 32])
        """
        from lookalike.data.images import load_image
        from lookalike.matching.describe import Features

        gray = load_image(image, gray=True)
        width = self.dim // 8 if self.binary else self.dim
        empty = np.zeros((0, width), np.uint8 if self.binary else np.float32)
        if len(keypoints) == 0:
            return Features(keypoints, torch.from_numpy(empty), self.metric)
        kept, desc = self.extractor.compute(gray, self._cv_keypoints(keypoints))
        if desc is None or len(kept) == 0:
            none = keypoints.subset(np.zeros(0, dtype=np.int64))
            return Features(none, torch.from_numpy(empty), self.metric)
        index = np.array([kp.class_id for kp in kept], dtype=np.int64)
        order = np.argsort(index, kind="stable")
        index, desc = index[order], desc[order]
        if not self.binary:
            desc = _normalise(desc, self.kind == "rootsift")
        rows = torch.from_numpy(np.ascontiguousarray(desc))
        return Features(keypoints.subset(index), rows, self.metric)


def _normalise(desc: np.ndarray, root: bool) -> np.ndarray:
    """Float rows: RootSIFT if asked, then unit L2 norm (an all-zero row stays zero)."""
    desc = desc.astype(np.float32)
    if root:
        desc = rootsift(desc)
    return desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)


@register("descriptor", "opencv-sift")
def opencv_sift(**options: Any) -> OpenCVDescriptor:
    """OpenCV's SIFT descriptor (128-d float, L2)."""
    return OpenCVDescriptor("sift", **options)


@register("descriptor", "opencv-rootsift")
def opencv_rootsift(**options: Any) -> OpenCVDescriptor:
    """OpenCV's SIFT descriptor, then RootSIFT (L1-normalise, square root; 128-d float, L2)."""
    return OpenCVDescriptor("rootsift", **options)


@register("descriptor", "opencv-vgg")
def opencv_vgg(**options: Any) -> OpenCVDescriptor:
    """``cv2.xfeatures2d.VGG`` (120-d float, L2)."""
    return OpenCVDescriptor("vgg", **options)


@register("descriptor", "opencv-boostdesc")
def opencv_boostdesc(**options: Any) -> OpenCVDescriptor:
    """``cv2.xfeatures2d.BoostDesc`` (BinBoost, 256 bits, Hamming)."""
    return OpenCVDescriptor("boostdesc", **options)


@register("descriptor", "opencv-teblid")
def opencv_teblid(**options: Any) -> OpenCVDescriptor:
    """``cv2.xfeatures2d.TEBLID`` (256 bits, Hamming)."""
    return OpenCVDescriptor("teblid", **options)


@register("descriptor", "opencv-orb")
def opencv_orb(**options: Any) -> OpenCVDescriptor:
    """``cv2.ORB`` (rBRIEF, 256 bits, Hamming) at the pyramid level of the keypoint or patch size."""
    return OpenCVDescriptor("orb", **options)


for _factory in (
    opencv_sift,
    opencv_rootsift,
    opencv_vgg,
    opencv_boostdesc,
    opencv_teblid,
    opencv_orb,
):
    _factory.needs_weights = False  # read by lookalike.cli._common.require_trained
