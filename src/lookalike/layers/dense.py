"""DenseNet building blocks (Huang et al., CVPR 2017): the dense block and the transition layer.

EfficientNet's MBConv is not rewritten here: use timm's ``InvertedResidual`` (it accepts our
:class:`~lookalike.layers.se.SqueezeExcite` as ``se_layer``)::

    >>> import functools, torch
    >>> from timm.models._efficientnet_blocks import InvertedResidual
    >>> from lookalike.layers.se import SqueezeExcite
    >>> se = functools.partial(SqueezeExcite, rd_ratio=0.25, rd_divisor=1)
    >>> mbconv = InvertedResidual(16, 16, exp_ratio=4.0, se_layer=se)
    >>> mbconv(torch.rand(2, 16, 8, 8)).shape
    torch.Size([2, 16, 8, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError
from lookalike.layers._common import LayerType, check_feature_map, check_int

__all__ = ["DenseBlock", "DenseLayer", "Transition"]


class DenseLayer(nn.Module):
    """One dense layer: ``[norm → act → 1×1 conv (bn_size·k)] → norm → act → 3×3 conv (k)``.

    The bracketed bottleneck is DenseNet-B; ``bn_size=None`` leaves it out. State-dict keys match
    torchvision's ``_DenseLayer`` (``norm1``, ``conv1``, ``norm2``, ``conv2``).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        growth_rate: int,
        bn_size: int | None = 4,
        drop_rate: float = 0.0,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        mid = in_channels
        if bn_size is not None:
            mid = check_int(bn_size, "bn_size") * growth_rate
            self.norm1 = norm_layer(in_channels)
            self.relu1 = act_layer()
            self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bottleneck = bn_size is not None
        self.norm2 = norm_layer(mid)
        self.relu2 = act_layer()
        self.conv2 = nn.Conv2d(mid, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bottleneck:
            x = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(x)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


@register("layer", "dense_block")
class DenseBlock(nn.Module):
    """A dense block: each layer sees the concatenation of the input and every earlier layer's output.

    Args:
        in_channels: input channels ``C``.
        num_layers: dense layers ``L``.
        growth_rate: channels each layer adds ``k``.
        bn_size: bottleneck width factor (DenseNet-B: a 1×1 conv to ``bn_size·k`` first); ``None`` for
            the plain dense layer.
        drop_rate: dropout after each layer (training only).
        act_layer: activation class.
        norm_layer: norm class.

    Shape:
        ``(B, C, H, W)`` → ``(B, C + L·k, H, W)``; the first ``C`` channels are the input unchanged.

    Convention:
        Layer ``i`` is ``denselayer{i+1}``, as in torchvision's ``_DenseBlock``, whose state dicts load
        unchanged.

    Example:
        >>> import torch
        >>> block = DenseBlock(16, num_layers=3, growth_rate=8)
        >>> block.out_channels, block(torch.rand(2, 16, 6, 6)).shape
        (40, torch.Size([2, 40, 6, 6]))
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_layers: int = 4,
        growth_rate: int = 32,
        bn_size: int | None = 4,
        drop_rate: float = 0.0,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        check_int(num_layers, "num_layers")
        check_int(growth_rate, "growth_rate")
        check_positive(drop_rate, "drop_rate", strict=False)
        if drop_rate >= 1:
            raise OptionError(f"drop_rate: expected a probability in [0, 1), got {drop_rate!r}")
        self.out_channels = in_channels + num_layers * growth_rate
        for i in range(num_layers):
            layer = DenseLayer(
                in_channels + i * growth_rate,
                growth_rate=growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                act_layer=act_layer,
                norm_layer=norm_layer,
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C + L·k, H, W)``.

        Raises:
            ShapeError: ``x`` is not ``(B, in_channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        check_feature_map(x, self.in_channels, "x")
        features = x
        for layer in self.children():
            features = torch.cat([features, layer(features)], dim=1)
        return features


@register("layer", "transition")
class Transition(nn.Module):
    """DenseNet transition: ``norm → act → 1×1 conv (⌊θ·C⌋) → 2×2 average pooling`` (θ: compression).

    Args:
        in_channels: input channels ``C``.
        out_channels: output channels (default ``⌊compression · C⌋``, at least 1).
        compression: θ in ``(0, 1]`` (DenseNet-C uses 0.5).
        act_layer: activation class.
        norm_layer: norm class.

    Shape:
        ``(B, C, H, W)`` → ``(B, out_channels, ⌊H/2⌋, ⌊W/2⌋)``; keys as torchvision's ``_Transition``.

    Example:
        >>> import torch
        >>> Transition(40)(torch.rand(2, 40, 6, 6)).shape
        torch.Size([2, 20, 3, 3])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        out_channels: int | None = None,
        compression: float = 0.5,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        check_positive(compression, "compression")
        if compression > 1:
            raise OptionError(f"compression: expected a number in (0, 1], got {compression!r}")
        if out_channels is None:
            out_channels = max(1, int(compression * in_channels))
        self.out_channels = check_int(out_channels, "out_channels")
        self.norm = norm_layer(in_channels)
        self.relu = act_layer()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.in_channels, "x")
        return self.pool(self.conv(self.relu(self.norm(x))))
