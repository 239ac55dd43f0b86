"""Margin softmax losses: ArcFace (fixed or per-class dynamic margins, sub-centres) and CosFace.

Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR
2019; sub-centres from Deng et al., "Sub-center ArcFace", ECCV 2020; dynamic margins from Ha et al.,
"Google Landmark Recognition 2020 Competition Third Place Solution" (used again by the 2021 retrieval
winners); Wang et al., "CosFace: Large Margin Cosine Loss", CVPR 2018. The descriptor network outputs
embeddings only: the ``(C * k, D)`` class centres are an ``nn.Parameter`` of the loss module, and the
training engine hands them to the optimiser with the network's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import (
    check_finite,
    check_int,
    check_not_empty,
    check_positive,
    check_shape,
)
from lookalike.core.errors import OptionError, ShapeError, ValueRangeError
from lookalike.losses._distance import check_labels, safe_sqrt

__all__ = [
    "ArcFaceLoss",
    "CosFaceLoss",
    "arcface_logits",
    "arcface_loss",
    "cosface_logits",
    "dynamic_margins",
]


def _check_margin(margin: float | torch.Tensor, classes: int | None = None) -> None:
    if torch.is_tensor(margin):
        if classes is not None and tuple(margin.shape) != (classes,):
            raise ShapeError(
                f"margin: expected a number or ({classes},) per-class margins, got shape "
                f"{tuple(margin.shape)}"
            )
        if margin.numel() and not bool(((margin >= 0) & (margin < math.pi / 2)).all()):
            raise ValueRangeError(
                f"margin: expected angles in radians in [0, pi/2), got [{float(margin.min())}, "
                f"{float(margin.max())}]"
            )
        return
    check_positive(margin, "margin", strict=False)
    if margin >= math.pi / 2:
        raise OptionError(f"margin: expected an angle in radians in [0, pi/2), got {margin!r}")


def dynamic_margins(
    class_counts: Sequence[int] | torch.Tensor, *, a: float = 0.45, b: float = 0.05
) -> torch.Tensor:
    """Per-class margins ``m_c = a * minmax(n_c ** -0.25) + b``: rare classes get larger margins.

    ``minmax(v) = (v - min v) / (max v - min v)`` over the classes, so the margins span ``[b, a + b]``
    (the most frequent class gets ``b``, the rarest ``a + b``).

    Convention:
        When every class has the same count, ``minmax`` is undefined: every class gets the middle
        margin ``b + a / 2``. Counts must be ``>= 1`` (a class without a sample has no margin to set).

    Args:
        class_counts: ``(C,)`` training samples per class, integers ``>= 1``.
        a: margin span, ``>= 0``.
        b: smallest margin, ``>= 0``; ``a + b < pi / 2``.

    Returns:
        ``(C,)`` float32 margins in radians.

    Raises:
        ShapeError: ``class_counts`` is not 1-D.
        EmptyInputError: no class.
        ValueRangeError: a count below 1.
        OptionError: bad ``a`` or ``b``.

    Example:
        >>> dynamic_margins([1, 16, 10000])  # n^-1/4 = 1, 0.5, 0.1 -> minmax 1, 4/9, 0
        tensor([0.5000, 0.2500, 0.0500])
    """
    counts = torch.as_tensor(class_counts, dtype=torch.float64).cpu()
    check_shape(counts, ["C"], "class_counts")
    check_not_empty(counts, "class_counts")
    check_positive(a, "a", strict=False)
    check_positive(b, "b", strict=False)
    if a + b >= math.pi / 2:
        raise OptionError(f"a + b: expected a largest margin below pi/2, got {a + b!r}")
    if not bool((counts >= 1).all()):
        raise ValueRangeError(f"class_counts: expected counts >= 1, got min {float(counts.min())}")
    v = counts.pow(-0.25)
    span = v.max() - v.min()
    if float(span) == 0.0:
        return torch.full(counts.shape, b + a / 2, dtype=torch.float32)
    return (a * (v - v.min()) / span + b).float()


def _cosines(
    embeddings: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, sub_centers: int
) -> torch.Tensor:
    """Door checks shared by the margin losses, then the ``(N, C)`` best-sub-centre cosines."""
    dims = check_shape(embeddings, ["N", "D"], "embeddings")
    check_labels(labels, dims)
    check_shape(weight, ["CK", "D"], "weight", dims)
    check_not_empty(embeddings, "embeddings")
    check_finite(embeddings, "embeddings")
    check_int(sub_centers, "sub_centers")
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
    return cos.view(-1, classes, sub_centers).amax(dim=2).clamp(-1.0, 1.0)


def arcface_logits(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    *,
    scale: float = 30.0,
    margin: float | torch.Tensor = 0.5,
    sub_centers: int = 1,
) -> torch.Tensor:
    """Scaled ArcFace logits ``s * cos(theta_j)`` with ``s * cos(theta_y + m_y)`` for the true class.

    ``cos(theta_j)`` is the cosine between the embedding and class ``j``'s centre; with ``k``
    sub-centres it is the largest cosine over the class's ``k`` centres (rows ``j * k ... j * k + k - 1``
    of ``weight``, the layout of pytorch-metric-learning's ``SubCenterArcFaceLoss``).

    Convention:
        ``margin`` is an angle in radians (0.5 rad = 28.6 degrees, the paper's value), one number
        for every class or a ``(C,)`` tensor of per-class margins (:func:`dynamic_margins`). Past
        ``theta_y > pi - m`` the angle plus margin would wrap around and *raise* the target logit, so
        there the target logit is ``cos(theta_y) - m sin(m)`` instead (as in the insightface code).
        ``sin(theta) = sqrt(1 - cos²)`` has a zero gradient at ``cos = ±1`` (no NaN for an embedding
        exactly on its centre). An all-zero embedding has cosine 0 to every class.

    Args:
        embeddings: (N, D) embeddings (any norm; normalised here).
        labels: (N,) integer class labels in ``[0, C)``.
        weight: (C * k, D) class centres (any norm; normalised here).
        scale: logit scale ``s > 0``.
        margin: additive angular margin ``m`` in radians, ``0 <= m < pi/2``, or ``(C,)`` margins.
        sub_centers: centres per class ``k >= 1``.

    Returns:
        (N, C) logits in the dtype of ``embeddings``.

    Raises:
        ShapeError: shapes are not (N, D), (N,) and (C * k, D); per-class margins not ``(C,)``.
        DTypeError: labels are not integers.
        ValueRangeError: a label outside ``[0, C)``; NaN or infinite embeddings; ``C * k`` not a
            multiple of ``k``; a per-class margin outside ``[0, pi/2)``.
        OptionError: a bad ``scale``, ``margin`` or ``sub_centers``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0]])
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> arcface_logits(x, torch.tensor([1]), w, scale=1.0, margin=0.5)  # cos(pi/2 + 0.5) = -sin(0.5)
        tensor([[ 1.0000, -0.4794]])
    """
    check_positive(scale, "scale")
    cos = _cosines(embeddings, labels, weight, sub_centers)
    _check_margin(margin, cos.shape[1])
    index = labels.view(-1, 1).to(cos.device)
    target = cos.gather(1, index)
    if torch.is_tensor(margin):
        m = margin.to(device=cos.device, dtype=cos.dtype)[index]
        cos_m, sin_m = torch.cos(m), torch.sin(m)
        threshold = torch.cos(math.pi - m)
    else:
        m, cos_m, sin_m = margin, math.cos(margin), math.sin(margin)
        threshold = math.cos(math.pi - margin)
    sin = safe_sqrt(1.0 - target * target)
    shifted = target * cos_m - sin * sin_m
    fallback = target - m * sin_m
    shifted = torch.where(target > threshold, shifted, fallback)
    return scale * cos.scatter(1, index, shifted)


def arcface_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    *,
    scale: float = 30.0,
    margin: float | torch.Tensor = 0.5,
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


def cosface_logits(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    *,
    scale: float = 30.0,
    margin: float = 0.35,
    sub_centers: int = 1,
) -> torch.Tensor:
    """Scaled CosFace logits ``s * cos(theta_j)`` with ``s * (cos(theta_y) - m)`` for the true class.

    Arguments, sub-centres and errors as :func:`arcface_logits`; ``margin`` is a cosine offset
    ``>= 0`` (0.35 in the paper), not an angle.

    Example:
        >>> import torch
        >>> x, w = torch.tensor([[1.0, 0.0]]), torch.eye(2)
        >>> cosface_logits(x, torch.tensor([0]), w, scale=2.0, margin=0.25)
        tensor([[1.5000, 0.0000]])
    """
    check_positive(scale, "scale")
    check_positive(margin, "margin", strict=False)
    cos = _cosines(embeddings, labels, weight, sub_centers)
    index = labels.view(-1, 1).to(cos.device)
    return scale * cos.scatter(1, index, cos.gather(1, index) - margin)


class _MarginLoss(nn.Module):
    """Class centres as a parameter, sub-centres and scale: what ArcFace and CosFace share."""

    def __init__(self, num_classes: int, embedding_dim: int, scale: float, sub_centers: int):
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(embedding_dim, "embedding_dim")
        check_int(sub_centers, "sub_centers")
        check_positive(scale, "scale")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.scale = float(scale)
        self.sub_centers = sub_centers
        self.weight = nn.Parameter(torch.empty(num_classes * sub_centers, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (N, D) embeddings with (N,) integer labels in ``[0, C)``."""
        return F.cross_entropy(self.logits(embeddings, labels), labels.long())


