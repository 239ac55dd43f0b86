"""Keypoints to local affine frames (LAFs) to patches, sampled from a scale pyramid.

Convention:
    - A LAF is kornia's ``(B, N, 2, 3)`` ``[A | c]`` in pixels (centres at integers, y down). Its patch
      covers the square ``c + A [-1, 1]^2``: cell ``(i, j)`` of a ``P x P`` patch samples
      ``c + A (u_j, u_i)`` with ``u_k = (2k + 1) / P - 1`` (row 0 on the patch's ``-y`` side, the
      top of an upright patch). ``s = sqrt(|det A|)`` is the patch *half-width* in pixels.
    - OpenCV keypoint to LAF: ``s = extent * size / 2`` (``size`` is a diameter; for OpenCV's DoG
      ``size / 2`` is the blob's sigma) and ``ori = -angle``: OpenCV's angle turns clockwise on
      screen, kornia's orientation counter-clockwise (y points down in both).
    - ``extent`` is the patch half-width in units of ``size / 2``. OpenCV's SIFT descriptor has
      ``d = 4`` spatial bins of width ``3 * size / 2`` (``SIFT_DESCR_SCL_FCTR = 3``) and interpolates
      every sample into the bins around it, so samples up to half a bin outside the 4 x 4 grid count:
      its region is ``(d + 1) * 3 * size / 2`` wide, ``extent = (d + 1) / 2 * 3 = 7.5``
      (:data:`SIFT_EXTENT`). kornia's (and our) SIFT descriptor divides its patch into ``d + 1`` bin
      widths in the same way, so with :data:`SIFT_EXTENT` it sees OpenCV's region.
    - Anti-aliasing: a patch whose sampling step ``2 s / P`` is larger than one pixel is sampled from
      pyramid level ``floor(log2(2 s / P) + level_bias)`` (``level_bias = 0`` is kornia's choice in
      ``extract_patches_from_pyramid``: a step between 1 and 2 level pixels; ``level_bias = 1`` samples
      one level finer, with a step between 0.5 and 1). Levels are made with kornia's ``pyrdown``
      (5 x 5 Gaussian, then a half-size resize) while the shorter side stays >= 16 pixels; one
      normalised grid addresses the same points on every level.
    - Samples outside the image read the nearest border pixel (``padding_mode="border"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.core.check import check_positive, check_shape
from lookalike.matching.keypoints import laf_to_keypoints
from lookalike.matching.laf import SIFT_EXTENT, keypoints_to_laf

if TYPE_CHECKING:
    import torch

__all__ = [
    "SIFT_EXTENT",
    "extract_patches",
    "image_to_tensor",
    "keypoints_to_laf",
    "laf_to_keypoints",
    "pyramid_levels",
]

_MIN_LEVEL_SIDE = 16


def image_to_tensor(image: Any, *, device: Any = None, dtype: Any = None) -> torch.Tensor:
    """A gray image (path, array or tensor) as a ``(1, 1, H, W)`` tensor in [0, 1].

    A ``(1, 1, H, W)`` floating tensor is returned as is (moved to ``device``/``dtype`` if given).
    """
    import torch

    if isinstance(image, torch.Tensor) and image.ndim == 4 and image.is_floating_point():
        check_shape(image, ["1", "1", "H", "W"], "image")
        return image.to(device=device, dtype=dtype or image.dtype)
    from lookalike.data.images import load_image

    gray = load_image(image, gray=True)
    tensor = torch.from_numpy(np.ascontiguousarray(gray)).to(device=device)
    return tensor.to(dtype or torch.float32).div_(255.0)[None, None]


# kornia's 5 x 5 pyramid kernel is the outer product of these taps
_PYRAMID_TAPS = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _pyrdown(image: torch.Tensor) -> torch.Tensor:
    """kornia's ``pyrdown`` (5 x 5 binomial blur with reflected borders, bilinear half-size resize).

    On the CPU in float32/float64 the blur runs as OpenCV's separable filter (``BORDER_REFLECT_101``
    is kornia's ``"reflect"``): the same values to float rounding, about 15x faster than a
    single-channel ``conv2d``; elsewhere kornia's own function.
    """
    import torch
    import torch.nn.functional as F
    from kornia.geometry.transform import pyrdown

    H, W = image.shape[-2:]
    cpu_float = image.device.type == "cpu" and image.dtype in (torch.float32, torch.float64)
    if not cpu_float or image.requires_grad or min(H, W) < 3:
        return pyrdown(image)
    import cv2

    taps = np.asarray(
        _PYRAMID_TAPS, dtype=np.float32 if image.dtype == torch.float32 else np.float64
    )
    planes = np.ascontiguousarray(image.detach().reshape(-1, H, W).numpy())
    blurred = np.stack(
        [cv2.sepFilter2D(p, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101) for p in planes]
    )
    x = torch.from_numpy(blurred).view(image.shape)
    return F.interpolate(x, size=(H // 2, W // 2), mode="bilinear", align_corners=False)


def pyramid_levels(image: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Level 0 (the image) and up to ``count - 1`` ``pyrdown`` levels (shorter side >= 16 px)."""
    levels = [image]
    while len(levels) < count and min(levels[-1].shape[-2:]) // 2 >= _MIN_LEVEL_SIDE:
        levels.append(_pyrdown(levels[-1]))
    return levels


