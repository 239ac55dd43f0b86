"""Differentiable SIFT and RootSIFT patch descriptors, every orientation bin in one fused pass.

The descriptor is the classic patch SIFT of the "SIFTNet" PyTorch module (Mishchuk et al.'s
``pytorch-sift``) and ``kornia.feature.SIFTDescriptor``: ``[-1, 0, 1]`` image gradients with replicated
borders, magnitude-weighted bilinear orientation binning, a Gaussian (or circular, or uniform) window,
triangular spatial pooling over a ``num_spatial_bins`` x ``num_spatial_bins`` grid of cells, then
L2 -> clip -> L2, and optionally RootSIFT (Arandjelović & Zisserman, CVPR 2012).

How it is computed: the soft orientation votes of every pixel are written into all ``A + 1`` angle
planes at once (a triangular kernel on the angle, ``max(0, 1 - |o - a|)``), and the window and the
spatial pooling -- both fixed linear maps of the pixels -- are folded into one ``(P*P, S*S)`` matrix, so
all angle bins are pooled by a single matrix product instead of one strided convolution per bin. On the
CPU large batches are processed in cache-sized blocks.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import (
    check_dtype,
    check_finite,
    check_option,
    check_positive,
    check_shape,
)
from lookalike.core.errors import OptionError

__all__ = [
    "SIFTDescriptor",
    "rootsift",
    "sift_describe",
    "sift_grid",
    "sift_pooling_matrix",
]

MASK_TYPES = ("Gauss", "CircularGauss", "Uniform")
SIGMA_TYPES = ("vlfeat", "hesamp")
LAYOUTS = ("kornia", "opencv")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_FLAT_EPS = 1e-12  # a histogram with a smaller L2 norm is flat: all-zero descriptor
_ROOT_EPS = 1e-10  # under RootSIFT's square root: finite gradient at empty bins (as kornia)
_CPU_BLOCK_ELEMS = 1 << 20  # angle-plane elements per CPU block (4 MiB in float32)


def _check_int(value: Any, name: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OptionError(f"{name}: expected an integer >= {low}, got {value!r}")


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
    _check_int(patch_size, "patch_size")
    _check_int(num_spatial_bins, "num_spatial_bins")
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


def _fold_matrix(num_ang_bins: int, layout: str) -> torch.Tensor:
    """(A, A + 1) map from the A + 1 angle planes (plane A is angle 2 pi, i.e. bin 0) to the output bins.

    The planes hold votes scaled by ``-2 pi / A`` (see :func:`_pooled_planes`); the entries undo it. For
    the OpenCV layout the angle runs the other way (from +x towards -y): output bin ``a`` takes plane
    ``-a mod A``.
    """
    A = num_ang_bins
    fold = torch.zeros(A, A + 1, dtype=torch.float64)
    for plane in range(A + 1):
        out = plane % A if layout == "kornia" else (-plane) % A
        fold[out, plane] = -A / (2.0 * math.pi)
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


def _pooled_planes(x: torch.Tensor, pooling: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, P, P) patches -> (B, A + 1, S*S) pooled orientation planes, scaled by ``-2 pi / A``.

    ``centres`` (1, A + 1, 1) are the plane angles ``2 pi a / A - pi`` in the frame of the negated
    gradient (whose angle is the gradient's minus pi, in [-pi, pi]).
    """
    B, P, _ = x.shape
    N = P * P
    A = centres.shape[1] - 1
    need_grad = torch.is_grad_enabled() and x.requires_grad
    xp = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    ngx = xp[:, 1:-1, :-2] - xp[:, 1:-1, 2:]  # negated [-1, 0, 1] gradients
    ngy = xp[:, :-2, 1:-1] - xp[:, 2:, 1:-1]
    sq = torch.addcmul(ngx * ngx, ngy, ngy)
    if need_grad:
        # sqrt and atan2 have no derivative at a zero gradient: evaluate them away from it there
        # (the magnitude, hence every vote of the pixel, is zero anyway).
        flat = sq == 0
        ngx = ngx.masked_fill(flat, -1.0)
        mag = sq.masked_fill(flat, 1.0).sqrt().masked_fill(flat, 0.0)
    else:
        mag = sq.sqrt_()
    theta = torch.atan2(ngy, ngx).view(B, 1, N)
    mag = mag.view(B, 1, N)
    # Bilinear vote of a pixel in plane a: mag * max(0, 1 - |theta - centre_a| * A / (2 pi)),
    # stored as min(0, mag * |theta - centre_a| - mag * 2 pi / A) (the fold matrix rescales).
    neg_reach = mag * (-2.0 * math.pi / A)
    if need_grad:
        votes = torch.addcmul(neg_reach, (theta - centres).abs(), mag).clamp(max=0.0)
    else:
        votes = torch.sub(theta, centres).abs_()
        votes = torch.addcmul(neg_reach, votes, mag, out=votes).clamp_(max=0.0)
    return (votes.view(-1, N) @ pooling).view(B, A + 1, -1)


