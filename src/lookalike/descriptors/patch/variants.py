"""HardNet with one building block added (issue 14's patch ablation): SE, CBAM, attention pooling, ASPConv.

Every variant is :class:`~lookalike.descriptors.patch.hardnet.HardNet` (same trunk, same
initialisation, same standardisation and head) with a block inserted at a stated place:

- ``hardnet_se`` / ``hardnet_cbam`` / ``hardnet_ms``: a block after the last ReLU of resolution
  stages (:data:`STAGES`: ``"32"`` = 32 channels at full resolution, ``"16"`` = 64 channels at half,
  ``"8"`` = 128 channels at quarter resolution for 32-px input). The ReLU at that index of
  ``features`` becomes ``Sequential(ReLU, block)``, so every trunk key of a HardNet state dict keeps
  its name (``features.0.weight`` ...) and the blocks add ``features.5.1.*`` and so on.
- ``hardnet_attnpool``: the final ``Conv(8×8) → BN`` aggregation becomes ``Conv1×1 → BN`` per
  position, :class:`~lookalike.layers.attention_pool.AttentionPool` over positions (average pooling
  when untrained) and the last ``BN``.

With the same seed the trunk convolutions are initialised exactly like HardNet's (the blocks are built
after the trunk), so an ablation row differs from the HardNet row by the block alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option
from lookalike.core.errors import OptionError
from lookalike.descriptors.patch.hardnet import HardNet, orthogonal_
from lookalike.layers.atrous import ASPConv
from lookalike.layers.attention_pool import AttentionPool
from lookalike.layers.cbam import CBAM
from lookalike.layers.se import SqueezeExcite

__all__ = [
    "STAGES",
    "HardNetAttnPool",
    "HardNetCBAM",
    "HardNetMS",
    "HardNetSE",
    "HardNetWithBlocks",
    "count_parameters",
]

#: Resolution stages of the HardNet trunk: name → (index of the stage's last ReLU in ``features``,
#: channels). Names are the map side for 32-px input.
STAGES: dict[str, tuple[int, int]] = {"32": (5, 32), "16": (11, 64), "8": (17, 128)}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter values of ``module``.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _check_stages(stages: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
        raise OptionError(f"stages: expected a non-empty list of {sorted(STAGES)}, got {stages!r}")
    for stage in stages:
        check_option(stage, sorted(STAGES), "stages")
    if len(set(stages)) != len(stages):
        raise OptionError(f"stages: expected distinct stages, got {list(stages)!r}")
    return tuple(stages)


class HardNetWithBlocks(HardNet):
    """HardNet with a block after the last ReLU of each of ``stages``.

    Subclasses set :meth:`make_block`; the block maps ``(B, C, H, W)`` to the same shape.

    Args:
        stages: stages of :data:`STAGES` that get a block.
        dim: descriptor size.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64.
    """

    def __init__(
        self,
        *,
        stages: Sequence[str] = ("32", "16", "8"),
        dim: int = 128,
        dropout: float = 0.3,
        patch_size: int = 32,
    ) -> None:
        stages = _check_stages(stages)
        super().__init__(dim=dim, dropout=dropout, patch_size=patch_size)
        self.stages = stages
        for stage in sorted(stages, key=lambda s: STAGES[s][0]):
            index, channels = STAGES[stage]
            relu = self.features[index]
            if not isinstance(relu, nn.ReLU):  # internal invariant of the HardNet trunk layout
                raise AssertionError(f"features[{index}] is {type(relu).__name__}, not ReLU")
            self.features[index] = nn.Sequential(relu, self.make_block(channels))

    def make_block(self, channels: int) -> nn.Module:
        """The block inserted after a stage of ``channels`` channels."""
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """The inserted blocks, in trunk order."""
        return [self.features[STAGES[s][0]][1] for s in sorted(self.stages, key=STAGES.get)]


@register("descriptor", "hardnet_se")
class HardNetSE(HardNetWithBlocks):
    """HardNet + squeeze-and-excitation after each stage (:class:`~lookalike.layers.se.SqueezeExcite`).

    Args:
        stages: stages of :data:`STAGES` that get an SE block (default: all three).
        rd_ratio: SE bottleneck ratio (widths rounded to multiples of 8: 8, 8, 8 channels).
        dim: descriptor size.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64.

    Convention:
        As :class:`~lookalike.descriptors.patch.hardnet.HardNet` (standardised input, L2 rows, a flat
        patch gives an all-zero row); the trunk keys of a HardNet state dict are unchanged.

    Example:
        >>> import torch, lookalike
        >>> net = lookalike.create("descriptor", "hardnet_se").eval()
        >>> net(torch.rand(4, 1, 32, 32)).shape, len(net.blocks())
        (torch.Size([4, 128]), 3)
    """

    def __init__(
        self,
        *,
        stages: Sequence[str] = ("32", "16", "8"),
        rd_ratio: float = 1.0 / 16,
        dim: int = 128,
        dropout: float = 0.3,
        patch_size: int = 32,
    ) -> None:
        self._rd_ratio = rd_ratio
        super().__init__(stages=stages, dim=dim, dropout=dropout, patch_size=patch_size)

    def make_block(self, channels: int) -> nn.Module:
        return SqueezeExcite(channels, rd_ratio=self._rd_ratio)


@register("descriptor", "hardnet_cbam")
class HardNetCBAM(HardNetWithBlocks):
    """HardNet + CBAM (channel then spatial attention) after each stage (:class:`~lookalike.layers.cbam.CBAM`).

    Args:
        stages: stages of :data:`STAGES` that get a CBAM block (default: all three).
        rd_ratio: channel-MLP bottleneck ratio.
        spatial_kernel_size: kernel of the spatial attention (odd; 7 as in the paper).
        dim: descriptor size.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64.

    Example:
        >>> import torch, lookalike
        >>> net = lookalike.create("descriptor", "hardnet_cbam", stages=["8"]).eval()
        >>> net(torch.rand(4, 1, 32, 32)).shape, len(net.blocks())
        (torch.Size([4, 128]), 1)
    """

    def __init__(
        self,
        *,
        stages: Sequence[str] = ("32", "16", "8"),
        rd_ratio: float = 1.0 / 16,
        spatial_kernel_size: int = 7,
        dim: int = 128,
        dropout: float = 0.3,
        patch_size: int = 32,
    ) -> None:
        self._rd_ratio = rd_ratio
        self._spatial_kernel_size = spatial_kernel_size
        super().__init__(stages=stages, dim=dim, dropout=dropout, patch_size=patch_size)

    def make_block(self, channels: int) -> nn.Module:
        return CBAM(
            channels, rd_ratio=self._rd_ratio, spatial_kernel_size=self._spatial_kernel_size
        )


@register("descriptor", "hardnet_ms")
class HardNetMS(HardNetWithBlocks):
    """HardNet + multi-scale fusion: an ASPConv block (:class:`~lookalike.layers.atrous.ASPConv`) after stages.

    ASPConv splits the channels into ``len(dilations)`` groups, runs cascaded 3×3 convolutions with
    growing dilation and fuses them with a ``1×1`` convolution added to its input (a residual block),
    so a stage sees several receptive fields at about the cost of one convolution.

    Args:
        stages: stages of :data:`STAGES` that get a block (default ``("16", "8")``).
        dilations: dilation of each group (their number divides the stage's channels).
        dim: descriptor size.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64.

    Example:
        >>> import torch, lookalike
        >>> net = lookalike.create("descriptor", "hardnet_ms").eval()
        >>> net(torch.rand(4, 1, 32, 32)).shape, len(net.blocks())
        (torch.Size([4, 128]), 2)
    """

    def __init__(
        self,
        *,
        stages: Sequence[str] = ("16", "8"),
        dilations: Sequence[int] = (1, 2, 3, 4),
        dim: int = 128,
        dropout: float = 0.3,
        patch_size: int = 32,
    ) -> None:
        self._dilations = tuple(dilations) if isinstance(dilations, Sequence) else dilations
        super().__init__(stages=stages, dim=dim, dropout=dropout, patch_size=patch_size)

    def make_block(self, channels: int) -> nn.Module:
        return ASPConv(channels, dilations=self._dilations)


class _PooledMap(nn.Module):
    """``AttentionPool`` as a ``(B, C, H, W) → (B, C, 1, 1)`` map, so the trunk stays a plain Sequential."""

    def __init__(self, pool: AttentionPool) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)[:, :, None, None]


@register("descriptor", "hardnet_attnpool")
class HardNetAttnPool(HardNet):
    """HardNet whose final ``Conv(k×k)`` aggregation is replaced by a ``1×1`` conv and attention pooling.

    The trunk up to the dropout is HardNet's; then ``Conv1×1(128 → dim) → BN → ReLU`` per position,
    :class:`~lookalike.layers.attention_pool.AttentionPool` (``num_heads`` heads, each pooling its
    channel group with its own softmax weights over the ``8×8`` positions) and the last
    ``BatchNorm(affine=False)``. Untrained, the pooling is an average (zero queries).

    Args:
        num_heads: attention heads (divides ``dim``).
        key_dim: key/query size per head.
        dim: descriptor size.
        dropout: dropout probability before the ``1×1`` convolution.
        patch_size: 32, 48 or 64.

    Convention:
        Unlike the ``k×k`` convolution, pooling forgets where in the patch a feature was, except through
        what the 3×3 trunk encodes locally: this row measures whether a learned weighting of positions
        can stand in for the spatial layout.

    Example:
        >>> import torch, lookalike
        >>> net = lookalike.create("descriptor", "hardnet_attnpool").eval()
        >>> net(torch.rand(4, 1, 32, 32)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        *,
        num_heads: int = 8,
        key_dim: int = 16,
        dim: int = 128,
        dropout: float = 0.3,
        patch_size: int = 32,
    ) -> None:
        super().__init__(dim=dim, dropout=dropout, patch_size=patch_size)
        trunk = list(self.features)[:-2]  # up to and with the dropout
        channels = trunk[-3].num_features  # the last 3×3 stage's BatchNorm
        conv = nn.Conv2d(channels, self.dim, kernel_size=1, bias=False)
        orthogonal_(conv.weight, gain=0.6)
        self.features = nn.Sequential(
            *trunk,
            conv,
            nn.BatchNorm2d(self.dim, affine=False),
            nn.ReLU(),
            _PooledMap(AttentionPool(self.dim, num_heads=num_heads, key_dim=key_dim)),
            nn.BatchNorm2d(self.dim, affine=False),
        )

    @property
    def attention(self) -> AttentionPool:
        """The attention pooling layer."""
        return self.features[-2].pool
