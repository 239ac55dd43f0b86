"""CBAM (Woo et al., ECCV 2018): channel then spatial attention; attention placed around a convolution."""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option
from lookalike.core.errors import OptionError
from lookalike.layers._common import (
    GatedAttention,
    LayerType,
    check_feature_map,
    check_int,
    conv_norm_act,
    make_gate,
)
from lookalike.layers.se import SqueezeExcite, reduced_channels

__all__ = ["CBAM", "PLACEMENTS", "AttentionConv", "ChannelAttention", "SpatialAttention"]


class ChannelAttention(GatedAttention):
    """CBAM's channel attention: a shared MLP on the average- and max-pooled vectors, summed, gated.

    Same keys as timm's ``ChannelAttn`` (``fc1``, ``fc2``).

    Example:
        >>> import torch
        >>> ChannelAttention(16)(torch.rand(2, 16, 4, 4)).shape
        torch.Size([2, 16, 4, 4])
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer: LayerType = nn.ReLU,
        gate_layer: str | LayerType = "sigmoid",
        mlp_bias: bool = False,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=mlp_bias)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=mlp_bias)
        self.gate = make_gate(gate_layer)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, C, 1, 1)`` channel gate."""
        check_feature_map(x, self.channels, "x")
        avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        mx = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))
        return self.gate(avg + mx)


class SpatialAttention(GatedAttention):
    """CBAM's spatial attention: a ``k×k`` conv (+ BatchNorm) on the channel mean and max maps, gated.

    Same keys as timm's ``SpatialAttn`` (``conv.conv``, ``conv.bn``).

    Example:
        >>> import torch
        >>> SpatialAttention(kernel_size=3)(torch.rand(2, 5, 6, 6)).shape
        torch.Size([2, 5, 6, 6])
    """

    def __init__(
        self,
        *,
        kernel_size: int = 7,
        norm_layer: LayerType | None = nn.BatchNorm2d,
        gate_layer: str | LayerType = "sigmoid",
    ) -> None:
        super().__init__()
        if check_int(kernel_size, "kernel_size") % 2 == 0:
            raise OptionError(f"kernel_size: expected an odd integer, got {kernel_size!r}")
        seq = conv_norm_act(2, 1, kernel_size, act_layer=None, norm_layer=norm_layer)
        self.conv = nn.Module()
        self.conv.conv = seq[0]
        self.conv.bn = seq[1] if norm_layer is not None else nn.Identity()
        self.gate = make_gate(gate_layer)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, 1, H, W)`` spatial gate."""
        check_feature_map(x, "C", "x")
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.gate(self.conv.bn(self.conv.conv(pooled)))


@register("layer", "cbam")
class CBAM(nn.Module):
    """Convolutional block attention module: :class:`ChannelAttention` then :class:`SpatialAttention`.

    Same parameters and keys as timm's ``CbamModule`` (``channel.fc1``, ``channel.fc2``,
    ``spatial.conv.conv``, ``spatial.conv.bn``).

    Args:
        channels: input channels ``C``.
        rd_ratio: channel-MLP bottleneck as a fraction of ``channels``.
        rd_channels: bottleneck width, overrides ``rd_ratio``.
        rd_divisor: the bottleneck width is a multiple of this.
        spatial_kernel_size: kernel of the spatial attention convolution (odd).
        act_layer: activation class of the channel MLP.
        gate_layer: gate of both attentions (``"sigmoid"`` in the paper).
        mlp_bias: biases in the channel MLP.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``.

    Example:
        >>> import torch
        >>> CBAM(32)(torch.rand(2, 32, 7, 7)).shape
        torch.Size([2, 32, 7, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        act_layer: LayerType = nn.ReLU,
        gate_layer: str | LayerType = "sigmoid",
        mlp_bias: bool = False,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.channel = ChannelAttention(
            channels,
            rd_ratio=rd_ratio,
            rd_channels=rd_channels,
            rd_divisor=rd_divisor,
            act_layer=act_layer,
            gate_layer=gate_layer,
            mlp_bias=mlp_bias,
        )
        self.spatial = SpatialAttention(kernel_size=spatial_kernel_size, gate_layer=gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel attention, then spatial attention on its output.

        Raises:
            ShapeError: ``x`` is not ``(B, channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        check_feature_map(x, self.channels, "x")
        return self.spatial(self.channel(x))


#: Where :class:`AttentionConv` puts the attention relative to its convolution.
PLACEMENTS = ("before", "after", "both")
_ATTENTIONS = {"se": SqueezeExcite, "cbam": CBAM}


class AttentionConv(nn.Module):
    """A ``conv → norm → act`` block with attention before it, after it, or both (one block, three placements).

    - ``"before"``: ``conv(attn(x))`` — the attention re-weights the input channels/positions;
    - ``"after"``: ``attn(conv(x))`` — the attention re-weights the block's output (SENet, CBAM);
    - ``"both"``: ``attn_out(conv(attn_in(x)))`` with two independent attention modules.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: convolution kernel (odd, "same" padding).
        stride: convolution stride.
        attention: ``"se"`` or ``"cbam"``.
        placement: one of :data:`PLACEMENTS`.
        act_layer: activation class of the convolution block.
        norm_layer: norm class of the convolution block.

    Example:
        >>> import torch
        >>> block = AttentionConv(8, 16, attention="cbam", placement="both", stride=2)
        >>> block(torch.rand(2, 8, 8, 8)).shape
        torch.Size([2, 16, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        attention: str = "se",
        placement: str = "after",
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        check_option(attention, sorted(_ATTENTIONS), "attention")
        check_option(placement, PLACEMENTS, "placement")
        self.in_channels = check_int(in_channels, "in_channels")
        check_int(out_channels, "out_channels")
        self.placement = placement
        make = _ATTENTIONS[attention]
        before = placement in ("before", "both")
        after = placement in ("after", "both")
        self.attn_in = make(in_channels) if before else nn.Identity()
        self.conv = conv_norm_act(
            in_channels,
            out_channels,
            check_int(kernel_size, "kernel_size"),
            stride=check_int(stride, "stride"),
            act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.attn_out = make(out_channels) if after else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.in_channels, "x")
        return self.attn_out(self.conv(self.attn_in(x)))
