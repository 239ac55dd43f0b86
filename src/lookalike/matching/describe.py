"""Describe keypoints with any registered patch descriptor or an OpenCV / kornia baseline.

A *describer* turns ``(gray image, keypoints)`` into :class:`Features`. :func:`create_describer`
builds one from a spec string:

==========================  ================================================================
spec                        descriptor
==========================  ================================================================
``"sift"``, ``"hardnet:bundled"``, ...
                            any registered ``descriptor`` (``"name:weights"``), on patches cut
                            from our scale pyramid (:mod:`lookalike.matching.patches`)
``"kornia-sift"``           kornia's ``SIFTDescriptor`` (41 px, plain SIFT) on the same patches
``"kornia-rootsift"``       the same with RootSIFT normalisation
``"opencv-sift"``           OpenCV's SIFT descriptor on the same keypoints
``"opencv-rootsift"``       OpenCV's SIFT, then RootSIFT (L1-normalise, square root)
``"opencv-vgg"``            ``cv2.xfeatures2d.VGG`` (120-d float)
``"opencv-boostdesc"``      ``cv2.xfeatures2d.BoostDesc`` (BinBoost, 256 bits)
``"opencv-teblid"``         ``cv2.xfeatures2d.TEBLID`` (256 bits)
``"opencv-orb"``            ``cv2.ORB`` (256 bits), at the ORB pyramid level of the keypoint size
==========================  ================================================================

Convention:
    - Float descriptors come out L2-normalised (``metric="l2"``); binary ones as uint8 rows of packed
      bits (``metric="hamming"``), ready for :func:`~lookalike.matching.matchers.match_descriptors`.
    - OpenCV may drop keypoints it cannot describe (too close to the border): the returned
      :class:`Features` hold only the described keypoints, in their original order.
    - Patch descriptors see ``patch_size x patch_size`` patches (the model's ``patch_size``), gray in
      [0, 1], whose half-width is ``extent * size / 2`` pixels. ``extent`` defaults to the model's
      ``patch_extent`` attribute if it has one; else :data:`~lookalike.matching.patches.SIFT_EXTENT`
      (7.5, OpenCV's SIFT region) for SIFT-like descriptors (a name containing ``"sift"``) and
      :data:`NETWORK_EXTENT` (6, the "6 sigma" magnification HardNet-style networks are trained
      with, and that of :func:`lookalike.data.synth.detect_lafs`) for the others. The OpenCV
      baselines use their documented scale factor for SIFT keypoints (6.75 for VGG, BoostDesc and
      TEBLID).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lookalike.matching.keypoints import Keypoints

__all__ = [
    "NETWORK_EXTENT",
    "OPENCV_DESCRIPTORS",
    "Features",
    "OpenCVDescriber",
    "PatchDescriber",
    "available_opencv_descriptors",
    "create_describer",
    "default_extent",
    "describe_patches",
]

log = logging.getLogger(__name__)

#: OpenCV baselines by name: (module path in cv2, factory, kwargs for SIFT keypoints).
OPENCV_DESCRIPTORS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sift": ("", "SIFT_create", {}),
    "rootsift": ("", "SIFT_create", {}),
    "vgg": ("xfeatures2d", "VGG_create", {"scale_factor": 6.75}),
    "boostdesc": ("xfeatures2d", "BoostDesc_create", {"scale_factor": 6.75}),
    "teblid": ("xfeatures2d", "TEBLID_create", {"scale_factor": 6.75}),
    "orb": ("", "ORB_create", {}),
}
_ORB_LEVELS, _ORB_SCALE, _ORB_PATCH = 8, 1.2, 31
#: Default patch half-width (in units of ``size / 2``) for learned patch descriptors.
NETWORK_EXTENT: float = 6.0


def default_extent(model: Any, name: str = "") -> float:
    """The patch extent a descriptor expects (see the module Convention)."""
    from lookalike.matching.patches import SIFT_EXTENT

    extent = getattr(model, "patch_extent", None)
    if extent is not None:
        return float(extent)
    label = f"{name} {type(model).__name__}".lower()
    return SIFT_EXTENT if "sift" in label else NETWORK_EXTENT


@dataclass(frozen=True)
class Features:
    """Described keypoints of one image.

    Attributes:
        keypoints: the described keypoints (OpenCV may have dropped some).
        descriptors: ``(N, D)`` float32 L2-normalised rows, or ``(N, B)`` uint8 packed bits.
        metric: ``"l2"`` or ``"hamming"``.
    """

    keypoints: Keypoints
    descriptors: torch.Tensor
    metric: str = "l2"

    def __len__(self) -> int:
        return len(self.keypoints)


def _model_device(model: nn.Module) -> torch.device:
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def describe_patches(
    model: nn.Module, patches: torch.Tensor, *, batch_size: int = 512
) -> torch.Tensor:
    """Run a patch descriptor over ``(N, 1, P, P)`` patches in batches, without gradients.

    Returns:
        ``(N, D)`` float32 rows on the model's device (L2-normalised again for safety).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
        >>> describe_patches(model, torch.rand(5, 1, 4, 4), batch_size=2).shape
        torch.Size([5, 8])
    """
    import torch

    check_positive(batch_size, "batch_size")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, patches.shape[0], batch_size):
                batch = patches[start : start + batch_size].to(device=device, dtype=torch.float32)
                outputs.append(model(batch).float())
            if not outputs:  # no patch: one blank patch tells the width
                blank = torch.zeros(1, *patches.shape[1:], device=device)
                return model(blank).float()[:0]
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(torch.cat(outputs), dim=1)


class PatchDescriber:
    """A patch descriptor network applied to pyramid patches around keypoints.

    Args:
        model: an ``nn.Module`` mapping ``(B, 1, P, P)`` in [0, 1] to ``(B, D)``, with ``patch_size``.
        name: label for reports.
        extent: patch half-width in units of ``size / 2`` (see the module Convention).
        batch_size: patches per forward pass.
        level_bias: pyramid level bias of :func:`~lookalike.matching.patches.extract_patches`.
    """

    metric = "l2"

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str | None = None,
        extent: float | None = None,
        batch_size: int = 1024,
        level_bias: float = 0.0,
    ) -> None:
        self.model = model.eval()
        self.name = name or type(model).__name__.lower()
        self.patch_size = int(getattr(model, "patch_size", 32))
        self.extent = float(extent if extent is not None else default_extent(model, self.name))
        check_positive(self.extent, "extent")
        check_positive(batch_size, "batch_size")
        self.batch_size = int(batch_size)
        self.level_bias = float(level_bias)

    def __repr__(self) -> str:
        return f"PatchDescriber({self.name!r}, patch_size={self.patch_size}, extent={self.extent})"

    def patches(self, image: Any, keypoints: Keypoints) -> torch.Tensor:
        """``(N, 1, P, P)`` patches of ``keypoints`` in ``image`` (on the model's device)."""
        from lookalike.matching.patches import extract_patches, image_to_tensor, keypoints_to_laf

        device = _model_device(self.model)
        tensor = image_to_tensor(image, device=device)
        lafs = keypoints_to_laf(keypoints, extent=self.extent, device=device)
        return extract_patches(tensor, lafs, self.patch_size, level_bias=self.level_bias)

    def __call__(self, image: Any, keypoints: Keypoints) -> Features:
        """Describe every keypoint (none is dropped)."""
        patches = self.patches(image, keypoints)
        return Features(
            keypoints, describe_patches(self.model, patches, batch_size=self.batch_size)
        )


def available_opencv_descriptors() -> dict[str, bool]:
    """Which OpenCV baselines the installed OpenCV provides (name -> available).

    Example:
        >>> available_opencv_descriptors()["sift"]
        True
    """
    import cv2

    out = {}
    for name, (module, factory, _) in OPENCV_DESCRIPTORS.items():
        owner = getattr(cv2, module, None) if module else cv2
        out[name] = owner is not None and hasattr(owner, factory)
    return out


class OpenCVDescriber:
    """An OpenCV descriptor computed on given keypoints (see the module table).

    Args:
        kind: a key of :data:`OPENCV_DESCRIPTORS`.
        **options: keyword arguments for the OpenCV factory (override the defaults).

    Raises:
        OptionError: unknown kind, or not provided by the installed OpenCV.
    """

    def __init__(self, kind: str, **options: Any) -> None:
        import cv2

        if kind not in OPENCV_DESCRIPTORS:
            raise OptionError(
                f"unknown OpenCV descriptor {kind!r}; expected one of {sorted(OPENCV_DESCRIPTORS)}"
            )
        module, factory, defaults = OPENCV_DESCRIPTORS[kind]
        owner = getattr(cv2, module, None) if module else cv2
        if owner is None or not hasattr(owner, factory):
            have = [k for k, ok in available_opencv_descriptors().items() if ok]
            raise OptionError(
                f"OpenCV descriptor {kind!r} needs cv2.{module + '.' if module else ''}{factory}, "
                f"which this OpenCV ({cv2.__version__}) lacks; available: {have}"
            )
        kwargs = {**defaults, **options}
        if kind == "orb":
            kwargs = {
                "nlevels": _ORB_LEVELS,
                "scaleFactor": _ORB_SCALE,
                "patchSize": _ORB_PATCH,
                **kwargs,
            }
        self.kind = kind
        self.name = f"opencv-{kind}"
        self.extractor = getattr(owner, factory)(**kwargs)
        self.metric = "l2" if kind in ("sift", "rootsift", "vgg") else "hamming"

    def __repr__(self) -> str:
        return f"OpenCVDescriber({self.kind!r})"

    def _cv_keypoints(self, keypoints: Keypoints) -> list[Any]:
        kps = keypoints.to_cv()
        if self.kind == "orb":
            # ORB describes a 31 px patch at pyramid level ``octave`` (scale 1.2 ** octave): pick the
            # level whose patch is closest to the SIFT region of the keypoint.
            from lookalike.matching.patches import SIFT_EXTENT

            for kp in kps:
                region = SIFT_EXTENT * kp.size
                level = round(np.log(max(region, 1e-6) / _ORB_PATCH) / np.log(_ORB_SCALE))
                kp.octave = int(np.clip(level, 0, _ORB_LEVELS - 1))
                kp.size = float(_ORB_PATCH * _ORB_SCALE**kp.octave)
        return kps

    def __call__(self, image: Any, keypoints: Keypoints) -> Features:
        """Describe ``keypoints``; those OpenCV drops are left out of the result."""
        import torch

        from lookalike.data.images import load_image

        gray = load_image(image, gray=True)
        width = 32 if self.metric == "hamming" else {"vgg": 120}.get(self.kind, 128)
        dtype = np.uint8 if self.metric == "hamming" else np.float32
        if len(keypoints) == 0:
            return Features(
                keypoints, torch.from_numpy(np.zeros((0, width), dtype=dtype)), self.metric
            )
        kept, desc = self.extractor.compute(gray, self._cv_keypoints(keypoints))
        if desc is None or len(kept) == 0:
            return Features(
                keypoints.subset(np.zeros(0, dtype=np.int64)),
                torch.from_numpy(np.zeros((0, width), dtype=dtype)),
                self.metric,
            )
        index = np.array([kp.class_id for kp in kept], dtype=np.int64)
        order = np.argsort(index, kind="stable")
        index, desc = index[order], desc[order]
        if self.metric == "hamming":
            return Features(
                keypoints.subset(index), torch.from_numpy(np.ascontiguousarray(desc)), "hamming"
            )
        desc = desc.astype(np.float32)
        if self.kind == "rootsift":
            desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))
        norms = np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        return Features(keypoints.subset(index), torch.from_numpy(desc / norms), "l2")


