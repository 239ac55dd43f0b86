"""Label-smoothed softmax cross entropy with the classifier weights inside the loss.

The descriptor outputs embeddings only; this loss holds a bias-free linear classifier ``(C, D)`` and
applies ``F.cross_entropy(embeddings @ weight.T, labels, label_smoothing=eps)`` (Szegedy et al. 2016;
the "label smoothing" trick of Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
Re-identification", 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_finite, check_int, check_not_empty, check_shape
from lookalike.core.errors import OptionError, ValueRangeError
from lookalike.losses._distance import check_labels

__all__ = ["ClassifierCrossEntropy"]


@register("loss", "cross_entropy")
class ClassifierCrossEntropy(nn.Module):
    """Linear classifier + label-smoothed cross entropy, the classifier weights living in the loss.

    Args:
        num_classes: number of classes ``C``.
        embedding_dim: embedding width ``D``.
        label_smoothing: ``F.cross_entropy``'s smoothing in ``[0, 1)`` (default 0.1).

    Attributes:
        weight: ``(C, D)`` classifier weights (normal init, std 0.001, as the re-ID baselines).

    Convention:
        Logits are ``embeddings @ weight.T`` (no bias, no normalisation); labels are in ``[0, C)``.

    Example:
        >>> import torch, lookalike
        >>> crit = lookalike.create("loss", "cross_entropy", num_classes=3, embedding_dim=4)
        >>> x = torch.zeros(2, 4)  # uniform logits: loss = log(3) whatever the smoothing
        >>> round(crit(x, torch.tensor([0, 2])).item(), 4)
        1.0986
    """

    def __init__(
        self, *, num_classes: int, embedding_dim: int, label_smoothing: float = 0.1
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            check_int(value, name)
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise OptionError(
                f"label_smoothing: expected a number in [0, 1), got {label_smoothing!r}"
            )
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.label_smoothing = float(label_smoothing)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (N, D) embeddings with (N,) integer labels in ``[0, C)``."""
        dims = check_shape(embeddings, ["N", str(self.embedding_dim)], "embeddings")
        check_labels(labels, dims)
        check_not_empty(embeddings, "embeddings")
        check_finite(embeddings, "embeddings")
        if bool((labels < 0).any()) or bool((labels >= self.num_classes).any()):
            raise ValueRangeError(
                f"labels: expected values in [0, {self.num_classes}), "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )
        logits = embeddings @ self.weight.to(embeddings.dtype).T
        return F.cross_entropy(logits, labels.long(), label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"label_smoothing={self.label_smoothing}"
        )
