"""Fusing feature maps of the same size: concatenation (+ 1×1 projection) or a sum of projections."""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.errors import ShapeError
from lookalike.layers._common import (
    LayerType,
    check_feature_map,
    check_int,
    check_ints,
    conv_norm_act,
)

__all__ = ["AddFusion", "CatFusion"]


def _check_inputs(xs: tuple[torch.Tensor, ...], channels: tuple[int, ...]) -> None:
    if len(xs) != len(channels):
        raise ShapeError(f"inputs: expected {len(channels)} feature maps, got {len(xs)}")
    dims: dict[str, int] = {}
    for i, (x, c) in enumerate(zip(xs, channels)):
        check_feature_map(x, c, f"inputs[{i}]", dims)


def _projection(
    c_in: int, c_out: int, act_layer: LayerType | None, norm_layer: LayerType | None
) -> nn.Module:
    return conv_norm_act(c_in, c_out, 1, act_layer=act_layer, norm_layer=norm_layer)


@register("layer", "cat_fusion")
class CatFusion(nn.Module):
    """Concatenate feature maps along channels, then (optionally) project with ``1×1 conv → norm → act``.

    Args:
        in_channels: channels of each input, in call order.
        out_channels: projection width (``None``: no projection, ``sum(in_channels)`` channels out).
        act_layer: activation of the projection (``None``: none).
        norm_layer: norm of the projection (``None``: a biased convolution instead).

    Shape:
        ``(B, C_i, H, W)`` for each input → ``(B, out_channels, H, W)``; every input has the same ``B, H, W``.

    Example:
        >>> import torch
        >>> fuse = CatFusion((8, 4), out_channels=6)
        >>> fuse(torch.rand(2, 8, 5, 5), torch.rand(2, 4, 5, 5)).shape
        torch.Size([2, 6, 5, 5])
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (64, 64),
        *,
        out_channels: int | None = None,
        act_layer: LayerType | None = nn.ReLU,
        norm_layer: LayerType | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_ints(in_channels, "in_channels")
        total = sum(self.in_channels)
        if out_channels is None:
            self.proj: nn.Module = nn.Identity()
            self.out_channels = total
        else:
            self.out_channels = check_int(out_channels, "out_channels")
            self.proj = _projection(total, out_channels, act_layer, norm_layer)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Fuse the feature maps ``xs`` (as many as ``in_channels``).

        Raises:
            ShapeError: wrong number of inputs, channels, or differing ``B``, ``H``, ``W``.
        """
        _check_inputs(xs, self.in_channels)
        return self.proj(torch.cat(xs, dim=1))


@register("layer", "add_fusion")
class AddFusion(nn.Module):
    """Sum feature maps, each first projected to ``out_channels`` by ``1×1 conv → norm`` if needed.

    An input that already has ``out_channels`` channels is added unchanged (no parameters); the sum
    then goes through ``act_layer``.

    Args:
        in_channels: channels of each input, in call order.
        out_channels: width of the sum (default: the first input's channels).
        act_layer: activation after the sum (``None``: none).
        norm_layer: norm of the projections (``None``: biased convolutions).

    Example:
        >>> import torch
        >>> fuse = AddFusion((8, 8), act_layer=None)
        >>> a, b = torch.rand(2, 8, 5, 5), torch.rand(2, 8, 5, 5)
        >>> torch.equal(fuse(a, b), a + b)
        True
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (64, 64),
        *,
        out_channels: int | None = None,
        act_layer: LayerType | None = nn.ReLU,
        norm_layer: LayerType | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_ints(in_channels, "in_channels")
        out = (
            self.in_channels[0] if out_channels is None else check_int(out_channels, "out_channels")
        )
        self.out_channels = out
        self.proj = nn.ModuleList(
            nn.Identity() if c == out else _projection(c, out, None, norm_layer)
            for c in self.in_channels
        )
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Fuse the feature maps ``xs`` (as many as ``in_channels``).

        Raises:
            ShapeError: wrong number of inputs, channels, or differing ``B``, ``H``, ``W``.
        """
        _check_inputs(xs, self.in_channels)
        total = self.proj[0](xs[0])
        for proj, x in zip(self.proj[1:], xs[1:]):
            total = total + proj(x)
        return self.act(total)
