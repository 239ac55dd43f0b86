"""A YOLOv4-style neck and head (Bochkovskiy et al., 2020): SPP, PAN and decoupled outputs per level.

The decoupled head (separate classification and box/objectness branches) is YOLOX's (Ge et al., 2021).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
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

__all__ = ["SPP", "YOLOv4Head"]

_LEAKY = functools.partial(nn.LeakyReLU, 0.1)


class SPP(nn.Module):
    """Spatial pyramid pooling (YOLOv4's): ``1×1`` halve, ``[x, maxpool_k(x) …]`` (stride 1), ``1×1`` back.

    Example:
        >>> SPP(16)(torch.rand(2, 16, 7, 7)).shape
        torch.Size([2, 16, 7, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        pool_sizes: tuple[int, ...] = (5, 9, 13),
        act_layer: LayerType = _LEAKY,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.pool_sizes = check_ints(pool_sizes, "pool_sizes")
        hidden = max(1, channels // 2)
        kw = {"act_layer": act_layer, "norm_layer": norm_layer}
        self.reduce = conv_norm_act(channels, hidden, 1, **kw)
        self.expand = conv_norm_act(hidden * (1 + len(self.pool_sizes)), channels, 1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, "x")
        x = self.reduce(x)
        pooled = [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in self.pool_sizes]
        return self.expand(torch.cat([x, *pooled], dim=1))


def _block(c_in: int, c_out: int, **kw) -> nn.Sequential:
    """YOLOv4's neck block: ``1×1 → 3×3 → 1×1``."""
    return nn.Sequential(
        conv_norm_act(c_in, c_out, 1, **kw),
        conv_norm_act(c_out, c_out, 3, **kw),
        conv_norm_act(c_out, c_out, 1, **kw),
    )


class _DecoupledHead(nn.Module):
    def __init__(self, c_in: int, width: int, num_anchors: int, num_classes: int, **kw) -> None:
        super().__init__()
        self.stem = conv_norm_act(c_in, width, 1, **kw)
        self.cls_convs = nn.Sequential(
            conv_norm_act(width, width, 3, **kw), conv_norm_act(width, width, 3, **kw)
        )
        self.reg_convs = nn.Sequential(
            conv_norm_act(width, width, 3, **kw), conv_norm_act(width, width, 3, **kw)
        )
        self.cls = nn.Conv2d(width, num_anchors * num_classes, 1)
        self.box = nn.Conv2d(width, num_anchors * 4, 1)
        self.obj = nn.Conv2d(width, num_anchors, 1)
        prior = -math.log((1 - 0.01) / 0.01)  # a prior probability of 0.01 for objects and classes
        nn.init.constant_(self.cls.bias, prior)
        nn.init.constant_(self.obj.bias, prior)
        self.num_anchors = num_anchors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        reg = self.reg_convs(x)
        b, _, h, w = x.shape
        parts = [self.box(reg), self.obj(reg), self.cls(self.cls_convs(x))]
        # (B, A·k, H, W) each → (B, A, H, W, 4 + 1 + C)
        parts = [p.view(b, self.num_anchors, -1, h, w).permute(0, 1, 3, 4, 2) for p in parts]
        return torch.cat(parts, dim=-1)


@register("layer", "yolov4_head")
class YOLOv4Head(nn.Module):
    """SPP on the coarsest level, a PAN neck (top-down then bottom-up) and a decoupled head per level.

    Neck: ``p5 = SPP(c5)``; top-down ``t4 = block([up(1×1(p5)), 1×1(c4)])``,
    ``n3 = block([up(1×1(t4)), 1×1(c3)])``; bottom-up ``n4 = block([down(n3), t4])``,
    ``n5 = block([down(n4), p5])`` (``up``: nearest ×2; ``down``: a stride-2 ``3×3`` conv). Each of
    ``n3, n4, n5`` goes through a decoupled head: a ``1×1`` stem, a classification branch and a
    box + objectness branch (two ``3×3`` convs each).

    Args:
        in_channels: ``(C3, C4, C5)``, channels of the backbone maps at strides 8, 16, 32.
        num_classes: object classes ``K``.
        num_anchors: anchors per position ``A`` (3 in YOLOv4; 1 for anchor-free heads).
        head_width: width of the decoupled heads (default ``C3``).
        act_layer: activation class (LeakyReLU 0.1 in YOLOv4's neck).
        norm_layer: norm class.

    Shape:
        ``forward(c3, c4, c5)`` with ``c3 (B, C3, H, W)``, ``c4 (B, C4, H/2, W/2)``,
        ``c5 (B, C5, H/4, W/4)`` → ``(B, A·(H·W + H·W/4 + H·W/16), 4 + 1 + K)``: per anchor the raw box
        regression (4), objectness logit (1) and class logits (K), level by level, each level in
        ``(anchor, row, column)`` order. :meth:`forward_levels` gives the per-level
        ``(B, A, H_l, W_l, 5 + K)`` maps.

    Example:
        >>> import torch
        >>> head = YOLOv4Head((16, 32, 64), num_classes=3)
        >>> c3, c4, c5 = torch.rand(2, 16, 16, 16), torch.rand(2, 32, 8, 8), torch.rand(2, 64, 4, 4)
        >>> head(c3, c4, c5).shape
        torch.Size([2, 1008, 8])
    """

    def __init__(
        self,
        in_channels: tuple[int, int, int] = (256, 512, 1024),
        *,
        num_classes: int = 80,
        num_anchors: int = 3,
        head_width: int | None = None,
        act_layer: LayerType = _LEAKY,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = check_ints(in_channels, "in_channels", length=3)
        self.num_classes = check_int(num_classes, "num_classes")
        self.num_anchors = check_int(num_anchors, "num_anchors")
        c3, c4, c5 = self.in_channels
        width = check_int(head_width or c3, "head_width")
        kw = {"act_layer": act_layer, "norm_layer": norm_layer}
        self.spp = SPP(c5, **kw)
        self.lat5 = conv_norm_act(c5, c4, 1, **kw)
        self.lat4 = conv_norm_act(c4, c4, 1, **kw)
        self.td4 = _block(2 * c4, c4, **kw)
        self.lat4_up = conv_norm_act(c4, c3, 1, **kw)
        self.lat3 = conv_norm_act(c3, c3, 1, **kw)
        self.td3 = _block(2 * c3, c3, **kw)
        self.down3 = conv_norm_act(c3, c4, 3, stride=2, **kw)
        self.bu4 = _block(2 * c4, c4, **kw)
        self.down4 = conv_norm_act(c4, c5, 3, stride=2, **kw)
        self.bu5 = _block(2 * c5, c5, **kw)
        self.heads = nn.ModuleList(
            _DecoupledHead(c, width, self.num_anchors, self.num_classes, **kw)
            for c in self.in_channels
        )

    def _check(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> None:
        dims = check_feature_map(c3, self.in_channels[0], "c3")
        check_feature_map(c4, self.in_channels[1], "c4", {"B": dims["B"]}, height="h4", width="w4")
        check_feature_map(c5, self.in_channels[2], "c5", {"B": dims["B"]}, height="h5", width="w5")
        sizes = [tuple(t.shape[2:]) for t in (c3, c4, c5)]
        for (name, fine), coarse in zip((("c4", sizes[0]), ("c5", sizes[1])), sizes[1:]):
            if coarse != ((fine[0] + 1) // 2, (fine[1] + 1) // 2):
                raise ShapeError(
                    f"{name}: expected half the previous level's size "
                    f"{((fine[0] + 1) // 2, (fine[1] + 1) // 2)}, got {coarse}"
                )

    def forward_levels(
        self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor
    ) -> list[torch.Tensor]:
        """Per-level predictions ``[(B, A, H_l, W_l, 5 + K)]`` for strides 8, 16, 32.

        Raises:
            ShapeError: wrong channels, batch sizes, or levels that are not successive halvings.
            DTypeError: an input is not floating point.
        """
        self._check(c3, c4, c5)
        p5 = self.spp(c5)
        up5 = F.interpolate(self.lat5(p5), size=c4.shape[2:], mode="nearest")
        t4 = self.td4(torch.cat([up5, self.lat4(c4)], dim=1))
        up4 = F.interpolate(self.lat4_up(t4), size=c3.shape[2:], mode="nearest")
        n3 = self.td3(torch.cat([up4, self.lat3(c3)], dim=1))
        n4 = self.bu4(torch.cat([self.down3(n3), t4], dim=1))
        n5 = self.bu5(torch.cat([self.down4(n4), p5], dim=1))
        return [head(n) for head, n in zip(self.heads, (n3, n4, n5))]

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        """All predictions as one ``(B, anchors, 5 + K)`` tensor (see Shape)."""
        levels = self.forward_levels(c3, c4, c5)
        return torch.cat([lv.flatten(1, 3) for lv in levels], dim=1)
