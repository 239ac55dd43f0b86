"""Multi-scale feature-fusion residual block (after MSRN's multi-scale residual block, Li et al., ECCV 2018)."""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.layers._common import (
    LayerType,
    check_feature_map,
    check_int,
    check_ints,
    conv_norm_act,
)

__all__ = ["MultiScaleFusionBlock"]


@register("layer", "msffrb")
class MultiScaleFusionBlock(nn.Module):
    """Parallel paths with different kernel sizes / dilations that exchange features, plus a residual.

    With paths ``j = 1..n`` (kernel ``k_j``, dilation ``d_j``):

    1. ``s_j = act(conv_j(x))`` (``channels`` each);
    2. exchange: ``t_j = act(conv'_j([s_1, …, s_n]))`` — every path sees every path's first stage;
    3. fuse and add: ``out = x + conv1×1([t_1, …, t_n])``.

    MSRN's block is the default (paths 3×3 and 5×5, no norm); dilations give larger receptive fields at
    the cost of a 3×3 kernel.

    Args:
        channels: input (and output) channels ``C``.
        kernel_sizes: kernel of each path (odd).
        dilations: dilation of each path (same length as ``kernel_sizes``).
        act_layer: activation class.
        norm_layer: optional norm class after every convolution of the paths.

    Example:
        >>> import torch
        >>> block = MultiScaleFusionBlock(8, kernel_sizes=(3, 3, 3), dilations=(1, 2, 3))
        >>> block(torch.rand(2, 8, 9, 9)).shape
        torch.Size([2, 8, 9, 9])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_sizes: tuple[int, ...] = (3, 5),
        dilations: tuple[int, ...] | None = None,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        kernels = check_ints(kernel_sizes, "kernel_sizes")
        if any(k % 2 == 0 for k in kernels):
            raise OptionError(f"kernel_sizes: expected odd kernels, got {kernel_sizes!r}")
        dil = (1,) * len(kernels) if dilations is None else dilations
        dil = check_ints(dil, "dilations", length=len(kernels))
        n = len(kernels)
        kw = {"act_layer": act_layer, "norm_layer": norm_layer}
        self.stage1 = nn.ModuleList(
            conv_norm_act(channels, channels, k, dilation=d, **kw) for k, d in zip(kernels, dil)
        )
        self.stage2 = nn.ModuleList(
            conv_norm_act(n * channels, channels, k, dilation=d, **kw) for k, d in zip(kernels, dil)
        )
        self.fuse = nn.Conv2d(n * channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C, H, W)``.

        Raises:
            ShapeError: ``x`` is not ``(B, channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        check_feature_map(x, self.channels, "x")
        s = torch.cat([path(x) for path in self.stage1], dim=1)
        t = torch.cat([path(s) for path in self.stage2], dim=1)
        return x + self.fuse(t)
