"""The networks of "Improving the HardNet Descriptor" (Pultar, 2020): HardNet8, HardNet7x2, HardNet8x2, HardNet9.

Our reading of the thesis and of its code (``HardNet_MultiDataset/architectures.py``), in the notation
``width/stride`` for the 3×3 convolutions (each followed by ``BatchNorm2d(affine=False)`` and ReLU),
then dropout 0.3, the final convolution and a last ``BatchNorm2d(affine=False)``:

==============  =========================================  ==============  ==========================
network         3×3 convolutions (32 px)                   final conv      descriptor
==============  =========================================  ==============  ==========================
HardNet (7)     32, 32, 64/2, 64, 128/2, 128               8×8 → 128       128
HardNet7x2      64, 64, 128/2, 128, 256/2, 256             8×8 → 256       256 (every width doubled)
HardNet8        32, 32, 64/2, 64, 128/2, 128, 256          8×8 → 512       PCA 512 → 128
HardNet8x2      64, 64, 128/2, 128, 256/2, 256, 512        8×8 → 512       512
HardNet9        32, 32, 64/2, 64, 128, 128/2, 256, 256     8×8 → 256       256
==============  =========================================  ==============  ==========================

The table is data (:data:`VARIANTS`); the registered classes only name their row.

Input sizes: 48- and 64-px variants put stride 2 on the last 3×3 convolution and shrink the final
kernel to the remaining map (48 → 6×6, 64 → 8×8), as the thesis's ``p48``/``p64`` models do. The
thesis also tried other placements (e.g. a 12×12 final kernel for 48 px); we implement only this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_shape
from lookalike.core.errors import OptionError
from lookalike.descriptors.patch._functional import normalize_descriptors, stats_dtype
from lookalike.descriptors.patch.hardnet import HardNetFamily

__all__ = [
    "VARIANTS",
    "HardNet7x2",
    "HardNet8",
    "HardNet8x2",
    "HardNet9",
    "HardNetVariant",
    "VariantSpec",
    "pca_project",
]

STRIDES_7 = (1, 1, 2, 1, 2, 1)
STRIDES_8 = (1, 1, 2, 1, 2, 1, 1)


@dataclass(frozen=True)
class VariantSpec:
    """One row of the table above: the 32-px trunk of a HardNet variant (data, not code).

    Attributes:
        widths: 3×3 convolution widths.
        strides: their strides for 32-px input (adapted by
            :func:`~lookalike.descriptors.patch.hardnet.strides_for_patch_size`).
        dim: output channels of the final convolution (the descriptor size unless a PCA follows).
        eps: epsilon of the per-patch standardisation ``(x - mean) / (std + eps)``.
    """

    widths: tuple[int, ...]
    strides: tuple[int, ...]
    dim: int
    eps: float = 1e-7


#: The trunks of "Improving the HardNet Descriptor", by registry name.
VARIANTS: Mapping[str, VariantSpec] = {
    "hardnet7x2": VariantSpec(widths=(64, 64, 128, 128, 256, 256), strides=STRIDES_7, dim=256),
    "hardnet8": VariantSpec(widths=(32, 32, 64, 64, 128, 128, 256), strides=STRIDES_8, dim=512),
    "hardnet8x2": VariantSpec(widths=(64, 64, 128, 128, 256, 256, 512), strides=STRIDES_8, dim=512),
    "hardnet9": VariantSpec(
        widths=(32, 32, 64, 64, 128, 128, 256, 256), strides=(1, 1, 2, 1, 1, 2, 1, 1), dim=256
    ),
}


def pca_project(feats: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """HardNet8's projection: L2-normalise, subtract ``mean``, multiply by ``components``.

    Computed in float32 (float64 stays). Not normalised afterwards.

    Args:
        feats: ``(B, T)`` trunk outputs.
        mean: ``(T,)`` PCA mean.
        components: ``(T, D)`` projection.

    Returns:
        ``(B, D)``.

    Example:
        >>> import torch
        >>> pca_project(torch.tensor([[3.0, 4.0]]), torch.zeros(2), torch.eye(2, 1))
        tensor([[0.6000]])
    """
    x = normalize_descriptors(feats, dtype=stats_dtype(feats.dtype))
    return (x - mean.to(x.dtype)) @ components.to(x.dtype)


class _PCAHead(nn.Module):
    """:func:`pca_project` with its own copies of the buffers (for fused networks)."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("components", components.detach().clone().float())

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return pca_project(feats, self.mean, self.components)


class HardNetVariant(HardNetFamily):
    """A HardNet variant built from its row of :data:`VARIANTS` (``variant`` names the row).

    Args:
        dim: descriptor size (output channels of the final convolution); default the row's ``dim``.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64 (48/64: stride 2 on the last 3×3 convolution).
    """

    variant: ClassVar[str]

    def __init__(
        self, *, dim: int | None = None, dropout: float = 0.3, patch_size: int = 32
    ) -> None:
        spec = VARIANTS[self.variant]
        super().__init__(
            widths=spec.widths,
            strides=spec.strides,
            dim=spec.dim if dim is None else dim,
            dropout=dropout,
            patch_size=patch_size,
            eps=spec.eps,
        )


