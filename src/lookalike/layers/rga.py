"""Relation-aware global attention (Zhang et al., "Relation-Aware Global Attention for Person
Re-identification", CVPR 2020): spatial (RGA-S) and channel (RGA-C) modules.

Both treat a feature map as a graph. RGA-S: the ``N = H·W`` positions are nodes with ``C``-d features;
RGA-C: the ``C`` channels are nodes with ``N``-d features. For node ``i`` with embedded feature ``x_i``
the pairwise relations ``r_ij = θ(x_i)·φ(x_j)`` give the relation vector ``[r_i,:, r_:,i]`` (both
directions, ``2·nodes`` values); it is embedded by a 1×1 conv, stacked with a one-channel embedding of the
node itself (a 1×1 conv, then the mean over its output channels), and two 1×1 convs and a sigmoid turn
that into the node's gate. Every 1×1 conv is followed by BatchNorm (and ReLU except the last), as in
the authors' code; the reductions ``s1``/``s2`` of the embeddings and of the gate MLP are 8.

Convention:
    The last BatchNorm of the gate MLP starts with scale 0, so every gate starts at 0.5 (see
    ``_RelationGate``); the authors' code starts it at 1.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.layers._common import GatedAttention, check_feature_map, check_int, check_ints

__all__ = ["RGAChannel", "RGAModule", "RGASpatial"]


def _embed(c_in: int, c_out: int, *, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _reduced(value: int, ratio: int, name: str) -> int:
    out = value // check_int(ratio, name)
    if out < 1:
        raise OptionError(
            f"{name}: {value} // {ratio} leaves no channel; expected a ratio <= {value}"
        )
    return out


class _RelationGate(nn.Module):
    """Relation embedding + node embedding + gate MLP for ``nodes`` nodes with ``feat``-d features."""

    def __init__(self, nodes: int, feat: int, *, reduction: int, gate_reduction: int) -> None:
        super().__init__()
        inter_feat = _reduced(feat, reduction, "feature reduction")
        inter_nodes = _reduced(nodes, reduction, "node reduction")
        self.theta = _embed(feat, inter_feat)
        self.phi = _embed(feat, inter_feat)
        self.node = _embed(feat, inter_feat)
        self.relation = _embed(2 * nodes, inter_nodes)
        hidden = _reduced(1 + inter_nodes, gate_reduction, "gate_reduction")
        self.gate = nn.Sequential(
            _embed(1 + inter_nodes, hidden), _embed(hidden, 1, act=False), nn.Sigmoid()
        )
        # Every gate starts at sigmoid(0) = 0.5, one scale for all nodes (the last BatchNorm's scale
        # is zero; its shift and the convolutions train as usual). The authors' code keeps scale 1,
        # which starts every gate at a random value per node: harmless on an ImageNet backbone, but
        # from scratch on VIPeR's 316 ids the network then stays near chance (inner split of split
        # 0's training ids, 1000 steps: rank-1 1.3 % with scale 1, 15.2 % with scale 0, 12.0 % with
        # no attention at all).
        nn.init.zeros_(self.gate[1][1].weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, feat, nodes, 1)`` node features (nodes on the spatial axis) → ``(B, 1, nodes, 1)`` gate."""
        theta = self.theta(feats).flatten(2)  # (B, c', n)
        phi = self.phi(feats).flatten(2)
        rel = theta.transpose(1, 2) @ phi  # rel[b, i, j] = θ_i · φ_j
        # node i (on the spatial axis) gets channels [rel[i, :], rel[:, i]]
        joint = torch.cat([rel.transpose(1, 2), rel], dim=1).unsqueeze(-1)  # (B, 2n, n, 1)
        own = self.node(feats).mean(dim=1, keepdim=True)  # (B, 1, n, 1)
        return self.gate(torch.cat([own, self.relation(joint)], dim=1))


def _feat_size(feat_size: tuple[int, int]) -> tuple[int, int]:
    h, w = check_ints(feat_size, "feat_size", length=2)
    return h, w