def _patch_grid(lafs: torch.Tensor, h: int, w: int, patch_size: int) -> torch.Tensor:
    """``(n, P * P, 2)`` contiguous ``grid_sample`` coordinates (``align_corners=False``) of the cells
    of ``(n, 2, 3)`` LAFs.

    The map from cell coordinates ``u`` to ``grid_sample``'s ``(2 (c + A u) + 1) / size - 1`` is
    affine, so all cells of all LAFs come out of one ``(n, 6) @ (6, P * P * 2)`` product: row
    ``(i, j)`` of the right factor spreads coefficient ``theta[i, j]`` over output coordinate ``i``.
    """
    import torch

    n = lafs.shape[0]
    P = patch_size
    u = (2.0 * torch.arange(P, dtype=lafs.dtype, device=lafs.device) + 1.0) / P - 1.0
    uy, ux = torch.meshgrid(u, u, indexing="ij")
    cells = torch.stack([ux, uy, torch.ones_like(ux)]).view(3, P * P)
    spread = cells.new_zeros(2, 3, P * P, 2)
    spread[0, :, :, 0] = cells
    spread[1, :, :, 1] = cells
    size = torch.tensor([float(w), float(h)], dtype=lafs.dtype, device=lafs.device)
    linear = 2.0 * lafs[..., :2] / size.view(2, 1)  # (n, 2, 2)
    shift = (2.0 * lafs[..., 2] + 1.0) / size - 1.0  # (n, 2)
    theta = torch.cat([linear, shift.unsqueeze(-1)], dim=-1)  # (n, 2, 3)
    return (theta.reshape(n, 6) @ spread.view(6, P * P * 2)).view(n, P * P, 2)


def _sampling_scale(A: torch.Tensor) -> torch.Tensor:
    """Half-width that sets a LAF's pyramid level: ``sqrt|det A|`` for a similarity, the largest
    singular value of ``A`` for an anisotropic (affine) region, so that its longest axis is not
    aliased."""
    import torch

    det = (A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]).abs()
    frob = A.square().sum(dim=(-2, -1))
    gap = (frob.square() - 4.0 * det.square()).clamp(min=0.0)
    largest = ((frob + gap.sqrt()) / 2.0).sqrt()
    similarity = gap <= 1e-6 * frob.square()
    return torch.where(similarity, det.sqrt(), largest)


