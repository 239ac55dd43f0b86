"""Squeeze-and-excitation (Hu et al., CVPR 2018): a per-channel gate from globally pooled features."""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.layers._common import LayerType, check_feature_map, check_int, make_gate

__all__ = ["SqueezeExcite", "make_divisible", "reduced_channels"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``).

    Example:
        >>> make_divisible(64 / 16), make_divisible(20, 8), make_divisible(3.0, 1)
        (8, 24, 3)
    """
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def reduced_channels(
    channels: int, rd_ratio: float, rd_channels: int | None, rd_divisor: int
) -> int:
    """The bottleneck width: ``rd_channels`` if given, else ``channels * rd_ratio`` rounded to ``rd_divisor``."""
    check_int(channels, "channels")
    if rd_channels is not None:
        return check_int(rd_channels, "rd_channels")
    check_positive(rd_ratio, "rd_ratio")
    return make_divisible(channels * rd_ratio, check_int(rd_divisor, "rd_divisor"))


@register("layer", "se")
class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: ``x * gate(fc2(act(norm(fc1(mean_hw(x))))))``.

    Same parameters and state-dict keys as timm's ``SEModule`` (``fc1``, ``bn``, ``fc2``), so its
    weights load unchanged and give the same output.

    Args:
        channels: input (and output) channels ``C``.
        rd_ratio: bottleneck width as a fraction of ``channels`` (rounded to ``rd_divisor``).
        rd_channels: bottleneck width, overrides ``rd_ratio``.
        rd_divisor: the bottleneck width is a multiple of this (and at least this).
        act_layer: activation class between the two 1×1 convolutions.
        norm_layer: optional norm class on the bottleneck (``None``: identity, as in the paper).
        gate_layer: ``"sigmoid"`` (paper), ``"hard_sigmoid"``, ``"tanh"`` or a layer class.
        bias: biases in the 1×1 convolutions.
        device: device of the parameters (timm's blocks pass it).
        dtype: dtype of the parameters.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``; dtype and device follow the input.

    Example:
        >>> import torch
        >>> se = SqueezeExcite(32, rd_ratio=1 / 4)
        >>> se.fc1.out_channels, se(torch.rand(2, 32, 5, 5)).shape
        (8, torch.Size([2, 32, 5, 5]))
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType | None = None,
        gate_layer: str | LayerType = "sigmoid",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc1 = nn.Conv2d(channels, rd, kernel_size=1, bias=bias)
        self.bn = norm_layer(rd) if norm_layer is not None else nn.Identity()
        self.act = act_layer()
        self.fc2 = nn.Conv2d(rd, channels, kernel_size=1, bias=bias)
        self.gate = make_gate(gate_layer)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, C, 1, 1)`` channel gate for ``x``."""
        check_feature_map(x, self.channels, "x")
        s = x.mean((2, 3), keepdim=True)
        return self.gate(self.fc2(self.act(self.bn(self.fc1(s)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``(B, C, H, W)`` ``x``.

        Raises:
            ShapeError: ``x`` is not ``(B, channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        return x * self.attention(x)
