"""Second-order similarity (SOS) regulariser of SOSNet.

Tian, Yu, Fan, Wu, Heijnen, Balntas, "SOSNet: Second Order Similarity Regularization for Local
Descriptor Learning", CVPR 2019. Kept separate from the first-order losses: a trainer adds it, e.g.
``hardnet_loss(a, p) + sos_regularizer(a, p)`` (the paper weights both terms by 1).
"""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError
from lookalike.losses._distance import (
    DegenerateBatchWarning,
    check_eps,
    check_pair,
    pairwise_distance,
    safe_sqrt,
    warn_degenerate,
    zero_loss,
)

__all__ = ["DegenerateBatchWarning", "SOSRegularizer", "knn_union_mask", "sos_regularizer"]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise OptionError(f"k: expected an integer >= 1, got {k!r}")
    check_positive(k, "k")


def _knn_mask(dist: torch.Tensor, k: int) -> torch.Tensor:
    """(N, N) bool mask of the ``k`` nearest ``j != i`` of each row ``i`` of ``dist``."""
    n = dist.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    idx = dist.masked_fill(eye, float("inf")).topk(k, dim=1, largest=False).indices
    mask = torch.zeros(n, n, dtype=torch.bool, device=dist.device)
    return mask.scatter_(1, idx, True)


def knn_union_mask(
    anchors: torch.Tensor, positives: torch.Tensor, *, k: int = 8, eps: float = 1e-6
) -> torch.Tensor:
    """Neighbourhoods of the SOS regulariser: ``j`` in kNN(a_i) among anchors or kNN(p_i) among positives.

    Args:
        anchors: (N, D) descriptors.
        positives: (N, D) matching descriptors.
        k: neighbours per space; ``min(k, N - 1)`` are used when the batch is smaller.
        eps: added under the square root of the distances.

    Returns:
        (N, N) bool mask, ``mask[i, j]`` true when ``j`` is in the neighbourhood of ``i``; the diagonal
        is false. Ties at the k-th distance pick one of the tied neighbours.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0], [1.0], [5.0], [6.0]])
        >>> knn_union_mask(a, a.flip(0), k=1).int().tolist()
        [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    """
    check_pair(anchors, positives)
    _check_k(k)
    check_eps(eps)
    with torch.no_grad():
        return _union(
            pairwise_distance(anchors, anchors, eps=eps),
            pairwise_distance(positives, positives, eps=eps),
            k,
        )


def _union(dist_a: torch.Tensor, dist_p: torch.Tensor, k: int) -> torch.Tensor:
    k_eff = min(k, dist_a.shape[0] - 1)
    with torch.no_grad():
        return _knn_mask(dist_a.detach(), k_eff) | _knn_mask(dist_p.detach(), k_eff)


def sos_regularizer(
    anchors: torch.Tensor, positives: torch.Tensor, *, k: int = 8, eps: float = 1e-6
) -> torch.Tensor:
    """Second-order similarity regulariser ``R_SOS`` of SOSNet.

    With ``d`` the Euclidean distance and ``c_i`` the union of the ``k`` nearest neighbours of ``a_i``
    among the anchors and of ``p_i`` among the positives (indices ``j != i``, see
    :func:`knn_union_mask`)::

        R_SOS = (1 / N) * sum_i sqrt( sum_{j in c_i} (d(a_i, a_j) - d(p_i, p_j))² )

    It is small when the anchors and the positives have the same neighbourhood geometry.

    Convention:
        Distances are ``sqrt(|x - y|² + eps)`` (``eps = 1e-6``), meant for L2-normalised rows. ``k``
        defaults to 8 as in the paper; a batch with ``N <= k`` uses its ``N - 1`` other rows. The
        outer square root has a zero gradient where its argument is exactly 0 (e.g. ``positives ==
        anchors``), so gradients stay finite. Neighbour selection is not differentiated (it is
        piecewise constant). A batch of one has no neighbours: the result is ``0``, attached to the
        graph, with a :class:`DegenerateBatchWarning`.

    Args:
        anchors: (N, D) anchor descriptors.
        positives: (N, D) matching descriptors, row ``i`` matches ``anchors[i]``.
        k: neighbours per space, integer ``>= 1``.
        eps: added under the square root of the pairwise distances, ``>= 0``.

    Returns:
        Scalar, ``>= 0``, in the dtype of the inputs.

    Raises:
        ShapeError: shapes are not (N, D) and (N, D).
        EmptyInputError: ``N == 0`` or ``D == 0``.
        ValueRangeError: NaN or infinite descriptors.
        OptionError: ``k`` not a positive integer, or negative ``eps``.

    Example:
        >>> import torch
        >>> a = torch.nn.functional.normalize(torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), dim=1)
        >>> float(sos_regularizer(a, a))  # same geometry in both spaces
        0.0
        >>> bool(sos_regularizer(a, a.roll(1, dims=0)) > 0)
        True
    """
    check_pair(anchors, positives)
    _check_k(k)
    check_eps(eps)
    n = anchors.shape[0]
    if n == 1:
        warn_degenerate("sos_regularizer: a batch of one has no neighbours; returning 0")
        return zero_loss(anchors, positives)
    dist_a = pairwise_distance(anchors, anchors, eps=eps)
    dist_p = pairwise_distance(positives, positives, eps=eps)
    mask = _union(dist_a, dist_p, k)
    diff = (dist_a - dist_p).masked_fill(~mask, 0.0)
    return safe_sqrt((diff * diff).sum(dim=1)).mean()


@register("loss", "sos")
class SOSRegularizer(nn.Module):
    """SOSNet second-order similarity regulariser as a module; see :func:`sos_regularizer`.

    Args:
        k: nearest neighbours per space (default 8, as in the paper).
        eps: added under the square root of the pairwise distances (default 1e-6).

    Example:
        >>> import torch, lookalike
        >>> reg = lookalike.create("loss", "sos", k=4)
        >>> a = torch.nn.functional.normalize(torch.randn(10, 16), dim=1)
        >>> float(reg(a, a))
        0.0
    """

    def __init__(self, *, k: int = 8, eps: float = 1e-6) -> None:
        super().__init__()
        _check_k(k)
        check_eps(eps)
        self.k = k
        self.eps = float(eps)

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Scalar regulariser of (N, D) anchors and matching (N, D) positives."""
        return sos_regularizer(anchors, positives, k=self.k, eps=self.eps)

    def extra_repr(self) -> str:
        return f"k={self.k}"