def _kornia_sift(rootsift: bool) -> nn.Module:
    import kornia.feature as KF

    model = KF.SIFTDescriptor(patch_size=41, rootsift=rootsift)
    model.patch_size = 41
    return model


def create_describer(spec: Any, **options: Any) -> PatchDescriber | OpenCVDescriber:
    """Build a describer from a spec string or a patch descriptor module.

    Args:
        spec: ``"opencv-<kind>"``, ``"kornia-sift"``/``"kornia-rootsift"``, a registered descriptor
            ``"name"`` or ``"name:weights"``, or an ``nn.Module`` with ``patch_size``.
        **options: for patch descriptors, :class:`PatchDescriber` options (``extent``,
            ``batch_size``, ``level_bias``), ``device`` and any other keyword goes to the registered
            factory (e.g. ``patch_size``); for OpenCV, the factory's arguments.

    Returns:
        A callable ``describer(image, keypoints) -> Features`` with ``.name`` and ``.metric``.

    Raises:
        OptionError: unknown OpenCV kind or unavailable in this OpenCV.
        RegistryError: unknown registered descriptor.

    Example:
        >>> create_describer("opencv-sift").metric
        'l2'
    """
    from torch import nn

    describer_keys = ("extent", "batch_size", "level_bias")
    patch_opts = {k: options.pop(k) for k in describer_keys if k in options}
    device = options.pop("device", None)
    if isinstance(spec, nn.Module):
        if options:
            raise OptionError(f"unexpected options for a module descriptor: {sorted(options)}")
        model, name = spec, type(spec).__name__.lower()
    elif not isinstance(spec, str) or not spec:
        raise OptionError(f"descriptor: expected a name or an nn.Module, got {spec!r}")
    elif spec.startswith("opencv-"):
        if patch_opts or device is not None:
            raise OptionError(
                f"{spec}: options {sorted(patch_opts)} apply to patch descriptors only"
            )
        return OpenCVDescriber(spec.removeprefix("opencv-"), **options)
    elif spec in ("kornia-sift", "kornia-rootsift"):
        if options:
            raise OptionError(f"unexpected options for {spec}: {sorted(options)}")
        model, name = _kornia_sift(spec == "kornia-rootsift"), spec
    else:
        import lookalike

        model, name = lookalike.create("descriptor", spec, **options), spec
    if device is not None:
        model = model.to(device)
    return PatchDescriber(model, name=name, **patch_opts)
