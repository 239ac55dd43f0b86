"""ATSS positive-sample selection (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free
Detection via Adaptive Training Sample Selection", CVPR 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_dtype, check_finite, check_positive, check_shape
from lookalike.core.errors import ShapeError, ValueRangeError
from lookalike.layers._common import FLOAT_DTYPES, check_int

__all__ = ["ATSSAssigner", "ATSSAssignment", "atss_assign", "box_iou"]


class ATSSAssignment(NamedTuple):
    """Result of :func:`atss_assign` for ``N`` anchors.

    Attributes:
        gt_index: ``(N,)`` int64, the ground-truth box each anchor is assigned to, ``-1`` for negatives.
        overlaps: ``(N,)`` IoU of each anchor with its assigned box (``0`` for negatives).
        labels: ``(N,)`` int64 class of the assigned box (``-1`` for negatives), or ``None`` without
            ``gt_labels``.
    """

    gt_index: torch.Tensor
    overlaps: torch.Tensor
    labels: torch.Tensor | None


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` ``(x1, y1, x2, y2)`` boxes: ``(N, M)``.

    Example:
        >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2], [0.0, 0, 2, 2]]))
        tensor([[0.3333, 1.0000]])
    """
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    check_shape(boxes, ["N", "4"], name)
    check_dtype(boxes, FLOAT_DTYPES, name)
    check_finite(boxes, name)
    if boxes.numel() and not bool(
        ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    ):
        raise ValueRangeError(f"{name}: expected (x1, y1, x2, y2) boxes with x2 > x1 and y2 > y1")


def _candidates(distances: torch.Tensor, counts: Sequence[int], topk: int) -> torch.Tensor:
    """``(K, G)`` indices of the ``topk`` closest anchors of each level for every gt."""
    picked, start = [], 0
    for n in counts:
        k = min(topk, n)
        if k:
            idx = distances[start : start + n].topk(k, dim=0, largest=False).indices
            picked.append(idx + start)
        start += n
    if not picked:
        return distances.new_zeros((0, distances.shape[1]), dtype=torch.long)
    return torch.cat(picked, dim=0)


def atss_assign(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    num_level_anchors: Sequence[int],
    *,
    gt_labels: torch.Tensor | None = None,
    topk: int = 9,
    eps: float = 0.01,
) -> ATSSAssignment:
    """Adaptive training sample selection.

    For every ground-truth box ``g``:

    1. on every pyramid level, the ``topk`` anchors whose centres are closest (L2) to ``g``'s centre
       are candidates (all of a level's anchors when it has fewer);
    2. the IoU threshold is ``mean + std`` of the candidates' IoUs with ``g`` (``std`` with Bessel's
       correction, as ``torch.std`` and mmdetection; ``0`` for a single candidate);
    3. candidates with ``IoU >= threshold`` whose centre lies inside ``g`` (every distance to a side
       ``> eps``) are positives of ``g``.

    An anchor positive for several boxes goes to the one with the highest IoU (the first on ties).

    Args:
        anchors: ``(N, 4)`` ``(x1, y1, x2, y2)`` anchors, level by level.
        gt_boxes: ``(G, 4)`` ground-truth boxes.
        num_level_anchors: anchors per level (sums to ``N``).
        gt_labels: optional ``(G,)`` integer classes.
        topk: candidates per level and box (9 in the paper).
        eps: margin of the centre-inside check, in box units (mmdetection's 0.01).

    Returns:
        :class:`ATSSAssignment`; ``overlaps`` is differentiable with respect to the boxes.

    Raises:
        ShapeError: wrong shapes, or ``num_level_anchors`` not summing to ``N``.
        ValueRangeError: non-finite boxes or boxes with ``x2 <= x1`` or ``y2 <= y1``.

    Example:
        >>> anchors = torch.tensor([[0.0, 0, 4, 4], [4.0, 0, 8, 4], [8.0, 0, 12, 4]])
        >>> atss_assign(anchors, torch.tensor([[3.0, 0, 9, 4]]), [3], topk=3).gt_index
        tensor([-1,  0, -1])
    """
    _check_boxes(anchors, "anchors")
    _check_boxes(gt_boxes, "gt_boxes")
    counts = [check_int(int(n), "num_level_anchors", low=0) for n in num_level_anchors]
    if sum(counts) != anchors.shape[0]:
        raise ShapeError(
            f"num_level_anchors: expected counts summing to {anchors.shape[0]} anchors, got {counts}"
        )
    if gt_labels is not None:
        check_shape(gt_labels, [str(gt_boxes.shape[0])], "gt_labels")
    check_int(topk, "topk")
    check_positive(eps, "eps", strict=False)
    n, g = anchors.shape[0], gt_boxes.shape[0]
    iou = box_iou(anchors, gt_boxes)  # (N, G)
    a_ctr = (anchors[:, :2] + anchors[:, 2:]) / 2
    g_ctr = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    positive = torch.zeros(n, g, dtype=torch.bool, device=anchors.device)
    if n and g:
        cand = _candidates(torch.cdist(a_ctr.detach(), g_ctr.detach()), counts, topk)  # (K, G)
        cols = torch.arange(g, device=anchors.device).expand_as(cand)
        cand_iou = iou.detach()[cand, cols]
        std = cand_iou.std(dim=0) if cand.shape[0] > 1 else torch.zeros_like(cand_iou[0])
        good = cand_iou >= cand_iou.mean(dim=0) + std
        ctr = a_ctr.detach()[cand]  # (K, G, 2)
        sides = torch.cat(
            [ctr - gt_boxes.detach()[None, :, :2], gt_boxes.detach()[None, :, 2:] - ctr], -1
        )
        good &= sides.amin(dim=-1) > eps
        positive[cand[good], cols[good]] = True
    masked = torch.where(positive, iou.detach(), torch.full_like(iou, -torch.inf))
    best, index = (
        masked.max(dim=1)
        if g
        else (iou.new_full((n,), -torch.inf), iou.new_zeros(n, dtype=torch.long))
    )
    assigned = best > -torch.inf
    gt_index = torch.where(assigned, index, torch.full_like(index, -1))
    overlaps = (
        iou.gather(1, index.clamp(max=max(g - 1, 0))[:, None])[:, 0] if g else iou.new_zeros(n)
    )
    overlaps = torch.where(assigned, overlaps, torch.zeros_like(overlaps))
    labels = None
    if gt_labels is not None:
        labels = torch.full_like(gt_index, -1)
        labels[assigned] = gt_labels.to(torch.long)[gt_index[assigned]]
    return ATSSAssignment(gt_index, overlaps, labels)


