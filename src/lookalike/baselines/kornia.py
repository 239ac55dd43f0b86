"""kornia's hand-crafted descriptors as registered baselines: ``kornia-{sift,rootsift,mkd}``.

==================  ===================================================================
name                descriptor
==================  ===================================================================
``kornia-sift``     ``kornia.feature.SIFTDescriptor(41, rootsift=False)`` (128-d)
``kornia-rootsift`` the same with ``rootsift=True``
``kornia-mkd``      ``kornia.feature.MKDDescriptor(32, whitening=None)`` (238-d, nothing learned)
==================  ===================================================================

Convention:
    - Patch mode (``forward``): ``(B, 1, P, P)`` floating patches in [0, 1] with ``P = patch_size``
      -> ``(B, D)`` L2-normalised rows in the input's dtype, exactly kornia's output, except that a
      flat patch gives an all-zero row (kornia's RootSIFT would give ``1e-5`` everywhere, MKD a
      constant non-zero row). NaN or inf raise ValueRangeError; an empty batch gives ``(0, D)``.
    - Keypoint mode: the matcher cuts pyramid patches around the keypoints
      (:class:`~lookalike.matching.describe.PatchDescriber`), ``patch_extent`` half-widths in units of
      ``size / 2``: 7.5 (OpenCV's SIFT region) for SIFT, 6 ("6 sigma", as HardNet-style networks) for MKD.
    - Differentiable with respect to the patches (kornia's own operations).
"""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.baselines._common import check_patches, flat_rows
from lookalike.core.check import check_positive
from lookalike.descriptors._base import NETWORK_EXTENT, SIFT_EXTENT, InputSpec

__all__ = ["KorniaDescriptor", "kornia_mkd", "kornia_rootsift", "kornia_sift"]


class KorniaDescriptor(nn.Module):
    """A kornia patch descriptor behind the baseline contract (see the module Convention).

    Args:
        module: the kornia module, ``(B, 1, P, P) -> (B, D)``.
        name: registered name.
        patch_size: its input side ``P``.
        dim: its output width ``D``.
        patch_extent: patch half-width in units of the keypoint ``size / 2``.

    Example:
        >>> import torch
        >>> sift = kornia_sift()
        >>> sift(torch.rand(2, 1, 41, 41)).shape, sift.name
        (torch.Size([2, 128]), 'kornia-sift')
    """

    needs_weights = False
    differentiable = True
    metric = "l2"

    def __init__(
        self, module: nn.Module, *, name: str, patch_size: int, dim: int, patch_extent: float
    ) -> None:
        super().__init__()
        self.module = module
        self.name = name
        self.patch_size = int(patch_size)
        self.input_spec = InputSpec(channels=1, size=self.patch_size)
        self.dim = int(dim)
        self.patch_extent = float(patch_extent)

    def extra_repr(self) -> str:
        return f"{self.name!r}, patch_size={self.patch_size}, dim={self.dim}"

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Describe ``(B, 1, P, P)`` patches in [0, 1]: ``(B, D)`` unit rows (zero for flat patches).

        Raises:
            ShapeError: not ``(B, 1, patch_size, patch_size)``.
            DTypeError: not floating point.
            ValueRangeError: NaN or infinite values.
        """
        check_patches(patches, self.patch_size)
        if patches.shape[0] == 0:
            return patches.new_zeros(0, self.dim)
        out = self.module(patches)
        return torch.where(flat_rows(patches)[:, None], torch.zeros_like(out), out)


def _size(patch_size: int) -> int:
    check_positive(patch_size, "patch_size")
    return int(patch_size)


def _sift(name: str, patch_size: int, root: bool) -> KorniaDescriptor:
    import kornia.feature as KF

    size = _size(patch_size)
    module = KF.SIFTDescriptor(patch_size=size, rootsift=root)
    return KorniaDescriptor(module, name=name, patch_size=size, dim=128, patch_extent=SIFT_EXTENT)


@register("descriptor", "kornia-sift")
def kornia_sift(*, patch_size: int = 41) -> KorniaDescriptor:
    """kornia's ``SIFTDescriptor`` (41 px, plain SIFT; 128-d)."""
    return _sift("kornia-sift", patch_size, root=False)


@register("descriptor", "kornia-rootsift")
def kornia_rootsift(*, patch_size: int = 41) -> KorniaDescriptor:
    """kornia's ``SIFTDescriptor`` with RootSIFT normalisation (41 px; 128-d)."""
    return _sift("kornia-rootsift", patch_size, root=True)


@register("descriptor", "kornia-mkd")
def kornia_mkd(*, patch_size: int = 32) -> KorniaDescriptor:
    """kornia's ``MKDDescriptor`` without whitening (32 px; 238-d, nothing learned).

    kornia's whitened variants load learned weights from the internet: not offered here.
    """
    import kornia.feature as KF

    size = _size(patch_size)
    module = KF.MKDDescriptor(patch_size=size, whitening=None)
    return KorniaDescriptor(
        module,
        name="kornia-mkd",
        patch_size=size,
        dim=int(module.odims),
        patch_extent=NETWORK_EXTENT,
    )


for _factory in (kornia_sift, kornia_rootsift, kornia_mkd):
    _factory.needs_weights = False  # read by lookalike.cli._common.require_trained
