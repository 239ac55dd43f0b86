"""Re-ranking of global descriptors as pure functions: αQE, DBA and label voting.

- :func:`alpha_query_expansion`: Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No
  Human Annotation", TPAMI 2018: a query becomes the similarity-weighted sum ``sum_i s_i^alpha x_i``
  of itself and its top-``k`` database neighbours.
- :func:`database_augmentation`: database-side augmentation (DBA, Arandjelović & Zisserman, CVPR
  2012; weighted as in αQE): every database vector is replaced by the same weighted sum over its own
  neighbourhood, computed once offline.
- :func:`knn_labels` and :func:`label_voting`: the 2021 landmark-retrieval winners' soft re-ranking
  (Henkel & Singer, "Supporting large-scale image recognition with out-of-domain samples", 2021):
  query and index images get a label and a confidence from their nearest neighbours in a labelled
  set; index images whose label agrees with the query's move up, disagreeing ones move down.

Convention:
    Rows are L2-normalised descriptors compared by the dot product (cosine). Negative similarities
    weigh zero in the expansions (``max(s, 0) ** alpha``). Outputs are L2-normalised; an all-zero row
    (the flat-input descriptor) stays all-zero. Ties between neighbours are broken by index.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lookalike.core.check import check_finite, check_positive, check_shape, check_tensor
from lookalike.core.errors import OptionError

__all__ = ["alpha_query_expansion", "database_augmentation", "knn_labels", "label_voting", "top_k"]


def _rows(x: Any, name: str, dims: dict | None = None, spec=("N", "D")) -> torch.Tensor:
    check_tensor(x, name)
    dims = check_shape(x, list(spec), name, dims)
    if not x.is_floating_point():
        raise OptionError(f"{name}: expected floating rows, got {x.dtype}")
    check_finite(x, name)
    return x


def _check_k(k: int, name: str = "k", low: int = 0) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < low:
        raise OptionError(f"{name}: expected an integer >= {low}, got {k!r}")


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` largest entries of each row, ties broken by the lower index.

    Example:
        >>> import torch
        >>> top_k(torch.tensor([[0.5, 0.9, 0.9, 0.1]]), 2)[1].tolist()
        [[1, 2]]
    """
    check_tensor(scores, "scores")
    check_shape(scores, ["Q", "N"], "scores")
    _check_k(k, low=1)
    k = min(k, scores.shape[1])
    order = torch.sort(scores, dim=1, descending=True, stable=True)
    return order.values[:, :k], order.indices[:, :k]


def _expand(x: torch.Tensor, database: torch.Tensor, k: int, alpha: float, skip_self: bool):
    scores = x @ database.T
    if skip_self:
        # Each database row is its own first neighbour; it is already counted with weight 1 below.
        scores = scores.clone()
        scores.fill_diagonal_(-float("inf"))
    values, index = top_k(scores, k)
    weights = values.clamp(min=0).pow(alpha)
    weights = torch.where(torch.isfinite(weights), weights, torch.zeros_like(weights))
    summed = x + (weights[..., None] * database[index]).sum(dim=1)
    zero = x.abs().sum(dim=1, keepdim=True) == 0
    return torch.where(zero, torch.zeros_like(summed), F.normalize(summed, dim=1))


def alpha_query_expansion(
    queries: torch.Tensor, database: torch.Tensor, *, k: int = 2, alpha: float = 3.0
) -> torch.Tensor:
    """αQE: ``q' = normalise(q + sum_{i <= k} max(s_i, 0)^alpha x_i)`` over the top-``k`` database rows.

    Args:
        queries: ``(Q, D)`` L2-normalised query descriptors.
        database: ``(N, D)`` L2-normalised database descriptors.
        k: neighbours added (``0`` returns the queries unchanged).
        alpha: similarity exponent ``>= 0`` (0: plain average query expansion).

    Returns:
        ``(Q, D)`` expanded, L2-normalised queries.

    Example:
        >>> import torch
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> db = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
        >>> alpha_query_expansion(q, db, k=1, alpha=1.0)  # q + 0.6 * (0.6, 0.8) = (1.36, 0.48)
        tensor([[0.9430, 0.3328]])
    """
    dims: dict = {}
    _rows(queries, "queries", dims, spec=("Q", "D"))
    _rows(database, "database", dims)
    _check_k(k)
    check_positive(alpha, "alpha", strict=False)
    if k == 0 or database.shape[0] == 0:
        return queries
    return _expand(queries, database.to(queries.dtype), k, float(alpha), skip_self=False)


