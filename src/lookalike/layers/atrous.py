"""SODNet's blocks (Qu et al., "Small Object Detection Method Based on Adaptive Spatial Parallel
Convolution and Fast Multi-Scale Fusion", Remote Sensing 2022): ASPConv and FMF."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers._common import (
    LayerType,
    check_feature_map,
    check_int,
    check_ints,
    conv_norm_act,
)

__all__ = ["ASPConv", "FastMultiScaleFusion"]


@register("layer", "aspconv")
class ASPConv(nn.Module):
    """Atrous spatial parallel convolution: channel splits, cascaded dilated 3×3 convs, 1×1 fusion.

    The input is split into ``n = len(dilations)`` equal channel groups ``x_1..x_n``; group ``j`` is
    convolved by a 3×3 convolution with dilation ``d_j`` after adding the previous group's output
    (``y_1 = f_1(x_1)``, ``y_j = f_j(x_j + y_{j-1})``), so the receptive field grows along the cascade;
    the concatenated ``y`` are fused by ``1×1 conv → norm → act`` (SODNet's split-fusion) and added to
    the input. Splitting keeps the cost of ``n`` receptive fields at about that of one full conv.

    Args:
        channels: input (and output) channels ``C`` (divisible by ``len(dilations)``).
        dilations: dilation of each group's 3×3 convolution.
        act_layer: activation class.
        norm_layer: norm class.

    Example:
        >>> import torch
        >>> ASPConv(16, dilations=(1, 2, 3, 4))(torch.rand(2, 16, 12, 12)).shape
        torch.Size([2, 16, 12, 12])
    """

    def __init__(
        self,
        channels: int,
        *,
        dilations: tuple[int, ...] = (1, 2, 3, 4),
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.dilations = check_ints(dilations, "dilations")
        n = len(self.dilations)
        if channels % n:
            raise OptionError(f"dilations: {n} groups do not divide channels={channels}")
        width = channels // n
        kw = {"act_layer": act_layer, "norm_layer": norm_layer}
        self.branches = nn.ModuleList(
            conv_norm_act(width, width, 3, dilation=d, **kw) for d in self.dilations
        )
        self.fuse = conv_norm_act(channels, channels, 1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C, H, W)``.

        Raises:
            ShapeError: ``x`` is not ``(B, channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        check_feature_map(x, self.channels, "x")
        outs: list[torch.Tensor] = []
        for part, branch in zip(x.chunk(len(self.branches), dim=1), self.branches):
            outs.append(branch(part if not outs else part + outs[-1]))
        return x + self.fuse(torch.cat(outs, dim=1))


@register("layer", "fmf")
class FastMultiScaleFusion(nn.Module):
    """Fast multi-scale fusion: upsample a coarse map two ways (nearest, sub-pixel) and fuse with a fine one.

    ``up_n = nearest(conv1×1(low))`` and ``up_s = pixel_shuffle(conv1×1(low))`` (a ``1×1`` conv to
    ``channels·scale²`` then :func:`torch.nn.functional.pixel_shuffle`) bring the coarse map to the fine
    resolution; ``[conv1×1(high), up_n, up_s]`` is fused by ``3×3 conv → norm → act``.

    Args:
        in_channels: ``(C_high, C_low)``: channels of the fine and of the coarse map.
        channels: output channels (default ``C_high``).
        scale: resolution ratio between the maps (the coarse map is exactly ``scale`` times smaller).
        act_layer: activation class.
        norm_layer: norm class.

    Shape:
        ``forward(high (B, C_high, H, W), low (B, C_low, H/scale, W/scale))`` → ``(B, channels, H, W)``.

    Example:
        >>> import torch
        >>> fmf = FastMultiScaleFusion((8, 16))
        >>> fmf(torch.rand(2, 8, 10, 10), torch.rand(2, 16, 5, 5)).shape
        torch.Size([2, 8, 10, 10])
    """

    def __init__(
        self,
        in_channels: tuple[int, int] = (128, 256),
        *,
        channels: int | None = None,
        scale: int = 2,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_ints(in_channels, "in_channels", length=2)
        c_high, c_low = self.in_channels
        self.channels = check_int(channels or c_high, "channels")
        self.scale = check_int(scale, "scale", low=2)
        c = self.channels
        kw = {"act_layer": act_layer, "norm_layer": norm_layer}
        self.high = conv_norm_act(c_high, c, 1, **kw)
        self.nearest = conv_norm_act(c_low, c, 1, **kw)
        self.subpixel = conv_norm_act(c_low, c * self.scale**2, 1, **kw)
        self.fuse = conv_norm_act(3 * c, c, 3, **kw)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """Fuse the fine map ``high`` with the coarse map ``low``.

        Raises:
            ShapeError: wrong channels or batch, or ``low`` not exactly ``scale`` times smaller.
            DTypeError: an input is not floating point.
        """
        dims = check_feature_map(high, self.in_channels[0], "high")
        check_feature_map(low, self.in_channels[1], "low", {"B": dims["B"]}, height="h", width="w")
        if (high.shape[2], high.shape[3]) != (low.shape[2] * self.scale, low.shape[3] * self.scale):
            raise ShapeError(
                f"low: expected spatial size {high.shape[2] / self.scale:g}x{high.shape[3] / self.scale:g} "
                f"(high's / {self.scale}), got {low.shape[2]}x{low.shape[3]}"
            )
        up_n = F.interpolate(self.nearest(low), scale_factor=self.scale, mode="nearest")
        up_s = F.pixel_shuffle(self.subpixel(low), self.scale)
        return self.fuse(torch.cat([self.high(high), up_n, up_s], dim=1))
