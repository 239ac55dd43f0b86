"""``relation_net``: horizontal parts with one-vs-rest relations and global contrastive pooling.

Park and Ham, "Relation Network for Person Re-identification", AAAI 2020. The last feature map of a
ResNet (last stride 1; or of its stage 3 with ``stages=3``, the CPU recipe's choice) is cut into ``n``
horizontal strips, each max pooled into a part feature ``p_i``. Then

- one-vs-rest relation: the rest of the body ``r_i = (1 / (n - 1)) sum_{j != i} p_j``; both are reduced
  by 1x1 convolutions to ``p̄_i``, ``r̄_i``, and ``q_i = p̄_i + R([p̄_i, r̄_i])`` (``R``: 1x1 conv, BN, ReLU);
- global contrastive pooling (GCP): ``p_max = max_i p_i`` and the contrast of the average with the
  maximum ``p_cont = (1 / (n - 1)) sum_i (p_i - p_max) = n / (n - 1) (p_avg - p_max)``; reduced to
  ``p̄_max``, ``p̄_cont``, and ``q_0 = p̄_max + R_g([p̄_max, p̄_cont])``.

The descriptor is ``[q_0, q_1, ..., q_n]`` through a BatchNorm neck, L2-normalised:
``(n + 1) x part_dim`` values (7 x 256 = 1792 for the paper's 6 parts).

Convention:
    The paper trains every ``q`` with its own classifier and triplet loss; here the concatenation is
    one embedding (the training tasks see one descriptor). The reduction and relation layers are
    shared by the parts (one 1x1 convolution over the part axis). ``relation=False`` and
    ``gcp=False`` give the ablations (plain parts; plain max pooling for ``q_0``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_int, check_shape
from lookalike.core.errors import OptionError, ShapeError
from lookalike.descriptors.reid._backbone import ReidNetwork, resnet_stages, strip_max

__all__ = ["RelationNet", "global_contrastive_pool", "one_vs_rest"]


def _check_parts(parts: torch.Tensor) -> None:
    dims = check_shape(parts, ["B", "C", "N"], "parts")
    if dims["N"] < 2:
        raise ShapeError(
            f"parts: expected at least 2 parts on the last axis, got {tuple(parts.shape)}"
        )


def one_vs_rest(parts: torch.Tensor) -> torch.Tensor:
    """The rest-of-body feature of every part: ``r_i = mean_{j != i} p_j``.

    Args:
        parts: ``(B, C, N)`` part features, ``N >= 2``.

    Returns:
        ``(B, C, N)``.

    Example:
        >>> import torch
        >>> one_vs_rest(torch.tensor([[[1.0, 2.0, 6.0]]]))
        tensor([[[4.0000, 3.5000, 1.5000]]])
    """
    _check_parts(parts)
    n = parts.shape[-1]
    return (parts.sum(dim=-1, keepdim=True) - parts) / (n - 1)


def global_contrastive_pool(parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GCP's two inputs: ``p_max = max_i p_i`` and ``p_cont = (1 / (N - 1)) sum_i (p_i - p_max)``.

    Args:
        parts: ``(B, C, N)`` part features, ``N >= 2``.

    Returns:
        ``(p_max, p_cont)``, both ``(B, C)``; ``p_cont <= 0``, 0 where every part is equal.

    Example:
        >>> import torch
        >>> p_max, p_cont = global_contrastive_pool(torch.tensor([[[1.0, 2.0, 6.0]]]))
        >>> p_max, p_cont  # (1 - 6 + 2 - 6 + 0) / 2
        (tensor([[6.]]), tensor([[-4.5000]]))
    """
    _check_parts(parts)
    n = parts.shape[-1]
    p_max = parts.amax(dim=-1)
    return p_max, (parts.sum(dim=-1) - n * p_max) / (n - 1)


def _reduce(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU())


