"""HardNet loss: hardest-in-batch negative mining over a matched anchor/positive batch.

Mishchuk, Mishkin, Radenović, Matas, "Working hard to know your neighbor's margins: Local descriptor
learning loss", NeurIPS 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option, check_positive
from lookalike.losses._distance import (
    DegenerateBatchWarning,
    check_eps,
    check_labels,
    check_pair,
    pairwise_distance,
    warn_degenerate,
    zero_loss,
)

__all__ = ["LOSS_TYPES", "DegenerateBatchWarning", "HardNetLoss", "hardnet_loss"]

LOSS_TYPES: tuple[str, ...] = ("triplet_margin", "softmin", "contrastive")


def hardnet_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    margin: float = 1.0,
    loss_type: str = "triplet_margin",
    anchor_swap: bool = False,
    duplicate_threshold: float = 0.008,
    eps: float = 1e-6,
) -> torch.Tensor:
    """HardNet loss of a batch of matching descriptor pairs.

    Row ``i`` of ``anchors`` matches row ``i`` of ``positives``; every other positive (and, with
    ``anchor_swap``, every other anchor) is a negative candidate. With ``D`` the (N, N) distance matrix,
    ``D[i, j] = d(a_i, p_j)``, and ``d_pos_i = D[i, i]``:

    - ``d_neg_i = min_j D[i, j]`` over valid negatives ``j`` (the hardest non-matching positive);
    - with ``anchor_swap=True``, ``d_neg_i = min(min_j D[i, j], min_j D[j, i])``: the hardest of the
      closest non-matching positive to ``a_i`` and the closest non-matching anchor to ``p_i``.

    Per-anchor loss ``l_i`` by ``loss_type`` (all three as in the original HardNet code):

    - ``"triplet_margin"``: ``max(0, margin + d_pos_i - d_neg_i)``;
    - ``"softmin"``: ``-log(exp(-d_pos_i) / (exp(-d_pos_i) + exp(-d_neg_i)))``
      ``= softplus(d_pos_i - d_neg_i)`` (the original's ``"softmax"``, which shifts both exponents by
      2 and adds 1e-8 to the denominator; ``margin`` is unused);
    - ``"contrastive"``: ``max(0, margin - d_neg_i) + d_pos_i``.

    The result is the mean of ``l_i`` over the anchors that have at least one valid negative.

    Convention:
        Distances are Euclidean, ``d(x, y) = sqrt(|x - y|² + eps)`` with ``eps = 1e-6`` as in the
        original code, meant for L2-normalised rows (distances in ``[0, 2]``); ``margin`` is in the same
        units. A pair ``(i, j)``, ``j != i``, is **not** a valid negative when

        - ``D[i, j] < duplicate_threshold`` (default ``0.008``, the original HardNet rule): exact or
          near-duplicate patches in a batch would otherwise be their own hardest negatives. Exact
          duplicates are ``sqrt(eps) = 0.001`` apart, so they are always excluded;
          ``duplicate_threshold=0`` turns the rule off;
        - ``labels`` are given and ``labels[i] == labels[j]`` (same 3D point or identity).

        The original adds 10 to excluded entries instead of dropping them; both agree whenever every
        anchor keeps a valid negative. Anchors without any valid negative are left out of the mean. If
        no anchor has one (a batch of one, all labels equal, all rows duplicates), the loss is ``0``,
        attached to the graph (zero gradients), and a :class:`DegenerateBatchWarning` is issued.

    Args:
        anchors: (N, D) anchor descriptors.
        positives: (N, D) matching descriptors, row ``i`` matches ``anchors[i]``.
        labels: optional (N,) integer labels shared by ``anchors[i]`` and ``positives[i]``; pairs with
            equal labels are never used as negatives.
        margin: margin of ``"triplet_margin"`` and ``"contrastive"``, in distance units, ``>= 0``.
        loss_type: ``"triplet_margin"``, ``"softmin"`` or ``"contrastive"``.
        anchor_swap: also mine the hardest negative among the anchors, per positive (column).
        duplicate_threshold: negatives closer than this distance are ignored, ``>= 0``.
        eps: added under the square root of the distances, ``>= 0``.

    Returns:
        Scalar loss in the dtype of the inputs.

    Raises:
        ShapeError: shapes are not (N, D), (N, D) and (N,).
        DTypeError: labels are not integers.
        EmptyInputError: ``N == 0`` or ``D == 0``.
        ValueRangeError: NaN or infinite descriptors.
        OptionError: unknown ``loss_type`` or a negative ``margin``/``duplicate_threshold``/``eps``.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> a = F.normalize(torch.randn(16, 128, generator=torch.Generator().manual_seed(0)), dim=1)
        >>> p = F.normalize(a + 0.1 * torch.randn(16, 128, generator=torch.Generator().manual_seed(1)), dim=1)
        >>> loss = hardnet_loss(a, p, margin=1.0, anchor_swap=True)
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
    """
    dims = check_pair(anchors, positives)
    if labels is not None:
        check_labels(labels, dims)
    check_positive(margin, "margin", strict=False)
    check_option(loss_type, LOSS_TYPES, "loss_type")
    check_positive(duplicate_threshold, "duplicate_threshold", strict=False)
    check_eps(eps)

    n = anchors.shape[0]
    dist = pairwise_distance(anchors, positives, eps=eps)
    d_pos = torch.diagonal(dist)

    with torch.no_grad():
        invalid = torch.eye(n, dtype=torch.bool, device=dist.device)
        invalid |= dist < duplicate_threshold
        if labels is not None:
            lab = labels.to(dist.device)
            invalid |= lab[:, None] == lab[None, :]
    masked = dist.masked_fill(invalid, float("inf"))
    d_neg = masked.amin(dim=1)
    if anchor_swap:
        d_neg = torch.minimum(d_neg, masked.amin(dim=0))
    valid = torch.isfinite(d_neg)
    if not bool(valid.any()):
        warn_degenerate(
            f"hardnet_loss: no anchor of the batch (N={n}) has a valid negative "
            "(batch of one, all labels equal or all rows duplicates); returning 0"
        )
        return zero_loss(anchors, positives)
    d_pos, d_neg = d_pos[valid], d_neg[valid]
    if loss_type == "triplet_margin":
        per_anchor = F.relu(margin + d_pos - d_neg)
    elif loss_type == "softmin":
        per_anchor = F.softplus(d_pos - d_neg)
    else:  # contrastive
        per_anchor = F.relu(margin - d_neg) + d_pos
    return per_anchor.mean()


@register("loss", "hardnet")
class HardNetLoss(nn.Module):
    """HardNet loss (hardest in-batch negative) as a module; see :func:`hardnet_loss`.

    Args:
        margin: margin in Euclidean distance units (descriptors L2-normalised), default 1.0.
        loss_type: ``"triplet_margin"`` (default), ``"softmin"`` or ``"contrastive"``.
        anchor_swap: also mine negatives among the anchors.
        duplicate_threshold: negatives closer than this are ignored (default 0.008).
        eps: added under the square root of the distances (default 1e-6).

    Example:
        >>> import torch, lookalike
        >>> crit = lookalike.create("loss", "hardnet", anchor_swap=True)
        >>> a = torch.nn.functional.normalize(torch.randn(8, 32), dim=1)
        >>> float(crit(a, a.clone())) <= 1.0 + 1e-6
        True
    """

    def __init__(
        self,
        *,
        margin: float = 1.0,
        loss_type: str = "triplet_margin",
        anchor_swap: bool = False,
        duplicate_threshold: float = 0.008,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_positive(margin, "margin", strict=False)
        check_option(loss_type, LOSS_TYPES, "loss_type")
        check_positive(duplicate_threshold, "duplicate_threshold", strict=False)
        check_eps(eps)
        self.margin = float(margin)
        self.loss_type = loss_type
        self.anchor_swap = bool(anchor_swap)
        self.duplicate_threshold = float(duplicate_threshold)
        self.eps = float(eps)

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scalar loss of (N, D) anchors and matching (N, D) positives, optional (N,) labels."""
        return hardnet_loss(
            anchors,
            positives,
            labels,
            margin=self.margin,
            loss_type=self.loss_type,
            anchor_swap=self.anchor_swap,
            duplicate_threshold=self.duplicate_threshold,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, loss_type={self.loss_type!r}, anchor_swap={self.anchor_swap}, "
            f"duplicate_threshold={self.duplicate_threshold}"
        )
