"""``rga``: a timm ResNet with relation-aware global attention after every stage, BNNeck, 2048/512-d.

Zhang, Lan, Zeng, Jin, Chen, "Relation-Aware Global Attention for Person Re-identification", CVPR
2020: an RGA-SC module (spatial, then channel attention; :mod:`lookalike.layers.rga`) follows each of
the four stages of a ResNet-50 whose last stride is 1; the last feature map is average pooled and
passed through a BatchNorm "neck" (BNNeck: the triplet loss sees the feature before it in the
authors' code, the classifier and the retrieval the one after it; here the descriptor returns the
normalised feature after it and the classifier lives in the loss).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.descriptors.image._backbone import check_counts
from lookalike.descriptors.reid._backbone import ReidNetwork, resnet_stages
from lookalike.layers.rga import RGAModule

__all__ = ["RGANet"]


def _clipped(channels: int, size: tuple[int, int], reduction: int, gate: int) -> dict[str, int]:
    """RGA ratios clipped so that every embedding of a small feature map keeps a channel."""
    check_counts(reduction=reduction, gate_reduction=gate)
    smallest = min(channels, size[0] * size[1])
    reduction = min(reduction, smallest)
    return {"reduction": reduction, "gate_reduction": min(gate, 1 + smallest // reduction)}


@register("descriptor", "rga")
class RGANet(ReidNetwork):
    """ResNet + RGA-S/C after stages 1-4 + BNNeck: ``(B, 3, H, W)`` crops to ``(B, dim)`` rows.

    Args:
        backbone: any timm ResNet name (``resnet50`` as in the paper, ``resnet18`` for CPUs).
        input_size: ``(height, width)`` the crops are resized to (256 x 128 in the paper).
        last_stride: 1 (the paper) or 2.
        width: multiplier of the ResNet's widths (1: the named network; < 1 for CPU training).
        spatial: RGA-S in every module.
        channel: RGA-C in every module (both: RGA-SC, the paper's best).
        stages: which stages (1-4) get a module (all four in the paper; ``()``: the plain baseline).
        reduction: ``s`` of the RGA embeddings (8 in the paper).
        gate_reduction: hidden-width divisor of the RGA gate (8 in the paper). Both are clipped
            per stage so that every embedding keeps at least one channel (small inputs only: at
            256 x 128 with a ResNet-50 nothing is clipped).
        dim: descriptor size: the backbone's channels (2048 for ResNet-50; BNNeck alone) or fewer
            (a bias-free linear projection before the BNNeck, e.g. 512).
        pretrained: let timm download the ResNet's ImageNet weights (explicit request only).
        backbone_weights: a local weights file of the ResNet, or a descriptor spec
            (``"gem:bundled"``) whose ResNet trunk to start from.
        flip_average: in eval mode, describe each crop and its mirror and sum the normalised
            rows (mirror invariant, twice the inference cost; see
            :class:`~lookalike.descriptors.reid._backbone.ReidNetwork`).
        size_range: accepted input sides ``(min, max)`` in pixels.
        validate: check for NaN / infinite input.

    Convention:
        The BNNeck's bias is frozen at 0 (as in the authors' code and the "bag of tricks"
        baseline); in eval mode the rows are ``normalize(BN(avgpool(features)))``. Crops are resized
        to ``input_size`` inside (see :class:`~lookalike.descriptors.reid._backbone.ReidNetwork`).

    Example:
        >>> import torch
        >>> net = RGANet(backbone="resnet18", input_size=(64, 32), dim=128).eval()
        >>> net(torch.rand(2, 3, 128, 48)).shape
        torch.Size([2, 128])
    """

    needs_weights = True

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        input_size: Sequence[int] = (256, 128),
        last_stride: int = 1,
        width: float = 1.0,
        spatial: bool = True,
        channel: bool = True,
        stages: Sequence[int] = (1, 2, 3, 4),
        reduction: int = 8,
        gate_reduction: int = 8,
        dim: int | None = None,
        pretrained: bool = False,
        backbone_weights: str | os.PathLike[str] | None = None,
        flip_average: bool = False,
        size_range: Sequence[int] = (32, 2048),
        validate: bool = True,
    ) -> None:
        super().__init__()
        self._setup_reid_input(input_size, size_range, flip_average)
        if not isinstance(stages, Sequence) or not set(stages) <= {1, 2, 3, 4}:
            raise OptionError(f"stages: expected a subset of (1, 2, 3, 4), got {stages!r}")
        if stages and not (spatial or channel):
            raise OptionError("spatial, channel: expected at least one attention for the stages")
        net = resnet_stages(
            backbone,
            last_stride=last_stride,
            width=width,
            pretrained=pretrained,
            backbone_weights=backbone_weights,
        )
        self.stem = net.stem
        self.stages = nn.ModuleList(net.stages)
        sizes = net.feature_sizes(self.input_size)
        self.attention = nn.ModuleList(
            RGAModule(
                c,
                feat_size=sizes[i],
                spatial=spatial,
                channel=channel,
                **_clipped(c, sizes[i], reduction, gate_reduction),
            )
            if i + 1 in stages
            else nn.Identity()
            for i, c in enumerate(net.channels)
        )
        channels = net.channels[-1]
        check_counts(dim=dim, optional=("dim",))
        self.dim = dim or channels
        self.project = nn.Linear(channels, self.dim, bias=False) if self.dim != channels else None
        self.neck = nn.BatchNorm1d(self.dim)
        self.neck.bias.requires_grad_(False)
        self.validate = validate
        self.to(memory_format=torch.channels_last)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, *input_size)`` crops to the last ``(B, C, h, w)`` attended feature map."""
        x = self.stem(x)
        for stage, attention in zip(self.stages, self.attention, strict=True):
            x = attention(stage(x))
        return x

    def blocks(self) -> list[nn.Module]:
        """The stem, then every stage with its attention, in the order they run."""
        return [self.stem, *map(nn.Sequential, self.stages, self.attention)]

    def embed_after(self, fmap: torch.Tensor, start: int) -> torch.Tensor:
        for block in self.blocks()[start:]:
            fmap = block(fmap)
        return self.head(fmap)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x))

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """The last attended ``(B, C, h, w)`` map to ``(B, D)`` raw descriptors (pooling, neck)."""
        pooled = fmap.mean(dim=(2, 3))
        if self.project is not None:
            pooled = self.project(pooled)
        return self.neck(pooled)
