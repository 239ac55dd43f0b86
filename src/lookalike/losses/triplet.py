"""Batch-hard triplet loss with labels, and its miner (index tuples).

Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017: for each
anchor, the hardest positive and the hardest negative of the batch. Optionally also among reference
rows, such as a cross-batch memory of the last batches' embeddings (Wang et al., "Cross-Batch Memory
for Embedding Learning", CVPR 2020): ``BatchHardTripletLoss(memory=...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import (
    check_dtype,
    check_finite,
    check_not_empty,
    check_positive,
    check_shape,
)
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers._common import check_int
from lookalike.losses._distance import (
    _INT_DTYPES,
    METRICS,
    DegenerateBatchWarning,
    check_eps,
    check_labels,
    check_metric,
    pairwise_distance,
    warn_degenerate,
    zero_loss,
)
from lookalike.losses._memory import EmbeddingMemory

__all__ = [
    "METRICS",
    "BatchHardTripletLoss",
    "DegenerateBatchWarning",
    "batch_hard_miner",
    "batch_hard_triplet_loss",
]


def _check(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    metric: str,
    eps: float,
    ref_embeddings: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
) -> None:
    dims = check_shape(embeddings, ["N", "D"], "embeddings")
    check_labels(labels, dims)
    check_not_empty(embeddings, "embeddings")
    check_finite(embeddings, "embeddings")
    check_metric(metric)
    check_eps(eps)
    if (ref_embeddings is None) != (ref_labels is None):
        raise OptionError(
            "ref_embeddings, ref_labels: expected both or neither, got "
            f"{'ref_embeddings' if ref_labels is None else 'ref_labels'} only"
        )
    if ref_embeddings is not None and ref_labels is not None:
        check_shape(ref_embeddings, ["M", "D"], "ref_embeddings", dims)
        check_shape(ref_labels, ["M"], "ref_labels", dims)
        check_dtype(ref_labels, _INT_DTYPES, "ref_labels")
        check_finite(ref_embeddings, "ref_embeddings")


def _distances(
    embeddings: torch.Tensor, ref_embeddings: torch.Tensor | None, metric: str, eps: float
) -> torch.Tensor:
    """(N, N) distances within the batch, then (N, M) to the reference rows when given."""
    dist = pairwise_distance(embeddings, embeddings, metric=metric, eps=eps)
    if ref_embeddings is None:
        return dist
    ref = ref_embeddings.to(device=embeddings.device, dtype=embeddings.dtype)
    return torch.cat([dist, pairwise_distance(embeddings, ref, metric=metric, eps=eps)], dim=1)


def _mine(
    dist: torch.Tensor, labels: torch.Tensor, ref_labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (anchor, hardest positive, hardest negative) of the valid anchors of ``dist``.

    ``dist`` is (N, N) within the batch, or (N, N + M) with the M reference rows (labels
    ``ref_labels``) after the batch; only the first N columns hold the anchors themselves.
    """
    with torch.no_grad():
        n = dist.shape[0]
        lab = labels.to(dist.device)
        cand = lab if ref_labels is None else torch.cat([lab, ref_labels.to(dist.device)])
        same = lab[:, None] == cand[None, :]
        itself = torch.zeros_like(same)
        itself[:, :n] = torch.eye(n, dtype=torch.bool, device=dist.device)
        pos_mask = same & ~itself
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
    ref_embeddings: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-hard triplet loss: mean over anchors of ``max(0, margin + d_ap - d_an)``.

    ``d_ap`` is the distance to the anchor's hardest positive and ``d_an`` to its hardest negative
    (see :func:`batch_hard_miner`). With ``soft=True`` the hinge is replaced by the soft margin
    ``softplus(d_ap - d_an) = log(1 + exp(d_ap - d_an))`` and ``margin`` is ignored.

    With ``ref_embeddings`` (M, D) and ``ref_labels`` (M,) the hardest positive and negative are
    sought among the other rows of the batch **and** the M reference rows (a cross-batch memory:
    pass them detached; gradients flow into them otherwise). Every row of the batch is still an
    anchor; reference rows are never anchors.

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
        ref_embeddings: optional (M, D) extra candidate rows (``M`` may be 0), cast to the dtype
            and device of ``embeddings``.
        ref_labels: their (M,) integer labels; given together with ``ref_embeddings``.

    Returns:
        Scalar loss in the dtype of ``embeddings``.

    Raises:
        ShapeError: shapes are not (N, D), (N,), (M, D) and (M,).
        DTypeError: labels are not integers.
        EmptyInputError: ``N == 0`` or ``D == 0``.
        ValueRangeError: NaN or infinite embeddings.
        OptionError: unknown metric, negative ``margin``/``eps``, or only one of ``ref_embeddings``
            and ``ref_labels``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
        >>> loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=1.0, eps=0.0)
        >>> round(loss.item(), 4)  # per anchor: (1+1-3)+, (1+1-2)+, (1+7-2)+, (1+7-9)+
        1.5
    """
    _check(embeddings, labels, metric, eps, ref_embeddings, ref_labels)
    check_positive(margin, "margin", strict=False)
    value = _triplet(embeddings, labels, ref_embeddings, ref_labels, margin, soft, metric, eps)
    if value is None:
        where = "batch" if ref_embeddings is None else "batch and reference rows"
        warn_degenerate(
            f"batch_hard_triplet_loss: no anchor of the batch (N={embeddings.shape[0]}) has both a "
            f"positive and a negative among the {where} (batch of one, all labels equal or all "
            "distinct); returning 0"
        )
        return zero_loss(embeddings)
    return value


def _triplet(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ref_embeddings: torch.Tensor | None,
    ref_labels: torch.Tensor | None,
    margin: float,
    soft: bool,
    metric: str,
    eps: float,
) -> torch.Tensor | None:
    """The loss of checked inputs, or ``None`` when no anchor is valid."""
    dist = _distances(embeddings, ref_embeddings, metric, eps)
    anchor, positive, negative = _mine(dist, labels, ref_labels)
    if anchor.numel() == 0:
        return None
    d_ap = dist[anchor, positive]
    d_an = dist[anchor, negative]
    if soft:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(margin + d_ap - d_an).mean()


@register("loss", "batch_hard_triplet")
class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet loss with labels as a module; see :func:`batch_hard_triplet_loss`.

    Cross-batch memory (``memory > 0``; Wang et al., CVPR 2020): the module keeps the last
    ``memory`` embeddings and labels it was trained on (detached, float32, first in first out) and,
    from the ``memory_start + 1``-th training call on, adds ``memory_weight`` times a second
    batch-hard term whose hardest positives and negatives are sought among the batch **and** the
    memory (:func:`batch_hard_triplet_loss` with ``ref_embeddings``). The memory fills from the
    first call, so it is full when that term starts (once the network drifts slowly). In eval mode
    (``.eval()``) the memory is neither used nor updated. It lives in buffers: a training
    checkpoint saves it and a resumed run continues with it. Under DDP every rank computes the loss
    on the gathered batch, so every rank holds the same memory.

    Args:
        margin: hinge margin in units of ``metric`` (default 0.3); ignored when ``soft``.
        soft: soft margin ``softplus(d_ap - d_an)``.
        metric: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"``.
        eps: added under the square root of Euclidean distances (default 1e-6).
        memory: embeddings kept across batches (``0``, the default: none).
        memory_start: training calls before the memory term counts (default 0).
        memory_weight: weight of the memory term, ``>= 0`` (default 1).
        embedding_dim: width D of the embeddings; needed with ``memory`` (the training engine
            passes the model's width).

    Example:
        >>> import torch, lookalike
        >>> crit = lookalike.create("loss", "batch_hard_triplet", soft=True)
        >>> x = torch.randn(12, 16, generator=torch.Generator().manual_seed(0))
        >>> labels = torch.arange(4).repeat_interleave(3)  # P=4 identities x K=3 images
        >>> bool(crit(x, labels) > 0)
        True
        >>> xbm = lookalike.create("loss", "batch_hard_triplet", soft=True, memory=24, embedding_dim=16)
        >>> _ = xbm(x, labels)  # first call: batch term only, the batch enters the memory
        >>> len(xbm.bank), bool(xbm(x, labels) > crit(x, labels))  # now also the memory term
        (12, True)
    """

    def __init__(
        self,
        *,
        margin: float = 0.3,
        soft: bool = False,
        metric: str = "euclidean",
        eps: float = 1e-6,
        memory: int = 0,
        memory_start: int = 0,
        memory_weight: float = 1.0,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(margin, "margin", strict=False)
        check_metric(metric)
        check_eps(eps)
        self.memory_start = check_int(memory_start, "memory_start", low=0)
        check_positive(memory_weight, "memory_weight", strict=False)
        self.margin = float(margin)
        self.soft = bool(soft)
        self.metric = metric
        self.eps = float(eps)
        self.memory_weight = float(memory_weight)
        self.bank: EmbeddingMemory | None = None
        if check_int(memory, "memory", low=0):
            if embedding_dim is None:
                raise OptionError(
                    f"embedding_dim: a cross-batch memory (memory={memory}) needs the embedding "
                    "width, got None"
                )
            self.bank = EmbeddingMemory(size=memory, dim=embedding_dim)
            self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (N, D) embeddings with (N,) integer labels."""
        value = batch_hard_triplet_loss(
            embeddings, labels, margin=self.margin, soft=self.soft, metric=self.metric, eps=self.eps
        )
        if self.bank is None or not self.training:
            return value
        if embeddings.shape[1] != self.bank.dim:
            raise ShapeError(
                f"embeddings: expected (N, {self.bank.dim}) (the memory's embedding_dim), "
                f"got {tuple(embeddings.shape)}"
            )
        self.calls += 1
        if int(self.calls) > self.memory_start and len(self.bank) > 0:
            ref, ref_labels = self.bank.contents()
            extra = _triplet(
                embeddings, labels, ref, ref_labels, self.margin, self.soft, self.metric, self.eps
            )
            if extra is not None:
                value = value + self.memory_weight * extra
        self.bank.add(embeddings, labels)
        return value

    def extra_repr(self) -> str:
        text = f"margin={self.margin}, soft={self.soft}, metric={self.metric!r}"
        if self.bank is not None:
            text += f", memory_start={self.memory_start}, memory_weight={self.memory_weight}"
        return text
