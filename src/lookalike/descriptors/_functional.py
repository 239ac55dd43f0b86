"""Pure functions every descriptor family shares: row normalisation and the flat-input rule.

Norms run in float32 (float64 for float64 inputs) whatever the network's dtype: low-precision epsilons
underflow, and a half-precision norm of a tiny row is mostly rounding noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["flat_rows", "normalize_descriptors", "stats_dtype", "zero_rows"]


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics and norms are computed in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def flat_rows(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: ``True`` where every value of sample ``x[b]`` equals its first value.

    Convention:
        A flat input (a constant patch or image) has no direction to describe; every lookalike
        descriptor gives it an all-zero row. Equality is exact (no tolerance), so a near-flat input is
        described normally. A batch of zero samples gives an empty mask.

    Example:
        >>> import torch
        >>> x = torch.stack([torch.full((1, 4, 4), 0.3), torch.rand(1, 4, 4)])
        >>> flat_rows(x).tolist()
        [True, False]
    """
    rows = x.detach().reshape(x.shape[0], math.prod(x.shape[1:]))
    if rows.shape[1] == 0 or rows.dtype == torch.bool:
        return (rows == rows[:, :1]).all(dim=1)
    low, high = torch.aminmax(rows, dim=1)  # one pass, no (B, D) mask; NaN rows are not flat
    return low == high


def zero_rows(desc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``desc`` with the rows flagged by the ``(B,)`` bool ``mask`` set to zero (gradient zero there).

    Example:
        >>> import torch
        >>> zero_rows(torch.ones(2, 3), torch.tensor([False, True])).tolist()
        [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    return torch.where(mask[:, None], torch.zeros_like(desc), desc)


def normalize_descriptors(
    desc: torch.Tensor, flat: torch.Tensor | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """L2-normalise rows in float32 (float64 stays), zero the rows of flat inputs, cast to ``dtype``.

    Args:
        desc: ``(B, D)`` raw descriptors.
        flat: optional ``(B,)`` bool mask of rows to set to zero.
        dtype: output dtype; default ``desc.dtype``.

    Returns:
        ``(B, D)`` rows of unit L2 norm; an all-zero row (and every flagged row) is all zeros.

    Example:
        >>> import torch
        >>> out = normalize_descriptors(torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.bfloat16))
        >>> out.dtype, out.float().tolist()
        (torch.bfloat16, [[0.6015625, 0.80078125], [0.0, 0.0]])
    """
    out = F.normalize(desc.to(stats_dtype(desc.dtype)), dim=1)
    if flat is not None:
        out = zero_rows(out, flat)
    return out.to(dtype or desc.dtype)
