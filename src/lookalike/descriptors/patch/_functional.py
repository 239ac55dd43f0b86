"""Pure functions shared by the patch networks: per-patch standardisation and the final normalisation.

Both run in float32 (float64 for float64 inputs) whatever the network's dtype: low-precision epsilons
underflow, and a half-precision variance of a near-flat patch is mostly rounding noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["normalize_descriptors", "standardize_patches", "stats_dtype"]

STANDARDIZE_KINDS = ("std", "instance")


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics and norms are computed in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def standardize_patches(
    patches: torch.Tensor, *, eps: float, kind: str = "std", detach: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Standardise each patch to zero mean and unit spread, and flag the flat ones.

    ``kind="std"`` (L2Net, HardNet and its variants) computes :math:`(x - \mu) / (\sigma + \epsilon)`
    with the unbiased standard deviation; ``kind="instance"`` (SOSNet, TFeat: ``InstanceNorm2d``)
    computes :math:`(x - \mu) / \sqrt{\sigma_b^2 + \epsilon}` with the biased variance.

    Args:
        patches: ``(B, C, H, W)`` floating patches (any dtype; any intensity range).
        eps: the epsilon of the formula above.
        kind: ``"std"`` or ``"instance"``.
        detach: stop gradients through the mean and spread (HardNet's convention: gradients through
            the statistics make detector training through a patch extractor unstable).

    Returns:
        ``(standardised, flat)``: ``(B, C, H, W)`` in :func:`stats_dtype` of the input, and a ``(B,)``
        bool tensor that is ``True`` for patches whose pixels are all equal.

    Convention:
        The statistics are computed after subtracting each patch's first pixel (a detached shift that
        changes nothing mathematically), so a flat patch standardises to exact zeros and has a variance
        of exactly 0 whatever the summation order: it is flagged, never divided by ~0.

    Example:
        >>> import torch
        >>> x = torch.stack([torch.rand(1, 8, 8), torch.full((1, 8, 8), 0.3)])
        >>> z, flat = standardize_patches(x, eps=1e-6)
        >>> flat.tolist(), bool(z[1].eq(0).all()), round(float(z[0].std()), 4)
        ([False, True], True, 1.0)
    """
    x = patches.to(stats_dtype(patches.dtype))
    x = x - x[:, :1, :1, :1].detach()
    var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=1 if kind == "std" else 0)
    if detach:
        var, mean = var.detach(), mean.detach()
    flat = var == 0
    if kind == "std":
        # A flat patch has a zero numerator anyway; 1 instead of 0 under the root keeps its gradient finite.
        scale = torch.where(flat, torch.ones_like(var), var).sqrt() + eps
    else:
        scale = (var + eps).sqrt()
    return (x - mean) / scale, flat.flatten()


def normalize_descriptors(
    desc: torch.Tensor, flat: torch.Tensor | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """L2-normalise rows in float32 (float64 stays), zero the rows of flat patches, cast to ``dtype``.

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
        out = torch.where(flat[:, None], torch.zeros_like(out), out)
    return out.to(dtype or desc.dtype)
