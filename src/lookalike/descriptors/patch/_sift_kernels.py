"""SIFT's fixed kernels: the cell grid, the window, the pooling matrix and the angle fold matrix.

Every function here is a pure function of the options (cached where it is hot); the descriptor itself
is in :mod:`lookalike.descriptors.patch.sift`.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from lookalike.core.check import check_int, check_option
from lookalike.core.errors import OptionError

__all__ = ["LAYOUTS", "MASK_TYPES", "SIGMA_TYPES", "sift_grid", "sift_pooling_matrix"]

MASK_TYPES = ("Gauss", "CircularGauss", "Uniform")
SIGMA_TYPES = ("vlfeat", "hesamp")
LAYOUTS = ("kornia", "opencv")


def sift_grid(patch_size: int, num_spatial_bins: int) -> tuple[int, int, int]:
    """Pooling geometry of the spatial cells: ``(ksize, stride, pad)``.

    Each cell pools a triangular window ``ksize`` pixels wide; cells are ``stride = P // S`` pixels apart;
    the patch is zero-padded by ``pad`` pixels on every side, so cell ``k`` (0-based) is centred on pixel
    ``(P - 1) / 2 + (k - (S - 1) / 2) * stride``: the grid is centred on the patch centre.

    Convention:
        ``ksize`` is ``2 * int(P / (S + 1))``, plus one when the centred grid needs a window centred on a
        pixel rather than between two (as at ``P = 41``, ``S = 4``): kornia's centred grid.

    Args:
        patch_size: patch side P in pixels.
        num_spatial_bins: cells per side S.

    Returns:
        ``(ksize, stride, pad)`` in pixels.

    Raises:
        OptionError: the patch is too small for ``num_spatial_bins`` cells.

    Example:
        >>> sift_grid(41, 4), sift_grid(32, 4)
        ((17, 10, 3), (12, 8, 2))
    """
    check_int(patch_size, "patch_size")
    check_int(num_spatial_bins, "num_spatial_bins")
    P, S = patch_size, num_spatial_bins
    stride = P // S
    ksize = 2 * int(P / (S + 1))
    if (ksize - P + (S - 1) * stride) % 2:
        ksize += 1
    pad = (ksize - P + (S - 1) * stride) // 2
    cells = (P + 2 * pad - ksize) // stride + 1 if stride > 0 else 0
    if stride < 1 or ksize < 1 or pad < 0 or cells != S:
        raise OptionError(
            f"patch_size: {P} pixels is too small for num_spatial_bins={S} SIFT cells per side"
        )
    return ksize, stride, pad


def _cell_weights(patch_size: int, num_spatial_bins: int) -> torch.Tensor:
    """(S, P) float64 triangular weights of each cell along one axis (zero padding dropped)."""
    ksize, stride, pad = sift_grid(patch_size, num_spatial_bins)
    half = ksize / 2.0
    # tap i of cell s reads pixel p = s * stride + i - pad
    taps = torch.arange(patch_size, dtype=torch.float64).view(1, -1) + pad
    taps = taps - stride * torch.arange(num_spatial_bins, dtype=torch.float64).view(-1, 1)
    weights = (half - (taps + 0.5 - half).abs()) / half
    return torch.where((taps >= 0) & (taps < ksize), weights, torch.zeros_like(weights))


def _window(patch_size: int, mask_type: str, sigma_type: str) -> torch.Tensor:
    """(P, P) float64 weighting window, normalised to sum 1."""
    d = torch.arange(patch_size, dtype=torch.float64) - (patch_size - 1) / 2.0
    r2 = d.view(-1, 1) ** 2 + d.view(1, -1) ** 2
    if mask_type == "Uniform":
        window = torch.ones_like(r2)
    else:
        radius = patch_size / 2.0
        two_sigma2 = patch_size**2 if sigma_type == "vlfeat" else 0.9 * radius**2
        window = torch.exp(-r2 / two_sigma2)
        if mask_type == "CircularGauss":
            window = window * (r2 <= radius**2)
    return window / window.sum()


def sift_pooling_matrix(
    patch_size: int,
    *,
    num_spatial_bins: int = 4,
    mask_type: str = "Gauss",
    sigma_type: str = "vlfeat",
) -> torch.Tensor:
    """The fixed linear map from one angle plane of pixels to its spatial cells, window included.

    ``K[s * S + t, p * P + q] = w_s(p) * w_t(q) * window(p, q)`` with ``w`` the triangular cell weights
    of :func:`sift_grid` (1 at the cell centre) and ``window`` the weighting mask:

    - ``"Gauss"``: ``exp(-r^2 / (2 sigma^2))``, ``r`` the distance in pixels from the patch centre
      ``((P - 1) / 2, (P - 1) / 2)``;
    - ``"CircularGauss"``: the same, zero outside the inscribed circle ``r > P / 2``;
    - ``"Uniform"``: constant.

    ``sigma_type="vlfeat"`` takes ``sigma = P / sqrt(2)`` (kornia's window), ``"hesamp"`` the
    Hessian-affine sampler's ``2 sigma^2 = 0.9 (P / 2)^2`` (``sigma ~ 0.335 P``). The window is scaled
    to sum 1 (the scale cancels in the normalised descriptor).

    Args:
        patch_size: patch side P.
        num_spatial_bins: cells per side S.
        mask_type: one of ``"Gauss"``, ``"CircularGauss"``, ``"Uniform"``.
        sigma_type: ``"vlfeat"`` or ``"hesamp"`` (ignored by ``"Uniform"``).

    Returns:
        (S*S, P*P) float64 matrix, row-major cells and pixels.

    Example:
        >>> K = sift_pooling_matrix(41)
        >>> K.shape, bool((K >= 0).all())
        (torch.Size([16, 1681]), True)
    """
    check_option(mask_type, MASK_TYPES, "mask_type")
    check_option(sigma_type, SIGMA_TYPES, "sigma_type")
    w = _cell_weights(patch_size, num_spatial_bins)
    window = _window(patch_size, mask_type, sigma_type)
    S, P = num_spatial_bins, patch_size
    return torch.einsum("sp,tq,pq->stpq", w, w, window).reshape(S * S, P * P)


def _plane_range(num_ang_bins: int) -> tuple[int, int]:
    """First plane and number of planes covering the angle positions ``o`` in ``(A/2, 3A/2]``."""
    return num_ang_bins // 2, num_ang_bins + 1 + num_ang_bins % 2


def _fold_matrix(num_ang_bins: int, layout: str) -> torch.Tensor:
    """(A, planes) map from the angle planes to the output bins: plane ``i`` is angle position
    ``o = first + i``, i.e. bin ``o mod A``.

    For the OpenCV layout the angle runs the other way (from +x towards -y): output bin ``a`` takes
    bin ``-a mod A``.
    """
    A = num_ang_bins
    first, count = _plane_range(A)
    fold = torch.zeros(A, count, dtype=torch.float64)
    for i in range(count):
        out = (first + i) % A if layout == "kornia" else (-(first + i)) % A
        fold[out, i] = 1.0
    return fold


@lru_cache(maxsize=32)
def _cached_kernels(
    patch_size: int,
    num_ang_bins: int,
    num_spatial_bins: int,
    mask_type: str,
    sigma_type: str,
    layout: str,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    pooling = sift_pooling_matrix(
        patch_size, num_spatial_bins=num_spatial_bins, mask_type=mask_type, sigma_type=sigma_type
    )
    fold = _fold_matrix(num_ang_bins, layout)
    return (
        pooling.T.contiguous().to(device=device, dtype=dtype),
        fold.to(device=device, dtype=dtype),
    )
