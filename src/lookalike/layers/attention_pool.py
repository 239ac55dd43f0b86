"""Attention pooling: a learned query–key weighting of positions that replaces global max pooling."""

from __future__ import annotations

import math

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.layers._common import check_feature_map, check_int

__all__ = ["AttentionPool", "attention_pool"]


def attention_pool(
    x: torch.Tensor, keys: torch.Tensor, query: torch.Tensor, *, num_heads: int = 1
) -> torch.Tensor:
    """Pool ``(B, C, H, W)`` ``x`` over positions with softmax weights ``softmax_p(q · k_p / sqrt(d))``.

    Head ``h`` pools channels ``h·C/heads … (h+1)·C/heads - 1`` with its own weights.

    Args:
        x: ``(B, C, H, W)`` values.
        keys: ``(B, heads·d, H, W)`` keys, the first ``d`` channels for head 0 and so on.
        query: ``(heads, d)`` learned queries.
        num_heads: number of heads (divides ``C``).

    Returns:
        ``(B, C)`` pooled features.

    Convention:
        A zero query gives uniform weights: average pooling. Large query–key products approach
        max-style selection of the best-matching position.

    Example:
        >>> import torch
        >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
        >>> attention_pool(x, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1))
        tensor([[2.5000]])
    """
    dims = check_feature_map(x, "C", "x")
    check_feature_map(keys, "K", "keys", {"B": dims["B"], "H": dims["H"], "W": dims["W"]})
    heads = check_int(num_heads, "num_heads")
    if (
        query.ndim != 2
        or query.shape[0] != heads
        or query.shape[0] * query.shape[1] != keys.shape[1]
    ):
        raise OptionError(
            f"query: expected ({heads}, {keys.shape[1] // heads}) for {heads} heads and "
            f"{keys.shape[1]} key channels, got {tuple(query.shape)}"
        )
    b, c, h, w = x.shape
    d = query.shape[1]
    k = keys.reshape(b, heads, d, h * w)
    logits = torch.einsum("hd,bhdp->bhp", query.to(k.dtype), k) / math.sqrt(d)
    weights = logits.softmax(dim=-1)  # (B, heads, P)
    v = x.reshape(b, heads, c // heads, h * w)
    return torch.einsum("bhp,bhcp->bhc", weights, v).reshape(b, c)


@register("layer", "attention_pool")
class AttentionPool(nn.Module):
    """Global attention pooling: keys from a 1×1 convolution, learned queries, softmax over positions.

    Replaces global max (or average) pooling: ``(B, C, H, W)`` → ``(B, C)``. The query starts at zero,
    so the untrained layer is exactly average pooling; training learns which positions to attend to.

    Args:
        channels: input channels ``C``.
        num_heads: attention heads (divides ``channels``); each pools its own channel group.
        key_dim: key/query size per head.

    Example:
        >>> import torch
        >>> pool = AttentionPool(16, num_heads=2)
        >>> x = torch.rand(3, 16, 5, 5)
        >>> torch.allclose(pool(x), x.mean((2, 3)))  # zero query: average pooling
        True
    """

    def __init__(self, channels: int, *, num_heads: int = 1, key_dim: int = 32) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.num_heads = check_int(num_heads, "num_heads")
        if channels % num_heads:
            raise OptionError(
                f"num_heads: expected a divisor of channels={channels}, got {num_heads}"
            )
        self.key_dim = check_int(key_dim, "key_dim")
        self.key = nn.Conv2d(channels, num_heads * key_dim, kernel_size=1)
        self.query = nn.Parameter(torch.zeros(num_heads, key_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(B, channels, H, W)`` to ``(B, channels)``.

        Raises:
            ShapeError: ``x`` is not ``(B, channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        check_feature_map(x, self.channels, "x")
        return attention_pool(x, self.key(x), self.query, num_heads=self.num_heads)
