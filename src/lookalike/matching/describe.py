"""Describe keypoints with any registered descriptor: ours, OpenCV's or kornia's.

A *describer* turns ``(gray image, keypoints)`` into :class:`Features` through its
``describe_keypoints(image, keypoints)`` method. :func:`create_describer` resolves every spec
through the registry (one name vocabulary, see :mod:`lookalike.baselines`):

- a registered descriptor whose object describes keypoints itself (it has ``describe_keypoints``:
  the OpenCV baselines ``opencv-*``, which compute on the image at the keypoints) is used directly;
- any other registered descriptor (``"sift"``, ``"hardnet:bundled"``, ``"kornia-mkd"``...) or patch
  descriptor module is applied to patches cut from our scale pyramid around the keypoints
  (:class:`PatchDescriber`, :mod:`lookalike.matching.patches`), through the one batched path
  :func:`lookalike.descriptors.describe.describe_patches`.

Convention:
    - Float descriptors come out as the descriptor returns them (L2-normalised rows,
      ``metric="l2"``); binary ones as uint8 rows of packed bits (``metric="hamming"``), ready for
      :func:`~lookalike.matching.matchers.match_descriptors`.
    - OpenCV may drop keypoints it cannot describe (too close to the border): the returned
      :class:`Features` hold only the described keypoints, in their original order. Patch
      describers keep every keypoint.
    - Patch descriptors see ``patch_size x patch_size`` patches (the model's ``patch_size``), gray in
      [0, 1], whose half-width is ``extent * size / 2`` pixels. ``extent`` defaults to the model's
      ``patch_extent`` attribute if it has one; else :data:`~lookalike.matching.patches.SIFT_EXTENT`
      (7.5, OpenCV's SIFT region) for SIFT-like descriptors (a name containing ``"sift"``) and
      :data:`NETWORK_EXTENT` (6, the "6 sigma" magnification HardNet-style networks are trained
      with, and that of :func:`lookalike.data.synth.detect_lafs`) for the others.
    - Our SIFT (``"sift"``, ``"rootsift"`` named by spec) describes
      :data:`PIPELINE_SIFT_PATCH` (32) pixel patches unless ``patch_size`` is given. Chosen on the
      held-out nuisance pairs (:mod:`lookalike.data.nuisance_pairs`, seeds 0-2, 45 pairs) with the
      benchmarks' own MMA (mutual NN, D2-Net): MMA@3 rootsift .734 / .762 / .768 and sift .663 /
      .683 / .693 at 24 / 32 / 41 pixels. 32 keeps nearly all of 41's accuracy at 0.61x its pixels,
      which keeps the pair at OpenCV SIFT's speed (``benchmarks/matching.py``); 24 was 0.8x faster
      but lost .03 (it had been chosen on the demo pairs with the ratio-tested precision, which did
      not rank descriptors as the benchmarks do).
    - Describing never changes the model's train/eval mode (it runs in eval mode and restores it).
    - Speed (:class:`PatchDescriber` ``fuse``): a network built from a spec (``"hardnet:bundled"``) is
      described by its fused copy (``model.fuse_for_inference()``, BatchNorm folded). Its precision,
      ``"auto"``: bfloat16 where the device runs it natively
      (:func:`~lookalike.descriptors.patch._inference.bf16_supported`); else 8-bit integers on a CPU
      with VNNI (:func:`~lookalike.descriptors.patch._inference.int8_preferred`; calibrated on
      :func:`calibration_patches`, ≈ 2 s when the describer is built; not with ``compile``); else
      float32. ``torch.compile`` only with ``compile=True``. The int8 default was checked on held-out
      re-lit pairs of held-out bundled photos (72 pairs, ``hardnet:bundled``,
      ``benchmarks/precision.py``): MMA@3 0.9224 against
      0.9230 in float32, the same H@3, cosine to the float32 rows 0.9995 on average; on a CPU
      without bfloat16 it describes 3.3-4.5× faster. The copy is made once, when
      the describer is built, and reused by every call (it does not follow later changes to the
      model: build a new describer after training). A module passed by the caller is described as is
      unless ``fuse=True`` is given. :meth:`PatchDescriber.describe_images` describes the patches of
      several images in one call of the batched path.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import OptionError, ShapeError
from lookalike.descriptors._base import NETWORK_EXTENT, SIFT_EXTENT

#: Patch side (pixels) of our SIFT in the pipeline when the caller gives none (module Convention).
PIPELINE_SIFT_PATCH = 32
_OUR_SIFT = ("sift", "rootsift")

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lookalike.matching.keypoints import Keypoints

__all__ = [
    "CALIBRATION_KEYPOINTS",
    "CALIBRATION_PHOTOS",
    "FUSED_CPU_BATCH",
    "NETWORK_EXTENT",
    "PIPELINE_SIFT_PATCH",
    "PRECISIONS",
    "Features",
    "PatchDescriber",
    "auto_precision",
    "calibration_patches",
    "create_describer",
    "default_extent",
]

log = logging.getLogger(__name__)

#: ``precision`` of a fused network: ``"auto"`` (module Convention) or explicit.
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "int8")

#: Bundled training photos whose DoG patches calibrate an int8 network (no held-out photo, not the
#: motorcycle pair the speed benchmark runs on, never evaluation data).
CALIBRATION_PHOTOS: tuple[str, ...] = ("astronaut", "camera", "rocket")

#: DoG keypoints detected per calibration photo (the strongest responses) ...
CALIBRATION_KEYPOINTS = 2048
#: ... of which every ``CALIBRATION_STRIDE``-th is cut: weak responses as well as strong ones (the
#: strongest alone, 128 per photo, calibrated worse: held-out MMA@3 0.9152 against 0.9230 in float32).
CALIBRATION_STRIDE = 4


def default_extent(model: Any, name: str = "") -> float:
    """The patch extent a descriptor expects (see the module Convention)."""
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


#: Patches per forward pass of a fused network on the CPU. Small batches keep each layer's activations
#: in cache: 4,096 HardNet patches in bfloat16 on 2 threads took 0.83-1.04 s in batches of 128 against
#: 1.41-1.44 s in batches of 1,024 (and 1.74-1.95 s against 2.7-2.8 s in float32), same run.
FUSED_CPU_BATCH = 128


class PatchDescriber:
    """A patch descriptor network applied to pyramid patches around keypoints.

    Args:
        model: an ``nn.Module`` mapping ``(B, 1, P, P)`` in [0, 1] to ``(B, D)``, with ``patch_size``.
        name: label for reports.
        extent: patch half-width in units of ``size / 2`` (see the module Convention).
        batch_size: patches per forward pass; default :data:`FUSED_CPU_BATCH` for a fused network on
            the CPU (activations that stay in cache), 1024 otherwise.
        level_bias: pyramid level bias of :func:`~lookalike.matching.patches.extract_patches`.
        fuse: describe with ``model.fuse_for_inference(...)`` (a frozen copy made here; module
            Convention). ``compile=True`` implies it.
        precision: of the fused network: ``"auto"`` (bfloat16 where native, else int8 on a CPU with
            VNNI, else float32: :func:`auto_precision`), ``"float32"``, ``"bfloat16"`` or ``"int8"``
            (CPU; not with ``compile``).
        compile: ``torch.compile`` the fused network (first call compiles; later calls reuse it).

    Raises:
        OptionError: a bad option, or ``fuse``/``compile`` for a model without ``fuse_for_inference``.

    Example:
        >>> import numpy as np, lookalike
        >>> from lookalike.matching.keypoints import Keypoints
        >>> describer = PatchDescriber(lookalike.create("descriptor", "sift", patch_size=32))
        >>> kps = Keypoints.from_arrays([[20.0, 20.0]], size=[4.0], image_size=(40, 40))
        >>> describer.describe_keypoints(np.zeros((40, 40), np.uint8), kps).descriptors.shape
        torch.Size([1, 128])
    """

    metric = "l2"

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str | None = None,
        extent: float | None = None,
        batch_size: int | None = None,
        level_bias: float = 0.0,
        fuse: bool = False,
        precision: str = "auto",
        compile: bool = False,
    ) -> None:
        self.model = model
        self.name = name or type(model).__name__.lower()
        self.patch_size = int(getattr(model, "patch_size", 32))
        self.extent = float(extent if extent is not None else default_extent(model, self.name))
        check_positive(self.extent, "extent")
        if batch_size is not None:
            check_positive(batch_size, "batch_size")
        check_option(precision, PRECISIONS, "precision")
        self.level_bias = float(level_bias)
        self.precision = precision
        self.fused = bool(fuse or compile)
        #: what describes the patches: the fused copy, or the model itself
        self.network = (
            _fused(model, self.name, precision, compile, self.patch_size, self.extent)
            if self.fused
            else model
        )
        if batch_size is None:
            from lookalike.descriptors.describe import module_device

            on_cpu = module_device(self.network).type == "cpu"
            batch_size = FUSED_CPU_BATCH if self.fused and on_cpu else 1024
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        fused = f", fused={self.network.dtype}" if self.fused else ""
        size, extent = self.patch_size, self.extent
        return f"PatchDescriber({self.name!r}, patch_size={size}, extent={extent}{fused})"

    def patches(self, image: Any, keypoints: Keypoints) -> torch.Tensor:
        """``(N, 1, P, P)`` patches of ``keypoints`` in ``image`` (on the model's device)."""
        from lookalike.descriptors.describe import module_device
        from lookalike.matching.patches import extract_patches, image_to_tensor, keypoints_to_laf

        device = module_device(self.model)
        tensor = image_to_tensor(image, device=device)
        lafs = keypoints_to_laf(keypoints, extent=self.extent, device=device)
        return extract_patches(tensor, lafs, self.patch_size, level_bias=self.level_bias)

    def _describe(self, patches: torch.Tensor) -> torch.Tensor:
        from lookalike.descriptors.describe import describe_patches

        return describe_patches(
            self.network, patches, batch_size=self.batch_size, patch_size=self.patch_size
        )

    def describe_keypoints(self, image: Any, keypoints: Keypoints) -> Features:
        """Describe every keypoint (none is dropped); the model's train/eval mode is kept."""
        return Features(keypoints, self._describe(self.patches(image, keypoints)))

    def describe_images(
        self, images: Sequence[Any], keypoints: Sequence[Keypoints]
    ) -> list[Features]:
        """Describe the keypoints of several images with ONE call of the batched describe path.

        Equal to :meth:`describe_keypoints` image by image (the patches are cut per image, then
        described together).

        Raises:
            ShapeError: ``images`` and ``keypoints`` differ in length.
        """
        import torch

        if len(images) != len(keypoints):
            raise ShapeError(
                f"keypoints: expected one Keypoints per image ({len(images)}), got {len(keypoints)}"
            )
        patches = [self.patches(im, kp) for im, kp in zip(images, keypoints)]
        if not patches:
            return []
        rows = self._describe(torch.cat(patches))
        parts = rows.split([len(p) for p in patches])
        return [Features(kp, part) for kp, part in zip(keypoints, parts)]

    __call__ = describe_keypoints


def _fusable(model: Any) -> bool:
    """Whether ``model`` has the patch networks' ``fuse_for_inference(*, dtype, compile)``."""
    import inspect

    fuse = getattr(model, "fuse_for_inference", None)
    if not callable(fuse):
        return False
    try:
        params = inspect.signature(fuse).parameters
    except (TypeError, ValueError):
        return False
    return "dtype" in params and "compile" in params


def auto_precision(device: Any, *, compile: bool = False, model: Any = None) -> str:
    """What ``precision="auto"`` picks on ``device`` for ``model`` (module Convention).

    int8 needs a trunk (``model.features``) of ``torch.nn`` layers only; without a model only the
    device is asked.

    Example:
        >>> auto_precision("meta")
        'float32'
    """
    from lookalike.descriptors.patch._inference import bf16_supported, int8_preferred
    from lookalike.descriptors.patch._quantize import int8_quantizable

    if bf16_supported(device):
        return "bfloat16"
    quantizable = model is None or int8_quantizable(getattr(model, "features", None))
    if not compile and quantizable and int8_preferred(device):
        return "int8"
    return "float32"


def calibration_patches(patch_size: int, extent: float) -> torch.Tensor:
    """``(N, 1, P, P)`` patches that calibrate an int8 network: the pipeline's own patches.

    Every :data:`CALIBRATION_STRIDE`-th of :data:`CALIBRATION_KEYPOINTS` DoG keypoints per photo of
    :data:`CALIBRATION_PHOTOS`, cut by the pipeline's pyramid sampler at ``extent``
    (:func:`~lookalike.data.pipeline_pairs.pipeline_patches`): the distribution the network sees
    when it matches. Computed once per ``(patch_size, extent)`` and process; each call returns a copy.

    Example:
        >>> calibration_patches(32, 6.0).shape[1:]
        torch.Size([1, 32, 32])
    """
    check_positive(patch_size, "patch_size")
    check_positive(extent, "extent")
    return _calibration_patches(int(patch_size), float(extent)).clone()


@functools.lru_cache(maxsize=4)
def _calibration_patches(patch_size: int, extent: float) -> torch.Tensor:
    import numpy as np
    import torch

    from lookalike.data.bundled import bundled_photos
    from lookalike.data.pipeline_pairs import pipeline_patches
    from lookalike.matching.keypoints import detect_keypoints

    out = []
    for photo in bundled_photos(list(CALIBRATION_PHOTOS)):
        gray = photo.gray_array
        kps = detect_keypoints(gray, max_keypoints=CALIBRATION_KEYPOINTS)
        kps = kps.subset(np.arange(0, len(kps), CALIBRATION_STRIDE))
        out.append(pipeline_patches(gray, kps, patch_size=patch_size, extent=extent))
    return torch.cat(out)


def _fused(
    model: Any, name: str, precision: str, compile: bool, patch_size: int, extent: float
) -> Any:
    """``model.fuse_for_inference`` at the requested precision (module Convention)."""
    import torch

    from lookalike.descriptors.describe import module_device

    if not _fusable(model):
        raise OptionError(
            f"{name}: fuse/compile need a patch network with fuse_for_inference(dtype=)"
        )
    if precision == "auto":
        precision = auto_precision(module_device(model), compile=bool(compile), model=model)
    if precision == "int8":
        if compile:
            raise OptionError("precision: int8 is not compiled; drop compile=True or pick a float")
        patches = calibration_patches(patch_size, extent)
        return model.fuse_for_inference(dtype=torch.qint8, calibration=patches)
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    return model.fuse_for_inference(dtype=dtype, compile=bool(compile))


def _keypoint_describer(obj: Any) -> bool:
    return callable(getattr(obj, "describe_keypoints", None))


def create_describer(spec: Any, **options: Any) -> Any:
    """Build a describer from a spec string or a patch descriptor module.

    Args:
        spec: a registered descriptor ``"name"`` or ``"name:weights"`` (ours, ``"opencv-*"``,
            ``"kornia-*"``; see :mod:`lookalike.baselines`), an ``nn.Module`` with ``patch_size``, or an
            object that already has ``describe_keypoints`` (returned as is).
        **options: for patch descriptors, :class:`PatchDescriber` options (``extent``,
            ``batch_size``, ``level_bias``, ``fuse``, ``precision``, ``compile``) and ``device``; any
            other keyword goes to the registered factory (e.g. ``patch_size``, or an OpenCV
            factory's arguments). A network named by a spec is fused unless ``fuse=False``.

    Returns:
        An object with ``describe_keypoints(image, keypoints) -> Features``, ``.name`` and ``.metric``.

    Raises:
        OptionError: an empty spec, options that do not apply, or an OpenCV descriptor this
            installation lacks.
        RegistryError: unknown descriptor (the message lists the registered names).

    Example:
        >>> create_describer("opencv-sift").metric
        'l2'
        >>> create_describer("kornia-mkd")
        PatchDescriber('kornia-mkd', patch_size=32, extent=6.0)
    """
    from torch import nn

    describer_keys = ("extent", "batch_size", "level_bias", "fuse", "precision", "compile")
    patch_opts = {k: options.pop(k) for k in describer_keys if k in options}
    device = options.pop("device", None)
    if isinstance(spec, nn.Module) or _keypoint_describer(spec):
        if options:
            raise OptionError(f"unexpected options for a module descriptor: {sorted(options)}")
        model, name = spec, getattr(spec, "name", None) or type(spec).__name__.lower()
    elif not isinstance(spec, str) or not spec:
        raise OptionError(f"descriptor: expected a name or an nn.Module, got {spec!r}")
    else:
        import lookalike
        from lookalike._registry import split_spec

        if split_spec(spec)[0] in _OUR_SIFT and "patch_size" not in options:
            options["patch_size"] = PIPELINE_SIFT_PATCH
        model, name = lookalike.create("descriptor", spec, **options), spec
    if _keypoint_describer(model):
        if patch_opts or device is not None:
            given = sorted([*patch_opts, *(["device"] if device is not None else [])])
            raise OptionError(f"{name}: options {given} apply to patch descriptors only")
        return model
    if device is not None:
        model = model.to(device)
    if isinstance(spec, str) and "fuse" not in patch_opts:
        # a network we built ourselves: describe with its fused copy (module Convention)
        patch_opts["fuse"] = _fusable(model)
    return PatchDescriber(model, name=name, **patch_opts)
