"""Adaptively spatial feature fusion (Liu et al., "Learning Spatial Fusion for Single-Shot Object Detection", 2019)."""

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

__all__ = ["ASFF", "resize_to"]


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, C, h, w)`` to ``size``: nearest upsampling, or max pooling to a smaller size.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> resize_to(x, (2, 2)).flatten().tolist()
        [5.0, 7.0, 13.0, 15.0]
    """
    h, w = x.shape[2:]
    if (h, w) == tuple(size):
        return x
    if h >= size[0] and w >= size[1]:
        return F.adaptive_max_pool2d(x, size)
    return F.interpolate(x, size=size, mode="nearest")


@register("layer", "asff")
class ASFF(nn.Module):
    """Fuse pyramid levels at one level with per-position softmax weights over the levels.

    For target level ``l``: every level ``i`` goes through ``1×1 conv → norm → act`` to ``channels`` and
    is resized to level ``l``'s size (nearest upsampling or max pooling), giving ``x_i``; each ``x_i`` is
    compressed to ``compress_channels`` by a ``1×1`` conv, the concatenation is mapped to one logit per
    level by a ``1×1`` conv, and ``softmax`` over the levels gives ``w_i(p)``. The output is
    ``conv3×3(Σ_i w_i(p) x_i(p))``.

    Args:
        in_channels: channels of each pyramid level, finest first (three in the paper).
        level: the level whose size the output has (0 = finest).
        channels: width of the fused map (default ``in_channels[level]``).
        compress_channels: width of the per-level weight features (16 in the paper).
        act_layer: activation class.
        norm_layer: norm class.

    Shape:
        ``forward(x_0, x_1, …)`` with ``x_i`` ``(B, in_channels[i], H_i, W_i)`` → ``(B, channels, H_l, W_l)``.

    Example:
        >>> import torch
        >>> asff = ASFF((8, 16, 32), level=1)
        >>> xs = torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8), torch.rand(2, 32, 4, 4)
        >>> asff(*xs).shape, asff.fusion_weights(*xs).sum(1).allclose(torch.ones(2, 8, 8))
        (torch.Size([2, 16, 8, 8]), True)
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (256, 512, 1024),
        *,
        level: int = 0,
        channels: int | None = None,
        compress_channels: int = 16,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_ints(in_channels, "in_channels")
        if len(self.in_channels) < 2:
            raise OptionError(f"in_channels: expected at least 2 levels, got {in_channels!r}")
        check_int(level, "level", low=0)
        if level >= len(self.in_channels):
            raise OptionError(f"level: expected 0..{len(self.in_channels) - 1}, got {level}")
        self.level = level
        self.channels = check_int(channels or self.in_channels[level], "channels")
        compress = check_int(compress_channels, "compress_channels")
        kw = {"act_layer": act_layer, "norm_layer": norm_layer}
        self.adapt = nn.ModuleList(
            nn.Identity()
            if c == self.channels and i == level
            else conv_norm_act(c, self.channels, 1, **kw)
            for i, c in enumerate(self.in_channels)
        )
        self.compress = nn.ModuleList(
            conv_norm_act(self.channels, compress, 1, **kw) for _ in self.in_channels
        )
        self.weight = nn.Conv2d(compress * len(self.in_channels), len(self.in_channels), 1)
        self.expand = conv_norm_act(self.channels, self.channels, 3, **kw)

    def _resized(self, xs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        if len(xs) != len(self.in_channels):
            raise ShapeError(
                f"inputs: expected {len(self.in_channels)} pyramid levels, got {len(xs)}"
            )
        dims: dict[str, int] = {}
        for i, (x, c) in enumerate(zip(xs, self.in_channels)):
            check_feature_map(x, c, f"inputs[{i}]", dims, height=f"H{i}", width=f"W{i}")
        size = tuple(xs[self.level].shape[2:])
        return [resize_to(adapt(x), size) for adapt, x in zip(self.adapt, xs)]

    def _weights(self, resized: list[torch.Tensor]) -> torch.Tensor:
        feats = torch.cat([comp(x) for comp, x in zip(self.compress, resized)], dim=1)
        return self.weight(feats).softmax(dim=1)

    def fusion_weights(self, *xs: torch.Tensor) -> torch.Tensor:
        """The ``(B, levels, H_l, W_l)`` softmax weights (they sum to 1 at every position)."""
        return self._weights(self._resized(xs))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Fuse the levels ``xs`` (finest first) at :attr:`level`.

        Raises:
            ShapeError: wrong number of levels, channels or batch sizes.
            DTypeError: a level is not floating point.
        """
        resized = self._resized(xs)
        w = self._weights(resized)
        fused = sum(w[:, i : i + 1] * x for i, x in enumerate(resized))
        return self.expand(fused)
