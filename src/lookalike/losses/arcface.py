"""ArcFace: additive angular margin softmax, with optional sub-centres; class weights live in the loss.

Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR
2019; sub-centres from Deng et al., "Sub-center ArcFace", ECCV 2020. The descriptor network outputs
embeddings only: the ``(C * k, D)`` class centres are an ``nn.Parameter`` of :class:`ArcFaceLoss`, and
the training engine hands them to the optimiser with the network's parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_finite, check_not_empty, check_positive, check_shape
from lookalike.core.errors import OptionError, ValueRangeError
from lookalike.losses._distance import check_labels, safe_sqrt

__all__ = ["ArcFaceLoss", "arcface_logits", "arcface_loss"]


def _check_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{name}: expected an integer >= 1, got {value!r}")


def _check_margin(margin: float) -> None:
    check_positive(margin, "margin", strict=False)
    if margin >= math.pi / 2:
        raise OptionError(f"margin: expected an angle in radians in [0, pi/2), got {margin!r}")


def arcface_logits(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    *,
    scale: float = 30.0,
    margin: float = 0.5,
    sub_centers: int = 1,
) -> torch.Tensor:
    """Scaled ArcFace logits ``s * cos(theta_j)`` with ``s * cos(theta_y + m)`` for the true class.

    ``cos(theta_j)`` is the cosine between the embedding and class ``j``'s centre; with ``k``
    sub-centres it is the largest cosine over the class's ``k`` centres (rows ``j * k ... j * k + k - 1``
    of ``weight``).

    Convention:
        ``margin`` is an angle in radians (0.5 rad = 28.6 degrees, the paper's value). Past
        ``theta_y > pi - m`` the angle plus margin would wrap around and *raise* the target logit, so
        there the target logit is ``cos(theta_y) - m sin(m)`` instead (as in the insightface code).
        ``sin(theta) = sqrt(1 - cos²)`` has a zero gradient at ``cos = ±1`` (no NaN for an embedding
        exactly on its centre). An all-zero embedding has cosine 0 to every class.

    Args:
        embeddings: (N, D) embeddings (any norm; normalised here).
        labels: (N,) integer class labels in ``[0, C)``.
        weight: (C * k, D) class centres (any norm; normalised here).
        scale: logit scale ``s > 0``.
        margin: additive angular margin ``m`` in radians, ``0 <= m < pi/2``.
        sub_centers: centres per class ``k >= 1``.

    Returns:
        (N, C) logits in the dtype of ``embeddings``.

    Raises:
        ShapeError: shapes are not (N, D), (N,) and (C * k, D), or ``C * k`` is not a multiple of ``k``.
        DTypeError: labels are not integers.
        ValueRangeError: a label outside ``[0, C)``; NaN or infinite embeddings.
        OptionError: a bad ``scale``, ``margin`` or ``sub_centers``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0]])
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> arcface_logits(x, torch.tensor([1]), w, scale=1.0, margin=0.5)  # cos(pi/2 + 0.5) = -sin(0.5)
        tensor([[ 1.0000, -0.4794]])
    """
    dims = check_shape(embeddings, ["N", "D"], "embeddings")
    check_labels(labels, dims)
    check_shape(weight, ["CK", "D"], "weight", dims)
    check_not_empty(embeddings, "embeddings")
    check_finite(embeddings, "embeddings")
    check_positive(scale, "scale")
    _check_margin(margin)
    _check_int(sub_centers, "sub_centers")
    if weight.shape[0] % sub_centers:
        raise ValueRangeError(
            f"weight: expected a multiple of sub_centers={sub_centers} rows, got {weight.shape[0]}"
        )
    classes = weight.shape[0] // sub_centers
    if bool((labels < 0).any()) or bool((labels >= classes).any()):
        raise ValueRangeError(
            f"labels: expected values in [0, {classes}), got [{int(labels.min())}, {int(labels.max())}]"
        )
    cos = F.normalize(embeddings, dim=1) @ F.normalize(weight.to(embeddings.dtype), dim=1).T
    cos = cos.view(-1, classes, sub_centers).amax(dim=2).clamp(-1.0, 1.0)
    target = cos.gather(1, labels.view(-1, 1).to(cos.device))
    sin = safe_sqrt(1.0 - target * target)
    shifted = target * math.cos(margin) - sin * math.sin(margin)
    fallback = target - margin * math.sin(margin)
    shifted = torch.where(target > math.cos(math.pi - margin), shifted, fallback)
    logits = cos.scatter(1, labels.view(-1, 1).to(cos.device), shifted)
    return scale * logits


def arcface_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    *,
    scale: float = 30.0,
    margin: float = 0.5,
    sub_centers: int = 1,
) -> torch.Tensor:
    """Mean cross entropy of :func:`arcface_logits` (arguments and errors as there).

    Example:
        >>> import torch
        >>> x, w = torch.eye(3), torch.eye(3)
        >>> round(arcface_loss(x, torch.arange(3), w, scale=10.0, margin=0.0).item(), 4)
        0.0001
    """
    logits = arcface_logits(
        embeddings, labels, weight, scale=scale, margin=margin, sub_centers=sub_centers
    )
    return F.cross_entropy(logits, labels.to(logits.device).long())


@register("loss", "arcface")
class ArcFaceLoss(nn.Module):
    """ArcFace loss holding the class centres as a parameter; see :func:`arcface_loss`.

    Args:
        num_classes: number of classes ``C``.
        embedding_dim: embedding width ``D``.
        scale: logit scale ``s`` (default 30).
        margin: additive angular margin in radians (default 0.5).
        sub_centers: centres per class ``k`` (default 1, plain ArcFace).

    Attributes:
        weight: ``(C * k, D)`` class centres, Xavier-uniform initialised from the global torch RNG.

    Example:
        >>> import torch, lookalike
        >>> crit = lookalike.create("loss", "arcface", num_classes=5, embedding_dim=8, sub_centers=2)
        >>> crit.weight.shape
        torch.Size([10, 8])
        >>> bool(crit(torch.randn(4, 8), torch.tensor([0, 1, 2, 4])) > 0)
        True
    """

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        scale: float = 30.0,
        margin: float = 0.5,
        sub_centers: int = 1,
    ) -> None:
        super().__init__()
        _check_int(num_classes, "num_classes")
        _check_int(embedding_dim, "embedding_dim")
        _check_int(sub_centers, "sub_centers")
        check_positive(scale, "scale")
        _check_margin(margin)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.scale = float(scale)
        self.margin = float(margin)
        self.sub_centers = sub_centers
        self.weight = nn.Parameter(torch.empty(num_classes * sub_centers, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C) margin logits of (N, D) embeddings with (N,) labels."""
        return arcface_logits(
            embeddings,
            labels,
            self.weight,
            scale=self.scale,
            margin=self.margin,
            sub_centers=self.sub_centers,
        )

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (N, D) embeddings with (N,) integer labels in ``[0, C)``."""
        return F.cross_entropy(self.logits(embeddings, labels), labels.long())

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"scale={self.scale}, margin={self.margin}, sub_centers={self.sub_centers}"
        )
