"""Batch-hard triplet loss with labels, and its miner (index tuples).

Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017: for each
anchor, the hardest positive and the hardest negative of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_finite, check_not_empty, check_positive, check_shape
from lookalike.losses._distance import (
    METRICS,
    DegenerateBatchWarning,
    check_eps,
    check_labels,
    check_metric,
    pairwise_distance,
    warn_degenerate,
    zero_loss,
)

__all__ = [
    "METRICS",
    "BatchHardTripletLoss",
    "DegenerateBatchWarning",
    "batch_hard_miner",
    "batch_hard_triplet_loss",
]


def _check(embeddings: torch.Tensor, labels: torch.Tensor, metric: str, eps: float) -> None:
    dims = check_shape(embeddings, ["N", "D"], "embeddings")
    check_labels(labels, dims)
    check_not_empty(embeddings, "embeddings")
    check_finite(embeddings, "embeddings")
    check_metric(metric)
    check_eps(eps)


def _mine(
    dist: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (anchor, hardest positive, hardest negative) of the valid anchors of ``dist`` (N, N)."""
    with torch.no_grad():
        n = dist.shape[0]
        lab = labels.to(dist.device)
        same = lab[:, None] == lab[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=dist.device)
        pos_mask = same & ~eye
        neg_mask = ~same
        d = dist.detach()
        hardest_pos = d.masked_fill(~pos_mask, float("-inf")).argmax(dim=1)
        hardest_neg = d.masked_fill(~neg_mask, float("inf")).argmin(dim=1)
        valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        anchor_idx = torch.nonzero(valid, as_tuple=True)[0]
    return anchor_idx, hardest_pos[anchor_idx], hardest_neg[anchor_idx]


def batch_hard_miner(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    metric: str = "euclidean",
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-hard mining: for each anchor its hardest positive and hardest negative.

    For anchor ``i``: the positive is ``argmax_j d(x_i, x_j)`` over ``j != i`` with
    ``labels[j] == labels[i]``; the negative is ``argmin_j d(x_i, x_j)`` over ``labels[j] != labels[i]``.

    Convention:
        Anchors without a positive (a label seen once) or without a negative (every label equal) are
        left out, so the three index tensors may be shorter than N, or empty (no warning here).
        Ties pick one of the tied indices (the distances are what matters). Distances as in
        :func:`batch_hard_triplet_loss`.

    Args:
        embeddings: (N, D) descriptors.
        labels: (N,) integer labels (3D point, class or identity).
        metric: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``).
        eps: added under the square root of Euclidean distances, ``>= 0``.

    Returns:
        ``(anchor, positive, negative)``: three (M,) int64 tensors of row indices, ``M <= N``, anchors
        in increasing order.

    Raises:
        ShapeError: shapes are not (N, D) and (N,).
        DTypeError: labels are not integers.
        EmptyInputError: ``N == 0`` or ``D == 0``.
        ValueRangeError: NaN or infinite embeddings.
        OptionError: unknown metric or negative ``eps``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
        >>> a, p, n = batch_hard_miner(x, torch.tensor([0, 0, 1, 1]))
        >>> a.tolist(), p.tolist(), n.tolist()
        ([0, 1, 2, 3], [1, 0, 3, 2], [2, 2, 1, 1])
    """
    _check(embeddings, labels, metric, eps)
    dist = pairwise_distance(embeddings, embeddings, metric=metric, eps=eps)
    return _mine(dist, labels)


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.3,
    soft: bool = False,
    metric: str = "euclidean",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Batch-hard triplet loss: mean over anchors of ``max(0, margin + d_ap - d_an)``.

    ``d_ap`` is the distance to the anchor's hardest positive and ``d_an`` to its hardest negative
    (see :func:`batch_hard_miner`). With ``soft=True`` the hinge is replaced by the soft margin
    ``softplus(d_ap - d_an) = log(1 + exp(d_ap - d_an))`` and ``margin`` is ignored.

    Works for patches (labels = 3D point ids; pass anchors and positives stacked, with the same label
    for a matching pair) and identities (P identities x K images per batch).

    Convention:
        Euclidean distance is ``sqrt(|x - y|² + eps)`` (``eps = 1e-6`` keeps gradients bounded for
        identical rows), ``"sqeuclidean"`` is ``|x - y|²`` and ``"cosine"`` is ``1 - cos(x, y)``;
        ``margin`` is in the units of the chosen metric (default 0.3, the common re-identification
        value for Euclidean distances). The mean runs over the valid anchors only (at least one other
        sample with the same label and one with another label). With no valid anchor (batch of one,
        every label equal, every label distinct) the loss is ``0``, attached to the graph (zero
        gradients), and a :class:`DegenerateBatchWarning` is issued.

    Args:
        embeddings: (N, D) descriptors.
        labels: (N,) integer labels.
        margin: hinge margin, ``>= 0``.
        soft: use the soft margin ``softplus(d_ap - d_an)`` instead of the hinge.
        metric: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"``.
        eps: added under the square root of Euclidean distances, ``>= 0``.

    Returns:
        Scalar loss in the dtype of ``embeddings``.

    Raises:
        ShapeError: shapes are not (N, D) and (N,).
        DTypeError: labels are not integers.
        EmptyInputError: ``N == 0`` or ``D == 0``.
        ValueRangeError: NaN or infinite embeddings.
        OptionError: unknown metric or negative ``margin``/``eps``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
        >>> loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=1.0, eps=0.0)
        >>> round(loss.item(), 4)  # per anchor: (1+1-3)+, (1+1-2)+, (1+7-2)+, (1+7-9)+
        1.5
    """
    _check(embeddings, labels, metric, eps)
    check_positive(margin, "margin", strict=False)
    dist = pairwise_distance(embeddings, embeddings, metric=metric, eps=eps)
    anchor, positive, negative = _mine(dist, labels)
    if anchor.numel() == 0:
        warn_degenerate(
            f"batch_hard_triplet_loss: no anchor of the batch (N={embeddings.shape[0]}) has both a "
            "positive and a negative (batch of one, all labels equal or all distinct); returning 0"
        )
        return zero_loss(embeddings)
    d_ap = dist[anchor, positive]
    d_an = dist[anchor, negative]
    if soft:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(margin + d_ap - d_an).mean()


@register("loss", "batch_hard_triplet")
class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet loss with labels as a module; see :func:`batch_hard_triplet_loss`.

    Args:
        margin: hinge margin in units of ``metric`` (default 0.3); ignored when ``soft``.
        soft: soft margin ``softplus(d_ap - d_an)``.
        metric: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"``.
        eps: added under the square root of Euclidean distances (default 1e-6).

    Example:
        >>> import torch, lookalike
        >>> crit = lookalike.create("loss", "batch_hard_triplet", soft=True)
        >>> x = torch.randn(12, 16, generator=torch.Generator().manual_seed(0))
        >>> labels = torch.arange(4).repeat_interleave(3)  # P=4 identities x K=3 images
        >>> bool(crit(x, labels) > 0)
        True
    """

    def __init__(
        self,
        *,
        margin: float = 0.3,
        soft: bool = False,
        metric: str = "euclidean",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_positive(margin, "margin", strict=False)
        check_metric(metric)
        check_eps(eps)
        self.margin = float(margin)
        self.soft = bool(soft)
        self.metric = metric
        self.eps = float(eps)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (N, D) embeddings with (N,) integer labels."""
        return batch_hard_triplet_loss(
            embeddings, labels, margin=self.margin, soft=self.soft, metric=self.metric, eps=self.eps
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft={self.soft}, metric={self.metric!r}"