@register("descriptor", "relation_net")
class RelationNet(ReidNetwork):
    """ResNet + part features with one-vs-rest relations + GCP: crops to
    ``(B, (parts + 1 + mid_parts) * part_dim)``.

    Args:
        backbone: any timm ResNet name (``resnet50`` in the paper).
        input_size: ``(height, width)`` the crops are resized to (384 x 128 in the paper).
        last_stride: 1 (the paper) or 2 (the stride of stage 4; without effect when ``stages=3``).
        width: multiplier of the ResNet's widths (1: the named network; < 1 for CPU training).
        stages: how many ResNet stages the part features come from: 4 (the paper) or 3 (stage 4
            dropped: the parts come from stage 3's map, at stride 16 too). For CPU training on
            small sets: a ResNet-18 without stage 4 trains 2.8x more crops per second at 128 x 48 in
            ``configs/reid_viper.yaml``, and its mid-level features scored higher on an inner
            VIPeR split (see that recipe).
        parts: horizontal strips ``n >= 2`` (6 in the paper); the feature map must be at least
            ``n`` rows high.
        part_dim: size of every reduced feature ``q`` (256 in the paper).
        mid_parts: horizontal strips of the previous stage's map (stride 8 when ``stages=3``),
            max pooled and reduced to ``part_dim`` each and appended to the descriptor, which
            grows to ``(parts + 1 + mid_parts) * part_dim`` (0, the default: none). Finer,
            lower-level cues (colour, texture) beside the parts; not in the paper.
        relation: one-vs-rest relations for the parts (``False``: ``q_i = p̄_i``).
        gcp: global contrastive pooling for ``q_0`` (``False``: ``q_0 = p̄_max``).
        pretrained: let timm download the ResNet's ImageNet weights (explicit request only).
        backbone_weights: a local weights file of the ResNet, or a descriptor spec
            (``"gem:bundled"``) whose ResNet trunk to start from.
        flip_average: in eval mode, describe each crop and its mirror and sum the normalised
            rows (mirror invariant, twice the inference cost; see
            :class:`~lookalike.descriptors.reid._backbone.ReidNetwork`).
        size_range: accepted input sides ``(min, max)`` in pixels.
        validate: check for NaN / infinite input.

    Example:
        >>> import torch
        >>> net = RelationNet(backbone="resnet18", input_size=(96, 32), parts=3, part_dim=16).eval()
        >>> net(torch.rand(2, 3, 128, 48)).shape
        torch.Size([2, 64])
    """

    needs_weights = True

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        input_size: Sequence[int] = (384, 128),
        last_stride: int = 1,
        width: float = 1.0,
        stages: int = 4,
        parts: int = 6,
        part_dim: int = 256,
        mid_parts: int = 0,
        relation: bool = True,
        gcp: bool = True,
        pretrained: bool = False,
        backbone_weights: str | os.PathLike[str] | None = None,
        flip_average: bool = False,
        size_range: Sequence[int] = (32, 2048),
        validate: bool = True,
    ) -> None:
        super().__init__()
        self._setup_reid_input(input_size, size_range, flip_average)
        for name, value, low in (("parts", parts, 2), ("part_dim", part_dim, 1)):
            check_int(value, name, low)
        if isinstance(stages, bool) or not isinstance(stages, int) or stages not in (3, 4):
            raise OptionError(f"stages: expected 3 or 4, got {stages!r}")
        check_int(mid_parts, "mid_parts", 0)
        net = resnet_stages(
            backbone,
            last_stride=last_stride,
            width=width,
            pretrained=pretrained,
            backbone_weights=backbone_weights,
        )
        sizes = net.feature_sizes(self.input_size)
        for name, n, stage in (("parts", parts, stages), ("mid_parts", mid_parts, stages - 1)):
            rows = sizes[stage - 1][0]
            if rows < n:
                raise OptionError(
                    f"{name}: the {self.input_size} input gives a stage-{stage} map {rows} rows "
                    f"high; expected {name} <= {rows}, got {n}"
                )
        self.trunk_net = nn.Sequential(net.stem, *net.stages[:stages])
        self.stages = stages
        channels = net.channels[stages - 1]
        self.parts, self.part_dim = parts, part_dim
        self.relation, self.gcp = bool(relation), bool(gcp)
        self.reduce_part = _reduce(channels, part_dim)
        self.reduce_rest = _reduce(channels, part_dim) if self.relation else None
        self.part_relation = _reduce(2 * part_dim, part_dim) if self.relation else None
        self.reduce_max = _reduce(channels, part_dim)
        self.reduce_cont = _reduce(channels, part_dim) if self.gcp else None
        self.global_relation = _reduce(2 * part_dim, part_dim) if self.gcp else None
        self.mid_parts = mid_parts
        self.reduce_mid = _reduce(net.channels[stages - 2], part_dim) if mid_parts else None
        self.dim = (parts + 1 + mid_parts) * part_dim
        self.neck = nn.BatchNorm1d(self.dim)
        self.neck.bias.requires_grad_(False)
        self.validate = validate
        self.to(memory_format=torch.channels_last)

    def part_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, *input_size)`` crops to ``(B, C, parts)`` max-pooled strip features."""
        return strip_max(self.trunk_net(x), self.parts)

    def blocks(self) -> list[nn.Module]:
        """The stem and the ResNet stages, in the order they run."""
        return list(self.trunk_net)

    def embed_after(self, fmap: torch.Tensor, start: int) -> torch.Tensor:
        mid_index = len(self.trunk_net) - 2  # the block whose map the mid parts read
        if self.mid_parts and start > mid_index + 1:
            raise OptionError(
                f"start: the mid parts read block {mid_index}'s output; expected start <= "
                f"{mid_index + 1}, got {start}"
            )
        mid = fmap if start == mid_index + 1 else None  # the input is that map
        for index in range(start, len(self.trunk_net)):
            fmap = self.trunk_net[index](fmap)
            if index == mid_index:
                mid = fmap
        return self.head(fmap, mid)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_after(x, 0)

    def head(self, fmap: torch.Tensor, mid: torch.Tensor | None = None) -> torch.Tensor:
        """The last ``(B, C, h, w)`` feature map (and, with ``mid_parts``, the previous stage's
        map ``mid``) to ``(B, D)`` raw descriptors (parts, relations, GCP, mid parts, neck)."""
        if self.mid_parts and mid is None:
            raise OptionError("mid: expected the previous stage's map (mid_parts > 0), got None")
        parts = strip_max(fmap, self.parts)
        q_parts = self.reduce_part(parts)  # (B, D, n)
        if self.relation:
            rest = self.reduce_rest(one_vs_rest(parts))
            q_parts = q_parts + self.part_relation(torch.cat([q_parts, rest], dim=1))
        p_max, p_cont = global_contrastive_pool(parts)
        q_max = self.reduce_max(p_max.unsqueeze(-1))  # (B, D, 1)
        if self.gcp:
            cont = self.reduce_cont(p_cont.unsqueeze(-1))
            q_max = q_max + self.global_relation(torch.cat([q_max, cont], dim=1))
        pieces = [q_max, q_parts]  # [q_0, q_1..q_n]
        if self.mid_parts:
            pieces.append(self.reduce_mid(strip_max(mid, self.mid_parts)))
        out = torch.cat(pieces, dim=2).transpose(1, 2).flatten(1)
        return self.neck(out)
