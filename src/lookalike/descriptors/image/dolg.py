"""``dolg``: Deep Orthogonal Fusion of Local and Global features (Yang et al., ICCV 2021).

A local branch on the backbone's third stage (multi-atrous 3×3 convolutions plus an image-pool branch,
then spatial attention), a global branch on the fourth stage (1×1 conv + BN + SiLU, GeM), the local
features' component orthogonal to the global descriptor, concatenated with it, pooled, and a neck
FC-BN-PReLU to 512. The 2021 Google Landmark Retrieval winners (Henkel & Singer) used this model on
EfficientNet backbones with dilations 6/12/18.

The maths of the fusion is :func:`orthogonal_fusion`; the modules hold parameters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option, check_shape
from lookalike.core.errors import OptionError
from lookalike.core.weights import WeightSpec
from lookalike.descriptors.image._backbone import ImageDescriptor, check_counts
from lookalike.layers.gem import GeM

__all__ = ["DOLGDescriptor", "MultiAtrous", "SpatialAttention", "orthogonal_fusion"]

FUSION_NORMS = ("squared", "norm")
#: Local branches of :class:`DOLGDescriptor` (the paper's, and two for the building-block ablation).
LOCAL_BLOCKS = ("multi_atrous", "msffrb", "asff")


def orthogonal_fusion(
    local: torch.Tensor, global_: torch.Tensor, *, norm: str = "squared"
) -> torch.Tensor:
    """Concatenate the local map's component orthogonal to ``global_`` with ``global_`` broadcast.

    ``f_orth = f_l - (f_l · f_g) f_g / |f_g|²`` at every position (the paper's projection, default).
    ``norm="norm"`` divides by ``|f_g|`` instead, as the 2021 winners' code does: then the subtracted
    part is the projection scaled by ``|f_g|``, so ``f_orth`` is orthogonal to ``f_g`` only for a unit
    ``f_g``.

    Args:
        local: ``(B, C, H, W)`` local features.
        global_: ``(B, C)`` global descriptor.
        norm: ``"squared"`` or ``"norm"`` (see above).

    Returns:
        ``(B, 2C, H, W)``: ``[f_orth, f_g]`` along channels.

    Convention:
        A zero ``f_g`` has no direction: nothing is subtracted (the denominator is clamped at 1e-12).

    Example:
        >>> import torch
        >>> out = orthogonal_fusion(torch.tensor([[[[1.0]], [[1.0]]]]), torch.tensor([[2.0, 0.0]]))
        >>> out[0, :, 0, 0].tolist()  # orthogonal part (0, 1), then f_g
        [0.0, 1.0, 2.0, 0.0]
    """
    dims = check_shape(local, ["B", "C", "H", "W"], "local")
    check_shape(global_, ["B", "C"], "global_", dims)
    check_option(norm, FUSION_NORMS, "norm")
    dot = torch.einsum("bchw,bc->bhw", local, global_)[:, None]
    length = global_.norm(dim=1)
    denominator = length * length if norm == "squared" else length
    projection = dot / denominator.clamp(min=1e-12)[:, None, None, None] * global_[:, :, None, None]
    expanded = global_[:, :, None, None].expand(-1, -1, *local.shape[2:])
    return torch.cat([local - projection, expanded], dim=1)


class MultiAtrous(nn.Module):
    """Parallel dilated 3×3 convolutions plus an image-pool branch, concatenated, 1×1 conv to ``out``.

    Args:
        channels: input channels.
        hidden: channels of each branch.
        out: output channels.
        dilations: one 3×3 branch per dilation (3/6/9 in the paper, 6/12/18 in the winners' code).
    """

    def __init__(self, channels: int, hidden: int, out: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, hidden, 3, padding=d, dilation=d) for d in dilations
        )
        self.image_pool = nn.Conv2d(channels, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden * (len(dilations) + 1), out, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.relu(self.image_pool(x.mean(dim=(2, 3), keepdim=True)))
        parts = [branch(x) for branch in self.branches]
        parts.append(pooled.expand(-1, -1, *x.shape[2:]))
        return self.project(torch.cat(parts, dim=1))


class FusionLocal(nn.Module):
    """An alternative local branch (issue-14 ablation): a multi-scale fusion block on the third stage
    (``msffrb``: 3x3 paths at the given dilations exchanging features, residual) or ASFF over stages
    2-4 fused at stage 3's size (``asff``), then 1x1 conv + ReLU to ``out`` channels.

    Args:
        channels: channels of the levels fed in (one for ``msffrb``, three for ``asff``, finest first).
        out: output channels.
        dilations: path dilations of ``msffrb``.
        kind: ``"msffrb"`` or ``"asff"``.
    """

    def __init__(
        self, channels: Sequence[int], out: int, dilations: Sequence[int], kind: str
    ) -> None:
        super().__init__()
        from lookalike.layers.asff import ASFF
        from lookalike.layers.msffrb import MultiScaleFusionBlock

        if kind == "asff":
            self.block: nn.Module = ASFF(tuple(channels), level=1)
            width = int(channels[1])
        else:
            width = int(channels[0])
            self.block = MultiScaleFusionBlock(
                width,
                kernel_sizes=(3,) * len(dilations),
                dilations=tuple(dilations),
                norm_layer=nn.BatchNorm2d,
            )
        self.project = nn.Sequential(nn.Conv2d(width, out, 1), nn.ReLU())

    def forward(self, *levels: torch.Tensor) -> torch.Tensor:
        return self.project(self.block(*levels))


class SpatialAttention(nn.Module):
    """DOLG's self-attention: 1×1 conv + BN; L2-normalised features weighted by a softplus score.

    ``f = BN(conv(x))``, ``score = softplus(conv2(relu(f)))`` (one value per position), output
    ``normalize(f) * score``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.score = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.bn(self.conv(x))
        score = F.softplus(self.score(F.relu(f)))
        return F.normalize(f, dim=1) * score


#: Weights trained by lookalike (``configs/dolg_bundled.yaml``: instance discrimination on square regions of
#: the 14 training photos bundled with scikit-image plus dead-leaves images, sub-center ArcFace, on a
#: 2-core CPU); recipe, seed and held-out validation numbers (FPR95, mAP, recall@1 on regions of
#: chelsea/coffee/gravel) are in the file's metadata. Reproduce with
#: ``lookalike train --config configs/dolg_bundled.yaml``.
DOLG_WEIGHTS = {
    "bundled": WeightSpec(
        file="dolg_bundled.safetensors",
        sha256="4a72b15b10a2eb0c31e73b3b9ac88a70b0b185f63ce23eac5ad7a8c862514596",
        description="DOLG (ResNet-18) trained on regions of scikit-image's bundled photos (CPU recipe)",
    ),
}


@register("descriptor", "dolg", weights=DOLG_WEIGHTS)
class DOLGDescriptor(ImageDescriptor):
    """DOLG: orthogonal fusion of a multi-atrous local branch and a GeM global branch.

    Args:
        backbone: any timm CNN with at least four reduction stages (``resnet50`` in the paper,
            ``tf_efficientnet_b5_ns``... in the 2021 winners' code).
        local_stage, global_stage: timm ``out_indices`` of the local (third, stride 16) and global
            (fourth, stride 32) stages.
        dilations: dilations of the multi-atrous 3×3 branches.
        local_block: the local branch: ``multi_atrous`` (the paper's), or for the building-block
            ablation ``msffrb`` (multi-scale fusion residual block, paths at ``dilations``) or
            ``asff`` (ASFF of stages ``local_stage - 1 .. global_stage`` at the local stage's size).
        local_dim: channels of the local and global features ``C`` (1024 in the paper).
        atrous_hidden: channels of each atrous branch.
        fusion_norm: ``"squared"`` (the paper's projection ``/|f_g|²``) or ``"norm"`` (the winners'
            ``/|f_g|``); see :func:`orthogonal_fusion`.
        dim: output size of the neck (512).
        p: initial GeM power of the global branch.
        pretrained, backbone_weights: as in :func:`~lookalike.descriptors.image._backbone.create_backbone`.
        size_range: accepted input sides ``(min, max)``.
        validate: check for NaN / infinite input.

    Convention:
        The fused map ``[f_orth, f_g]`` is average-pooled to ``2C`` values, then FC-BN-PReLU to
        ``dim`` and L2-normalised. The BatchNorm of the neck needs batches of 2 or more in training.

    Example:
        >>> import torch
        >>> net = DOLGDescriptor(backbone="resnet18", local_dim=64, atrous_hidden=16, dim=32).eval()
        >>> net(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 32])
    """

    needs_weights = True

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        local_stage: int = 3,
        global_stage: int = 4,
        dilations: Sequence[int] = (3, 6, 9),
        local_block: str = "multi_atrous",
        local_dim: int = 1024,
        atrous_hidden: int = 512,
        fusion_norm: str = "squared",
        dim: int = 512,
        p: float = 3.0,
        pretrained: bool = False,
        backbone_weights: str | os.PathLike[str] | None = None,
        size_range: Sequence[int] = (32, 2048),
        validate: bool = True,
    ) -> None:
        super().__init__()
        check_option(fusion_norm, FUSION_NORMS, "fusion_norm")
        check_option(local_block, LOCAL_BLOCKS, "local_block")
        check_counts(local_dim=local_dim, atrous_hidden=atrous_hidden, dim=dim)
        if not dilations or not all(isinstance(d, int) and d >= 1 for d in dilations):
            raise OptionError(
                f"dilations: expected a non-empty list of integers >= 1, got {dilations!r}"
            )
        if not (
            isinstance(local_stage, int)
            and isinstance(global_stage, int)
            and local_stage < global_stage
        ):
            raise OptionError(
                f"local_stage, global_stage: expected integers with local < global, got "
                f"{local_stage!r}, {global_stage!r}"
            )
        if local_block == "asff" and local_stage < 2:
            raise OptionError(f"local_block 'asff' needs local_stage >= 2, got {local_stage}")
        finer = (local_stage - 1,) if local_block == "asff" else ()
        channels = self._setup_backbone(
            backbone,
            out_indices=(*finer, local_stage, global_stage),
            pretrained=pretrained,
            backbone_weights=backbone_weights,
            size_range=size_range,
            validate=validate,
        )
        c3, c4 = channels[-2], channels[-1]
        if local_block == "multi_atrous":
            self.local_branch: nn.Module = MultiAtrous(c3, atrous_hidden, local_dim, dilations)
        else:
            inputs = channels if local_block == "asff" else [c3]
            self.local_branch = FusionLocal(inputs, local_dim, dilations, local_block)
        self.local_block = local_block
        self.attention = SpatialAttention(local_dim)
        self.global_conv = nn.Sequential(
            nn.Conv2d(c4, local_dim, 1, bias=False), nn.BatchNorm2d(local_dim), nn.SiLU()
        )
        self.global_pool = GeM(p=p)
        self.global_fc = nn.Linear(local_dim, local_dim)
        self.neck = nn.Sequential(nn.Linear(2 * local_dim, dim), nn.BatchNorm1d(dim), nn.PReLU())
        self.fusion_norm = fusion_norm
        self.dilations = tuple(dilations)
        self.dim = dim
        self.to(memory_format=torch.channels_last)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        *levels, stage4 = self.backbone(x)
        local_in = (*levels, stage4) if self.local_block == "asff" else (levels[-1],)
        local = self.attention(self.local_branch(*local_in))
        global_ = self.global_fc(self.global_pool(self.global_conv(stage4)))
        fused = orthogonal_fusion(local, global_.to(local.dtype), norm=self.fusion_norm)
        return self.neck(fused.mean(dim=(2, 3)))