def database_augmentation(
    database: torch.Tensor, *, k: int = 2, alpha: float = 3.0
) -> torch.Tensor:
    """DBA: every database row becomes ``normalise(x + sum_{i <= k} max(s_i, 0)^alpha x_i)`` over its
    top-``k`` neighbours in the database (itself excluded, then counted once with weight 1).

    Example:
        >>> import torch
        >>> db = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> database_augmentation(db, k=1, alpha=1.0)[2]  # (0, 1) + 0.8 * (0.6, 0.8)
        tensor([0.2809, 0.9597])
    """
    _rows(database, "database")
    _check_k(k)
    check_positive(alpha, "alpha", strict=False)
    if k == 0 or database.shape[0] < 2:
        return database
    return _expand(database, database, min(k, database.shape[0] - 1), float(alpha), skip_self=True)


def knn_labels(
    features: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor, *, k: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and confidence of each row by voting of its top-``k`` labelled neighbours.

    Each neighbour votes for its label with its cosine similarity; the label with the largest vote
    wins, its confidence is that vote divided by ``k`` (in ``[-1, 1]``).

    Args:
        features: ``(M, D)`` L2-normalised rows to label.
        reference: ``(R, D)`` L2-normalised labelled rows.
        reference_labels: ``(R,)`` integer labels ``>= 0``.
        k: neighbours that vote.

    Returns:
        ``(labels (M,) int64, confidence (M,) float)``.

    Example:
        >>> import torch
        >>> ref = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> knn_labels(torch.tensor([[1.0, 0.0]]), ref, torch.tensor([4, 4, 7]), k=2)
        (tensor([4]), tensor([0.9000]))
    """
    dims: dict = {}
    _rows(features, "features", dims)
    _rows(reference, "reference", dims, spec=("R", "D"))
    check_shape(reference_labels, ["R"], "reference_labels", dims)
    if reference_labels.is_floating_point() or bool((reference_labels < 0).any()):
        raise OptionError("reference_labels: expected integer labels >= 0")
    _check_k(k, low=1)
    values, index = top_k(features @ reference.to(features.dtype).T, k)
    labels = reference_labels.to(features.device)[index]
    classes = int(reference_labels.max()) + 1
    votes = torch.zeros(features.shape[0], classes, dtype=features.dtype, device=features.device)
    votes.scatter_add_(1, labels, values)
    # Labels no neighbour voted for must not win with a zero vote over negative ones.
    voted = torch.zeros_like(votes, dtype=torch.bool).scatter_(1, labels, True)
    best = votes.masked_fill(~voted, -float("inf")).max(dim=1)
    return best.indices, best.values / values.shape[1]


def label_voting(
    scores: torch.Tensor,
    query_labels: torch.Tensor,
    query_confidence: torch.Tensor,
    database_labels: torch.Tensor,
    database_confidence: torch.Tensor,
    *,
    weight: float = 1.0,
) -> torch.Tensor:
    """Soft up/down-ranking: ``s'_qn = s_qn + weight * agree_qn * c_q * c_n``.

    ``agree_qn`` is ``+1`` when query ``q`` and database item ``n`` carry the same label, ``-1`` when
    both are labelled differently, ``0`` when either is unlabelled (a negative label).

    Args:
        scores: ``(Q, N)`` similarities.
        query_labels, query_confidence: ``(Q,)`` labels and confidences (e.g. from :func:`knn_labels`).
        database_labels, database_confidence: ``(N,)`` the same for the database.
        weight: strength ``>= 0`` of the vote.

    Returns:
        ``(Q, N)`` adjusted scores (sort them descending for the new ranking).

    Example:
        >>> import torch
        >>> s = torch.tensor([[0.5, 0.6, 0.4]])
        >>> label_voting(s, torch.tensor([1]), torch.tensor([1.0]), torch.tensor([1, 2, -1]),
        ...              torch.tensor([0.5, 0.5, 0.9]), weight=0.2)
        tensor([[0.6000, 0.5000, 0.4000]])
    """
    dims = check_shape(scores, ["Q", "N"], "scores")
    for name, x, dim in (
        ("query_labels", query_labels, "Q"),
        ("query_confidence", query_confidence, "Q"),
        ("database_labels", database_labels, "N"),
        ("database_confidence", database_confidence, "N"),
    ):
        check_tensor(x, name)
        check_shape(x, [dim], name, dims)
    check_positive(weight, "weight", strict=False)
    ql, dl = query_labels.to(scores.device), database_labels.to(scores.device)
    labelled = (ql[:, None] >= 0) & (dl[None, :] >= 0)
    agree = torch.where(ql[:, None] == dl[None, :], 1.0, -1.0).to(scores.dtype)
    agree = torch.where(labelled, agree, torch.zeros_like(agree))
    conf = query_confidence.to(scores)[:, None] * database_confidence.to(scores)[None, :]
    return scores + weight * agree * conf