class _RGA(GatedAttention):
    """What RGA-S and RGA-C share: the options, a :class:`_RelationGate` whose nodes are the positions
    (``channels_are_nodes = False``) or the channels, and the input check."""

    channels_are_nodes: ClassVar[bool] = False

    def __init__(
        self,
        channels: int,
        *,
        feat_size: tuple[int, int] = (16, 8),
        reduction: int = 8,
        gate_reduction: int = 8,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.feat_size = _feat_size(feat_size)
        positions = self.feat_size[0] * self.feat_size[1]
        nodes, feat = (channels, positions) if self.channels_are_nodes else (positions, channels)
        self.relation = _RelationGate(
            nodes, feat, reduction=reduction, gate_reduction=gate_reduction
        )

    def _check(self, x: torch.Tensor) -> None:
        """``x`` must be ``(B, channels, *feat_size)`` floating point (ShapeError, DTypeError)."""
        h, w = self.feat_size
        check_feature_map(x, self.channels, "x", height=h, width=w)


@register("layer", "rga_s")
class RGASpatial(_RGA):
    """RGA-S: spatial relation-aware attention, one sigmoid gate per position.

    Args:
        channels: input channels ``C``.
        feat_size: ``(H, W)`` of the feature map (the relation vectors have ``2·H·W`` entries, so the
            module is built for one size: e.g. ``(64, 32)`` after ResNet stage 1 on 256×128 crops).
        reduction: ``s`` of the node and relation embeddings (``C/s`` and ``H·W/s`` channels).
        gate_reduction: hidden width divisor of the gate MLP.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``: every position of ``x`` gated.

    Example:
        >>> import torch
        >>> rga = RGASpatial(32, feat_size=(16, 8))
        >>> x = torch.rand(2, 32, 16, 8)
        >>> rga(x).shape, rga.attention(x).shape
        (torch.Size([2, 32, 16, 8]), torch.Size([2, 1, 16, 8]))
    """

    channels_are_nodes = False

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, 1, H, W)`` spatial gate in ``(0, 1)``."""
        self._check(x)
        feats = x.flatten(2).unsqueeze(-1)  # (B, C, N, 1): positions are the nodes
        return self.relation(feats).view(x.shape[0], 1, *self.feat_size)


@register("layer", "rga_c")
class RGAChannel(_RGA):
    """RGA-C: channel relation-aware attention, one sigmoid gate per channel.

    Args:
        channels: input channels ``C`` (the nodes).
        feat_size: ``(H, W)`` of the feature map (each node's feature has ``H·W`` values).
        reduction: ``s`` of the node and relation embeddings (``H·W/s`` and ``C/s`` channels).
        gate_reduction: hidden width divisor of the gate MLP.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``: every channel of ``x`` gated.

    Example:
        >>> import torch
        >>> rga = RGAChannel(64, feat_size=(8, 4))
        >>> rga.attention(torch.rand(2, 64, 8, 4)).shape
        torch.Size([2, 64, 1, 1])
    """

    channels_are_nodes = True

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, C, 1, 1)`` channel gate in ``(0, 1)``."""
        self._check(x)
        b, c = x.shape[:2]
        feats = x.flatten(2).transpose(1, 2).unsqueeze(-1)  # (B, N, C, 1): channels are the nodes
        return self.relation(feats).view(b, c, 1, 1)


class RGAModule(nn.Sequential):
    """RGA-SC: :class:`RGASpatial` then :class:`RGAChannel` (the paper's best variant), or either alone.

    Example:
        >>> import torch
        >>> RGAModule(64, feat_size=(16, 8))(torch.rand(2, 64, 16, 8)).shape
        torch.Size([2, 64, 16, 8])
    """

    def __init__(
        self,
        channels: int,
        *,
        feat_size: tuple[int, int],
        spatial: bool = True,
        channel: bool = True,
        reduction: int = 8,
        gate_reduction: int = 8,
    ) -> None:
        if not (spatial or channel):
            raise OptionError("RGAModule: expected spatial and/or channel attention, got neither")
        kw = {"feat_size": feat_size, "reduction": reduction, "gate_reduction": gate_reduction}
        super().__init__()
        if spatial:
            self.add_module("spatial", RGASpatial(channels, **kw))
        if channel:
            self.add_module("channel", RGAChannel(channels, **kw))
