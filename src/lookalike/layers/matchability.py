"""A matchability gate folded into unit descriptor rows: ``x → [sqrt(q) x, sqrt(1 - q)]``.

``q = sigmoid(w · x + b) ** gamma`` is a per-row "has a partner in the other view" score from a linear
head on the row itself. The output stays unit length and gains one coordinate, so any L2/cosine
matcher uses it unchanged; the cosine of two gated rows is

    ``sqrt(q_a q_b) x_a · x_b + sqrt((1 - q_a)(1 - q_b))``.

Rows with a low ``q`` crowd toward the shared last axis: they become the nearest neighbour of many rows
but the *mutual* nearest neighbour of few, so a mutual-NN matcher drops them unless their descriptor
agreement is strong, as RootSIFT's flat-histogram keypoints do. Fitted by
:func:`lookalike.train.matchability.fit_logistic` on partner labels of training pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_dtype, check_positive, check_shape
from lookalike.layers._common import check_int

__all__ = ["MatchabilityGate", "gate_rows"]


def gate_rows(rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``[sqrt(q) x, sqrt(1 - q)]`` per row; an all-zero row (no direction) stays all zeros.

    Args:
        rows: ``(B, D)`` unit (or all-zero) rows.
        q: ``(B,)`` gate values, clamped to ``[0, 1]``.

    Returns:
        ``(B, D + 1)`` rows in the dtype of ``rows``; unit length where ``rows`` is.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 0.0]])
        >>> gate_rows(x, torch.tensor([1.0, 0.0, 0.5])).tolist()
        [[0.6000000238418579, 0.800000011920929, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    check_shape(rows, ["B", "D"], "rows")
    check_shape(q, [rows.shape[0]], "q")
    q = q.to(rows.dtype).clamp(0.0, 1.0)[:, None]
    live = (rows.abs().sum(dim=1, keepdim=True) > 0).to(rows.dtype)
    return torch.cat([q.sqrt() * rows, (1.0 - q).sqrt() * live], dim=1)


@register("layer", "matchability_gate")
class MatchabilityGate(nn.Module):
    """Fold a learned partner score into unit rows: ``(B, D)`` → ``(B, D + 1)`` (see the module).

    Args:
        dim: ``D``, the size of the rows it gates.
        gamma: exponent on the sigmoid (> 0); larger values gate harder (fewer, surer mutual matches).

    Shape:
        ``(B, D)`` unit rows → ``(B, D + 1)`` unit rows (all-zero rows stay all zeros). The score and
        the gate are computed in float32 (float64 stays); the output has the input's dtype.

    Example:
        >>> import torch
        >>> gate = MatchabilityGate(4, gamma=1.0)  # zero head: q = 0.5 for every row
        >>> gate(torch.tensor([[1.0, 0.0, 0.0, 0.0]])).tolist()
        [[0.7071067690849304, 0.0, 0.0, 0.0, 0.7071067690849304]]
    """

    def __init__(self, dim: int, *, gamma: float = 3.0) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        check_positive(gamma, "gamma")
        self.gamma = float(gamma)
        self.score = nn.Linear(self.dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def partner_logit(self, rows: torch.Tensor) -> torch.Tensor:
        """``w · x + b`` per row, ``(B,)``, in float32 (float64 stays)."""
        check_shape(rows, ["B", str(self.dim)], "rows")
        check_dtype(rows, (torch.float16, torch.bfloat16, torch.float32, torch.float64), "rows")
        x = rows if rows.dtype == torch.float64 else rows.float()
        w, b = self.score.weight.to(x.dtype), self.score.bias.to(x.dtype)
        return F.linear(x, w, b)[:, 0]

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        q = torch.sigmoid(self.partner_logit(rows)) ** self.gamma
        x = rows if rows.dtype == torch.float64 else rows.float()
        return gate_rows(x, q).to(rows.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, gamma={self.gamma:g}"