def _describe(
    patches: torch.Tensor,
    pooling: torch.Tensor,
    fold: torch.Tensor,
    *,
    clipval: float,
    rootsift: bool,
    layout: str,
) -> torch.Tensor:
    """Shared body of :func:`sift_describe` and :class:`SIFTDescriptor` (inputs already checked)."""
    dtype = patches.dtype
    work = torch.float32 if dtype in _LOW_PRECISION else dtype
    x = patches.to(work)[:, 0]
    pooling = pooling.to(device=x.device, dtype=work)
    fold = fold.to(device=x.device, dtype=work)
    A = fold.shape[0]
    B, P, _ = x.shape
    centres = torch.arange(A + 1, device=x.device, dtype=work).mul_(2.0 * math.pi / A).sub_(math.pi)
    centres = centres.view(1, A + 1, 1)
    block = max(1, _CPU_BLOCK_ELEMS // ((A + 1) * P * P))
    if x.device.type == "cpu" and B > block:
        planes = torch.cat([_pooled_planes(xb, pooling, centres) for xb in x.split(block)])
    else:
        planes = _pooled_planes(x, pooling, centres)
    if layout == "kornia":
        desc = torch.matmul(fold, planes).reshape(B, -1)  # (B, A, S*S): angle-major
    else:
        desc = torch.matmul(planes.transpose(1, 2), fold.T).reshape(B, -1)  # (B, S*S, A)
    norm = torch.linalg.vector_norm(desc, dim=1, keepdim=True)
    textured = norm > _FLAT_EPS
    desc = (desc / norm.clamp_min(_FLAT_EPS)).clamp(max=clipval)
    desc = desc / torch.linalg.vector_norm(desc, dim=1, keepdim=True).clamp_min(_FLAT_EPS)
    if rootsift:
        desc = desc / desc.sum(dim=1, keepdim=True).clamp_min(_FLAT_EPS)
        desc = torch.sqrt(desc + _ROOT_EPS)
        desc = desc / torch.linalg.vector_norm(desc, dim=1, keepdim=True)
    desc = torch.where(textured, desc, torch.zeros_like(desc))
    return desc.to(dtype)


def _check_options(
    num_ang_bins: int,
    num_spatial_bins: int,
    clipval: float,
    mask_type: str,
    sigma_type: str,
    layout: str,
) -> None:
    _check_int(num_ang_bins, "num_ang_bins")
    _check_int(num_spatial_bins, "num_spatial_bins")
    check_positive(clipval, "clipval")
    check_option(mask_type, MASK_TYPES, "mask_type")
    check_option(sigma_type, SIGMA_TYPES, "sigma_type")
    check_option(layout, LAYOUTS, "layout")


def _check_patches(patches: torch.Tensor, size: str | int, validate: bool) -> None:
    check_shape(patches, ["B", "1", str(size), str(size)], "patches")
    check_dtype(patches, _FLOAT_DTYPES, "patches")
    # One fast reduction on the happy path (NaN and inf survive a sum); the full check only names them.
    if validate and not bool(torch.isfinite(patches.sum(dtype=torch.float32))):
        check_finite(patches, "patches")


def sift_describe(
    patches: torch.Tensor,
    *,
    num_ang_bins: int = 8,
    num_spatial_bins: int = 4,
    clipval: float = 0.2,
    rootsift: bool = False,
    mask_type: str = "Gauss",
    sigma_type: str = "vlfeat",
    layout: str = "kornia",
    validate: bool = True,
) -> torch.Tensor:
    """SIFT (or RootSIFT) descriptors of square grayscale patches.

    Convention:
        - Patches are ``(B, 1, P, P)``, rows along +y (down), columns along +x, values nominally in
          [0, 1]. Other ranges work: the descriptor is invariant to ``a * x + b`` with ``a > 0``.
        - Gradients are ``[-1, 0, 1]`` differences with replicated borders. Angle bin ``a`` is centred
          on the direction ``2 pi a / A`` measured from +x towards +y; a pixel votes its gradient
          magnitude (times the window) into the two nearest bins, bilinearly.
        - ``layout="kornia"``: angle-major, entry ``a * S^2 + row * S + col``, as
          ``kornia.feature.SIFTDescriptor``. ``layout="opencv"``: spatial-major, entry
          ``(row * S + col) * A + a'``, with angles measured from +x towards -y (up) as OpenCV's
          ``cv2.SIFT`` does, i.e. ``a' = -a mod A`` (``kornia.feature.convert_sift_descriptor_layout``).
        - Rows are L2-normalised, clipped at ``clipval``, L2-normalised again. RootSIFT then
          L1-normalises, takes ``sqrt(v + 1e-10)`` (the 1e-10 keeps the gradient finite at empty bins,
          which read 1e-5, as in kornia) and L2-normalises.
        - Degenerate case: a flat patch (e.g. constant), whose histogram has an L2 norm below 1e-12,
          gives an all-zero descriptor, with and without RootSIFT, in every dtype; its gradient is zero.
          Every other row has unit L2 norm.
        - float16 and bfloat16 inputs are computed in float32 and the result cast back; float32 and
          float64 inputs are computed in their own dtype, on their device.

    Args:
        patches: (B, 1, P, P) float patches.
        num_ang_bins: orientation bins A.
        num_spatial_bins: cells per side S (P must fit S cells, see :func:`sift_grid`).
        clipval: clipping value after the first L2 normalisation.
        rootsift: compute RootSIFT.
        mask_type: weighting window, ``"Gauss"``, ``"CircularGauss"`` or ``"Uniform"``
            (see :func:`sift_pooling_matrix`).
        sigma_type: window width, ``"vlfeat"`` (kornia's, ``sigma = P / sqrt(2)``) or ``"hesamp"``.
        layout: entry order, ``"kornia"`` or ``"opencv"``.
        validate: check that the patches are finite (costs one device sync on CUDA).

    Returns:
        (B, A * S * S) descriptors, dtype and device of ``patches``.

    Raises:
        ShapeError: ``patches`` is not (B, 1, P, P).
        DTypeError: ``patches`` is not floating point.
        ValueRangeError: NaN or infinite values (when ``validate``).
        OptionError: an unknown option, or P too small for S cells.

    Example:
        >>> import torch
        >>> patches = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> desc = sift_describe(patches)
        >>> desc.shape, torch.allclose(desc.norm(dim=1), torch.ones(3))
        (torch.Size([3, 128]), True)
        >>> sift_describe(torch.full((1, 1, 32, 32), 0.5)).abs().sum().item()  # flat patch
        0.0
    """
    _check_options(num_ang_bins, num_spatial_bins, clipval, mask_type, sigma_type, layout)
    _check_patches(patches, "P", validate)
    P = patches.shape[-1]
    work = torch.float32 if patches.dtype in _LOW_PRECISION else patches.dtype
    pooling, fold = _cached_kernels(
        P, num_ang_bins, num_spatial_bins, mask_type, sigma_type, layout, patches.device, work
    )
    return _describe(patches, pooling, fold, clipval=clipval, rootsift=rootsift, layout=layout)


@register("descriptor", "sift")
class SIFTDescriptor(nn.Module):
    """SIFT descriptor of ``(B, 1, P, P)`` patches: ``(B, A * S * S)`` L2-normalised rows.

    A thin module over :func:`sift_describe` (see it for the Convention block: layouts, units, the
    all-zero descriptor of a flat patch, low-precision inputs). The pooling matrix and the angle fold
    are fixed, non-persistent buffers (they follow ``.to()`` but are not in ``state_dict``); the module
    has no parameters. With the defaults it equals ``kornia.feature.SIFTDescriptor(41, rootsift=False)``.

    Args:
        patch_size: patch side P (41 by default, as kornia).
        num_ang_bins: orientation bins A.
        num_spatial_bins: cells per side S.
        clipval: clipping value after the first L2 normalisation.
        rootsift: compute RootSIFT (the ``"rootsift"`` registry entry sets it by default).
        mask_type: ``"Gauss"`` (default), ``"CircularGauss"`` or ``"Uniform"``.
        sigma_type: ``"vlfeat"`` (default, kornia's window) or ``"hesamp"``.
        layout: ``"kornia"`` (angle-major, default) or ``"opencv"`` (spatial-major, cv2 angles).
        validate: check that the patches are finite (one device sync on CUDA).

    Attributes:
        dim: descriptor size ``A * S * S`` (128 by default).
        patch_size: expected patch side.
        in_channels: 1 (grayscale).

    Example:
        >>> import torch, lookalike
        >>> sift = lookalike.create("descriptor", "sift", patch_size=32)
        >>> sift(torch.rand(5, 1, 32, 32)).shape
        torch.Size([5, 128])
        >>> lookalike.create("descriptor", "rootsift").rootsift
        True
    """

    in_channels = 1

    def __init__(
        self,
        *,
        patch_size: int = 41,
        num_ang_bins: int = 8,
        num_spatial_bins: int = 4,
        clipval: float = 0.2,
        rootsift: bool = False,
        mask_type: str = "Gauss",
        sigma_type: str = "vlfeat",
        layout: str = "kornia",
        validate: bool = True,
    ) -> None:
        super().__init__()
        _check_options(num_ang_bins, num_spatial_bins, clipval, mask_type, sigma_type, layout)
        sift_grid(patch_size, num_spatial_bins)  # raises for a patch too small
        self.patch_size = patch_size
        self.num_ang_bins = num_ang_bins
        self.num_spatial_bins = num_spatial_bins
        self.clipval = float(clipval)
        self.rootsift = bool(rootsift)
        self.mask_type = mask_type
        self.sigma_type = sigma_type
        self.layout = layout
        self.validate = bool(validate)
        self.dim = num_ang_bins * num_spatial_bins**2
        pooling = sift_pooling_matrix(
            patch_size, num_spatial_bins=num_spatial_bins, mask_type=mask_type, sigma_type=sigma_type
        )
        self.register_buffer("pooling", pooling.T.contiguous().float(), persistent=False)
        self.register_buffer("fold", _fold_matrix(num_ang_bins, layout).float(), persistent=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 1, P, P) patches -> (B, dim) descriptors in the dtype of ``patches``."""
        _check_patches(patches, self.patch_size, self.validate)
        return _describe(
            patches,
            self.pooling,
            self.fold,
            clipval=self.clipval,
            rootsift=self.rootsift,
            layout=self.layout,
        )

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, num_ang_bins={self.num_ang_bins}, "
            f"num_spatial_bins={self.num_spatial_bins}, clipval={self.clipval}, "
            f"rootsift={self.rootsift}, mask_type={self.mask_type!r}, "
            f"sigma_type={self.sigma_type!r}, layout={self.layout!r}"
        )


@register("descriptor", "rootsift")
def rootsift(**kwargs: Any) -> SIFTDescriptor:
    """RootSIFT: a :class:`SIFTDescriptor` with ``rootsift=True`` unless told otherwise.

    Example:
        >>> import torch
        >>> desc = rootsift(patch_size=32)(torch.rand(2, 1, 32, 32))
        >>> bool((desc >= 0).all()), desc.shape
        (True, torch.Size([2, 128]))
    """
    kwargs.setdefault("rootsift", True)
    return SIFTDescriptor(**kwargs)