@register("descriptor", "hardnet8")
class HardNet8(HardNetFamily):
    """HardNet8: HardNet plus a 256-wide 3×3 layer, a 512-d trunk output and a PCA to 128 dimensions.

    The trunk output is L2-normalised, projected by the ``mean``/``components`` buffers (a PCA fitted
    after training and stored with the weights, see :meth:`set_pca`) and L2-normalised again. Until a
    PCA is set or loaded, ``components`` is ``eye(trunk_dim, dim)`` and ``mean`` zero: the projection
    keeps the first ``dim`` normalised trunk features. That default is ours; kornia's
    ``HardNet8`` registers ``ones(512, 128)`` components (every descriptor would collapse to
    ``±(1, …, 1)/√128`` with a zero gradient), which its pretrained state dict then overwrites, and a
    kornia state dict overwrites ours in the same way. The thesis's 256-d HardNet8 without PCA is
    ``HardNet8(trunk_dim=256, dim=256)`` (identity projection).

    Args:
        dim: descriptor size after the projection (≤ ``trunk_dim``).
        trunk_dim: output channels of the final convolution.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64 (48/64: stride 2 on the last 3×3 convolution).

    Shape:
        - Input: ``(B, 1, P, P)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        - State-dict layout of ``kornia.feature.HardNet8`` (``features.*``, ``components``, ``mean``);
          with the same weights the descriptors equal kornia's (≤ 1e-5).
        - Patches are standardised to ``(x - mean) / (std + 1e-7)``; a flat patch gives an all-zero row.

    Example:
        >>> import torch
        >>> net = HardNet8().eval()
        >>> net(torch.rand(4, 1, 32, 32)).shape, net.features[-2].out_channels
        (torch.Size([4, 128]), 512)
    """

    mean: torch.Tensor
    components: torch.Tensor

    def __init__(
        self, *, dim: int = 128, trunk_dim: int = 512, dropout: float = 0.3, patch_size: int = 32
    ) -> None:
        if dim > trunk_dim:
            raise OptionError(f"dim: expected at most trunk_dim={trunk_dim}, got {dim}")
        spec = VARIANTS["hardnet8"]
        super().__init__(
            widths=spec.widths,
            strides=spec.strides,
            dim=trunk_dim,
            dropout=dropout,
            patch_size=patch_size,
            eps=spec.eps,
        )
        self.dim = int(dim)
        self.trunk_dim = int(trunk_dim)
        self.register_buffer("components", torch.eye(trunk_dim, dim))
        self.register_buffer("mean", torch.zeros(trunk_dim))

    def set_pca(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """Replace the projection with a fitted PCA: ``mean`` ``(T,)``, ``components`` ``(T, D)``.

        Fit it on L2-normalised :meth:`forward_features` rows of training patches (the projection
        normalises the trunk output before it subtracts ``mean``).
        """
        dims = check_shape(mean, [str(self.trunk_dim)], "mean")
        check_shape(components, [str(self.trunk_dim), str(self.dim)], "components", dims)
        with torch.no_grad():
            self.mean.copy_(mean)
            self.components.copy_(components)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """:func:`pca_project` with the ``mean``/``components`` buffers."""
        return pca_project(features, self.mean, self.components)

    def _fused_projection(self) -> nn.Module:
        return _PCAHead(self.mean, self.components)


@register("descriptor", "hardnet7x2")
class HardNet7x2(HardNetVariant):
    """HardNet7x2: HardNet with every width doubled (64 … 256) and a 256-d descriptor.

    Args:
        dim: descriptor size (output channels of the final convolution), default 256.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64 (48/64: stride 2 on the last 3×3 convolution).

    Shape:
        - Input: ``(B, 1, P, P)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        Patches are standardised to ``(x - mean) / (std + 1e-7)``; a flat patch gives an all-zero row.
        See the table in :mod:`lookalike.descriptors.patch.hardnet8`.

    Example:
        >>> import torch
        >>> HardNet7x2(patch_size=48).eval()(torch.rand(2, 1, 48, 48)).shape
        torch.Size([2, 256])
    """

    variant = "hardnet7x2"


@register("descriptor", "hardnet8x2")
class HardNet8x2(HardNetVariant):
    """HardNet8x2: HardNet8's trunk with every width doubled (64 … 512) and a 512-d descriptor (no PCA).

    Args:
        dim: descriptor size (output channels of the final convolution), default 512.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64 (48/64: stride 2 on the last 3×3 convolution).

    Shape:
        - Input: ``(B, 1, P, P)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        Patches are standardised to ``(x - mean) / (std + 1e-7)``; a flat patch gives an all-zero row.
        See the table in :mod:`lookalike.descriptors.patch.hardnet8`.

    Example:
        >>> import torch
        >>> HardNet8x2().eval()(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 512])
    """

    variant = "hardnet8x2"


@register("descriptor", "hardnet9")
class HardNet9(HardNetVariant):
    """HardNet9: eight 3×3 layers (32, 32, 64/2, 64, 128, 128/2, 256, 256) and a 256-d descriptor.

    The second downsampling moves one layer later than in HardNet (onto the second 128-wide layer).

    Args:
        dim: descriptor size (output channels of the final convolution), default 256.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64 (48/64: stride 2 on the last 3×3 convolution).

    Shape:
        - Input: ``(B, 1, P, P)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        Patches are standardised to ``(x - mean) / (std + 1e-7)``; a flat patch gives an all-zero row.
        See the table in :mod:`lookalike.descriptors.patch.hardnet8`.

    Example:
        >>> import torch
        >>> HardNet9(patch_size=64).eval()(torch.rand(2, 1, 64, 64)).shape
        torch.Size([2, 256])
    """

    variant = "hardnet9"