@register("loss", "arcface")
class ArcFaceLoss(_MarginLoss):
    """ArcFace loss holding the class centres as a parameter; see :func:`arcface_loss`.

    Args:
        num_classes: number of classes ``C``.
        embedding_dim: embedding width ``D``.
        scale: logit scale ``s`` (default 30; the 2021 landmark winners use 45 with dynamic margins).
        margin: additive angular margin in radians (default 0.5), or ``"dynamic"`` for per-class
            margins from ``class_counts`` (:func:`dynamic_margins`).
        sub_centers: centres per class ``k`` (default 1, plain ArcFace; 3 in Sub-center ArcFace).
        class_counts: ``(C,)`` training samples per class; required by ``margin="dynamic"``
            and unused with a fixed margin (the ``labelled`` task may pass it either way).
        margin_a: span ``a`` of the dynamic margins (default 0.45).
        margin_b: smallest dynamic margin ``b`` (default 0.05).

    Attributes:
        weight: ``(C * k, D)`` class centres, Xavier-uniform initialised from the global torch RNG.
        margins: ``(C,)`` buffer of per-class margins (``margin="dynamic"`` only, saved with the
            weights).

    Example:
        >>> import torch, lookalike
        >>> crit = lookalike.create("loss", "arcface", num_classes=5, embedding_dim=8, sub_centers=2)
        >>> crit.weight.shape
        torch.Size([10, 8])
        >>> bool(crit(torch.randn(4, 8), torch.tensor([0, 1, 2, 4])) > 0)
        True
        >>> dyn = ArcFaceLoss(num_classes=3, embedding_dim=8, margin="dynamic", class_counts=[1, 16, 10000])
        >>> dyn.margins
        tensor([0.5000, 0.2500, 0.0500])
    """

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        scale: float = 30.0,
        margin: float | str = 0.5,
        sub_centers: int = 1,
        class_counts: Sequence[int] | None = None,
        margin_a: float = 0.45,
        margin_b: float = 0.05,
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale, sub_centers)
        self.margins: torch.Tensor | None
        if isinstance(margin, str):
            if margin != "dynamic":
                raise OptionError(f"margin: expected a number or 'dynamic', got {margin!r}")
            if class_counts is None:
                raise OptionError("class_counts: required with margin='dynamic', got None")
            margins = dynamic_margins(class_counts, a=margin_a, b=margin_b)
            if margins.shape[0] != num_classes:
                raise ShapeError(
                    f"class_counts: expected {num_classes} counts, got {margins.shape[0]}"
                )
            self.register_buffer("margins", margins)
            self.margin: float | str = "dynamic"
        else:
            _check_margin(margin)
            self.margin = float(margin)
            self.margins = None

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C) margin logits of (N, D) embeddings with (N,) labels."""
        margin = self.margins if self.margins is not None else self.margin
        return arcface_logits(
            embeddings,
            labels,
            self.weight,
            scale=self.scale,
            margin=margin,
            sub_centers=self.sub_centers,
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"scale={self.scale}, margin={self.margin}, sub_centers={self.sub_centers}"
        )


@register("loss", "cosface")
class CosFaceLoss(_MarginLoss):
    """CosFace (large margin cosine) loss holding the class centres; see :func:`cosface_logits`.

    Args:
        num_classes: number of classes ``C``.
        embedding_dim: embedding width ``D``.
        scale: logit scale ``s`` (default 30).
        margin: cosine margin ``m >= 0`` (default 0.35).
        sub_centers: centres per class ``k`` (default 1).

    Example:
        >>> import torch
        >>> crit = CosFaceLoss(num_classes=4, embedding_dim=8)
        >>> bool(crit(torch.randn(3, 8), torch.tensor([0, 1, 3])) > 0)
        True
    """

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        scale: float = 30.0,
        margin: float = 0.35,
        sub_centers: int = 1,
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale, sub_centers)
        check_positive(margin, "margin", strict=False)
        self.margin = float(margin)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C) margin logits of (N, D) embeddings with (N,) labels."""
        return cosface_logits(
            embeddings,
            labels,
            self.weight,
            scale=self.scale,
            margin=self.margin,
            sub_centers=self.sub_centers,
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"scale={self.scale}, margin={self.margin}, sub_centers={self.sub_centers}"
        )
