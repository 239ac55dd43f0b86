"""Pure functions shared by the patch networks: per-patch standardisation and the final normalisation.

Both run in float32 (float64 for float64 inputs) whatever the network's dtype: low-precision epsilons
underflow, and a half-precision variance of a near-flat patch is mostly rounding noise. The row
normalisation and the flat-input rule are shared by every family (:mod:`lookalike.descriptors._functional`).
"""

from __future__ import annotations

import torch

from lookalike.descriptors._functional import flat_rows, normalize_descriptors, stats_dtype

__all__ = ["normalize_descriptors", "standardize_patches", "stats_dtype"]

STANDARDIZE_KINDS = ("std", "instance")


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
        bool tensor that is ``True`` for patches whose pixels are all equal
        (:func:`~lookalike.descriptors._functional.flat_rows`).

    Convention:
        The statistics are computed after subtracting each patch's first pixel (a detached shift that
        changes nothing mathematically), so a flat patch standardises to exact zeros and has a variance
        of exactly 0 whatever the summation order: it is never divided by ~0.

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
    if kind == "std":
        # A flat patch has a zero numerator anyway; 1 instead of 0 under the root keeps its gradient finite.
        scale = torch.where(var == 0, torch.ones_like(var), var).sqrt() + eps
    else:
        scale = (var + eps).sqrt()
    return (x - mean) / scale, flat_rows(patches)