@register("layer", "atss_assigner")
class ATSSAssigner(nn.Module):
    """ATSS assignment as a component: :meth:`assign` gives :class:`ATSSAssignment`; ``forward`` a dense matrix.

    Args:
        topk: candidates per level and box.
        eps: margin of the centre-inside check.

    Convention:
        ``forward(anchors, gt_boxes, num_level_anchors)`` returns the ``(N, G)`` assignment matrix:
        the IoU of anchor ``i`` with box ``j`` where ``i`` is assigned to ``j``, ``0`` elsewhere. Boxes
        have positive width and height, so an assigned anchor (its centre strictly inside the box) has
        a positive IoU: ``out[i].argmax()`` where ``out[i].any()`` is its box.

    Example:
        >>> anchors = torch.tensor([[0.0, 0, 4, 4], [4.0, 0, 8, 4], [8.0, 0, 12, 4]])
        >>> ATSSAssigner(topk=3)(anchors, torch.tensor([[3.0, 0, 9, 4]]), [3])
        tensor([[0.0000],
                [0.6667],
                [0.0000]])
    """

    def __init__(self, *, topk: int = 9, eps: float = 0.01) -> None:
        super().__init__()
        self.topk = check_int(topk, "topk")
        check_positive(eps, "eps", strict=False)
        self.eps = float(eps)

    def assign(
        self,
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        num_level_anchors: Sequence[int],
        gt_labels: torch.Tensor | None = None,
    ) -> ATSSAssignment:
        """:func:`atss_assign` with this assigner's options."""
        return atss_assign(
            anchors, gt_boxes, num_level_anchors, gt_labels=gt_labels, topk=self.topk, eps=self.eps
        )

    def forward(
        self, anchors: torch.Tensor, gt_boxes: torch.Tensor, num_level_anchors: Sequence[int]
    ) -> torch.Tensor:
        """The ``(N, G)`` assignment matrix (see Convention)."""
        result = self.assign(anchors, gt_boxes, num_level_anchors)
        g = gt_boxes.shape[0]
        onehot = torch.zeros(anchors.shape[0], g, dtype=torch.bool, device=anchors.device)
        hit = result.gt_index >= 0
        onehot[hit.nonzero()[:, 0], result.gt_index[hit]] = True
        return torch.where(onehot, box_iou(anchors, gt_boxes), torch.zeros((), dtype=anchors.dtype))