def extract_patches(
    image: Any,
    lafs: torch.Tensor,
    patch_size: int = 32,
    *,
    pyramid: bool = True,
    level_bias: float = 0.0,
) -> torch.Tensor:
    """Sample one ``P x P`` patch per LAF, from the pyramid level that avoids aliasing.

    Args:
        image: ``(B, C, H, W)`` float tensor (or a gray image as accepted by :func:`image_to_tensor`).
        lafs: ``(B, N, 2, 3)`` LAFs in pixels of ``image`` (see the module Convention).
        patch_size: side ``P`` of the patches.
        pyramid: sample large LAFs from a coarser pyramid level; ``False`` samples everything from the
            full-resolution image (aliasing, as kornia's ``extract_patches_simple``).
        level_bias: added to ``log2(step)`` before flooring; 0 as kornia, 1 for one level finer.

    Returns:
        ``(B * N, C, P, P)`` patches in the image's dtype, on its device (values as the image's).

    Raises:
        ShapeError: bad image or LAF shapes, or different batch sizes.

    Example:
        >>> import torch
        >>> image = torch.arange(100.0).view(1, 1, 10, 10)
        >>> lafs = torch.tensor([[[[1.5, 0.0, 4.0], [0.0, 1.5, 5.0]]]])  # 3 x 3 crop at x=4, y=5
        >>> extract_patches(image, lafs, 3)[0, 0].tolist()
        [[43.0, 44.0, 45.0], [53.0, 54.0, 55.0], [63.0, 64.0, 65.0]]
    """
    import torch
    import torch.nn.functional as F

    check_positive(patch_size, "patch_size")
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        image = image_to_tensor(image)
    dims = check_shape(image, ["B", "C", "H", "W"], "image")
    check_shape(lafs, ["B", "N", "2", "3"], "lafs", dims)
    B, C, H, W = image.shape
    N = lafs.shape[1]
    P = int(patch_size)
    out = image.new_zeros(B * N, C, P, P)
    if N == 0 or B == 0:
        return out
    lafs = lafs.to(device=image.device, dtype=torch.promote_types(image.dtype, torch.float32))
    finite = torch.isfinite(lafs).flatten(2).all(-1)  # (B, N)
    lafs = torch.where(finite[..., None, None], lafs, torch.zeros_like(lafs))
    if pyramid:
        scale = _sampling_scale(lafs[..., :2])
        step = (2.0 * scale / P).clamp(min=1e-12)
        level = torch.floor(torch.log2(step) + level_bias).clamp(min=0).long()
        levels = pyramid_levels(image, int(level.max()) + 1)
        level = level.clamp(max=len(levels) - 1)
    else:
        levels = [image]
        level = torch.zeros(B, N, dtype=torch.long, device=image.device)
    sample = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    # LAFs grouped by (image, level): one grid_sample per group, written to the output in place
    key = torch.where(
        finite, level + torch.arange(B, device=image.device).view(B, 1) * len(levels), -1
    )
    key = key.view(-1)
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key + 1, minlength=B * len(levels) + 1).tolist()
    flat_lafs = lafs.view(B * N, 2, 3)
    out = out.view(B * N, C, P, P)
    start = counts[0]  # non-finite LAFs first: their patches stay zero
    for group, count in enumerate(counts[1:]):
        if count == 0:
            continue
        chosen = order[start : start + count]
        start += count
        b, index = divmod(group, len(levels))
        img = levels[index][b : b + 1].to(sample)
        # one batch entry per patch over the same (expanded, not copied) level: grid_sample
        # parallelises over the batch, so the patches use every thread (same values as one entry)
        grid = _patch_grid(flat_lafs[chosen], H, W, P).to(sample).view(count, P, P, 2)
        values = F.grid_sample(
            img.expand(count, -1, -1, -1),
            grid,
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        values = values.to(image.dtype)  # (count, C, P, P)
        out.index_copy_(0, chosen, values)
    return out.view(B * N, C, P, P)
