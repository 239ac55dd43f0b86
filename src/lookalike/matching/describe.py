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
    - Describing never changes the model's train/eval mode (it runs in eval mode and restores it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import NETWORK_EXTENT, SIFT_EXTENT

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lookalike.matching.keypoints import Keypoints

__all__ = [
    "NETWORK_EXTENT",
    "Features",
    "PatchDescriber",
    "create_describer",
    "default_extent",
]

log = logging.getLogger(__name__)


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


class PatchDescriber:
    """A patch descriptor network applied to pyramid patches around keypoints.

    Args:
        model: an ``nn.Module`` mapping ``(B, 1, P, P)`` in [0, 1] to ``(B, D)``, with ``patch_size``.
        name: label for reports.
        extent: patch half-width in units of ``size / 2`` (see the module Convention).
        batch_size: patches per forward pass.
        level_bias: pyramid level bias of :func:`~lookalike.matching.patches.extract_patches`.

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
        batch_size: int = 1024,
        level_bias: float = 0.0,
    ) -> None:
        self.model = model
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
        from lookalike.descriptors.describe import module_device
        from lookalike.matching.patches import extract_patches, image_to_tensor, keypoints_to_laf

        device = module_device(self.model)
        tensor = image_to_tensor(image, device=device)
        lafs = keypoints_to_laf(keypoints, extent=self.extent, device=device)
        return extract_patches(tensor, lafs, self.patch_size, level_bias=self.level_bias)

    def describe_keypoints(self, image: Any, keypoints: Keypoints) -> Features:
        """Describe every keypoint (none is dropped); the model's train/eval mode is kept."""
        from lookalike.descriptors.describe import describe_patches

        patches = self.patches(image, keypoints)
        rows = describe_patches(
            self.model, patches, batch_size=self.batch_size, patch_size=self.patch_size
        )
        return Features(keypoints, rows)

    __call__ = describe_keypoints


def _keypoint_describer(obj: Any) -> bool:
    return callable(getattr(obj, "describe_keypoints", None))


def create_describer(spec: Any, **options: Any) -> Any:
    """Build a describer from a spec string or a patch descriptor module.

    Args:
        spec: a registered descriptor ``"name"`` or ``"name:weights"`` (ours, ``"opencv-*"``,
            ``"kornia-*"``; see :mod:`lookalike.baselines`), an ``nn.Module`` with ``patch_size``, or an
            object that already has ``describe_keypoints`` (returned as is).
        **options: for patch descriptors, :class:`PatchDescriber` options (``extent``,
            ``batch_size``, ``level_bias``) and ``device``; any other keyword goes to the registered
            factory (e.g. ``patch_size``, or an OpenCV factory's arguments).

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

    describer_keys = ("extent", "batch_size", "level_bias")
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

        model, name = lookalike.create("descriptor", spec, **options), spec
    if _keypoint_describer(model):
        if patch_opts or device is not None:
            given = sorted([*patch_opts, *(["device"] if device is not None else [])])
            raise OptionError(f"{name}: options {given} apply to patch descriptors only")
        return model
    if device is not None:
        model = model.to(device)
    return PatchDescriber(model, name=name, **patch_opts)
