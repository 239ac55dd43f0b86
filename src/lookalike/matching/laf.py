"""Local affine frames (LAFs) from OpenCV-convention keypoints, and back (see :mod:`lookalike.matching.patches`).

This module sits below :mod:`lookalike.matching.keypoints` and :mod:`lookalike.matching.patches` and
imports neither, so the two do not import each other.

Convention:
    A LAF is kornia's ``(B, N, 2, 3)`` ``[A | c]`` in pixels. OpenCV keypoint to LAF:
    ``A = extent * size / 2 * R(-angle)``, ``c = xy`` (``size`` a diameter, ``angle`` clockwise degrees;
    kornia's orientation is counter-clockwise). ``extent`` is the patch half-width in units of
    ``size / 2``; :data:`SIFT_EXTENT` covers OpenCV's SIFT descriptor region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.core.check import check_positive
from lookalike.descriptors._base import SIFT_EXTENT

if TYPE_CHECKING:
    import torch

__all__ = ["SIFT_EXTENT", "keypoints_to_laf", "laf_geometry"]


def keypoints_to_laf(
    kps: Any, *, extent: float = SIFT_EXTENT, device: Any = None, dtype: Any = None
) -> torch.Tensor:
    """OpenCV-convention keypoints to kornia LAFs.

    Args:
        kps: :class:`~lookalike.matching.keypoints.Keypoints` (or anything with ``xy``, ``size`` and
            ``angle`` arrays; ``size`` a diameter, ``angle`` clockwise degrees).
        extent: patch half-width in units of ``size / 2`` (see the module Convention).
        device: device of the result (CPU by default).
        dtype: floating dtype of the result (float32 by default).

    Returns:
        ``(1, N, 2, 3)`` LAFs: ``A = extent * size / 2 * R(-angle)``, ``c = xy``; keypoints with an
        affine shape ``M`` (``kps.affine``) get ``A = extent * size / 2 * M R(-angle)``.

    Example:
        >>> from lookalike.matching.keypoints import Keypoints
        >>> kps = Keypoints.from_arrays([[5.0, 7.0]], size=[4.0], angle=[90.0])
        >>> keypoints_to_laf(kps, extent=1.0).round(decimals=4).tolist()  # patch x axis points down
        [[[[0.0, -2.0, 5.0], [2.0, 0.0, 7.0]]]]
    """
    import torch

    check_positive(extent, "extent")
    dtype = dtype or torch.float32
    n = len(kps)
    xy = torch.from_numpy(np.ascontiguousarray(kps.xy, dtype=np.float64))
    half = torch.from_numpy(kps.size.astype(np.float64)) * (extent / 2.0)
    ori = torch.deg2rad(-torch.from_numpy(kps.angle.astype(np.float64)))
    cos, sin = torch.cos(ori), torch.sin(ori)
    # kornia: A = s * [[cos, sin], [-sin, cos]] of the counter-clockwise orientation.
    A = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    affine = getattr(kps, "affine", None)
    if affine is not None:  # an affine region: the shape maps the normalised frame to the image
        A = torch.from_numpy(np.asarray(affine, dtype=np.float64)).view(n, 2, 2) @ A
    laf = torch.cat([A * half.view(n, 1, 1), xy.view(n, 2, 1)], dim=-1)
    return laf.view(1, n, 2, 3).to(device=device, dtype=dtype)


def laf_geometry(
    lafs: torch.Tensor, *, extent: float = SIFT_EXTENT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, OpenCV sizes and clockwise angles of similarity LAFs (an affine shape is lost).

    Args:
        lafs: ``(1, N, 2, 3)`` or ``(N, 2, 3)``.
        extent: as in :func:`keypoints_to_laf`.

    Returns:
        ``(xy (N, 2), size (N,), angle (N,))`` float64 with ``size = 2 sqrt|det A| / extent`` and
        ``angle = -atan2(a12, a11)`` in degrees, in ``[0, 360)``.

    Example:
        >>> import torch
        >>> xy, size, angle = laf_geometry(torch.tensor([[[0.0, -2.0, 5.0], [2.0, 0.0, 7.0]]]), extent=1.0)
        >>> xy.tolist(), size.tolist(), angle.tolist()
        ([[5.0, 7.0]], [4.0], [90.0])
    """
    import torch

    check_positive(extent, "extent")
    laf = lafs.detach().reshape(-1, 2, 3).to(torch.float64).cpu()
    det = (laf[:, 0, 0] * laf[:, 1, 1] - laf[:, 0, 1] * laf[:, 1, 0]).abs()
    ori = torch.rad2deg(torch.atan2(laf[:, 0, 1], laf[:, 0, 0]))
    return laf[:, :, 2].numpy(), (2.0 * det.sqrt() / extent).numpy(), np.mod(-ori.numpy(), 360.0)
