"""Synthetic views and patch sampling: random photometric changes, keypoint frames, the HPatches frame
jitter and patch cutting.

Pure NumPy/OpenCV functions used by the training-pair generator (:mod:`lookalike.data.bundled_pairs`), the
HPatches-style patch extraction (:mod:`lookalike.data.sequence_patches`) and the AMOS views reader. The
geometry (random homographies, point projection, warps, local affine maps of a homography) lives in
:mod:`lookalike.geometry`.

Convention:
    - Pixel coordinates ``(x, y)``, pixel centres at integers, ``y`` pointing down (OpenCV and kornia).
    - A local affine frame (LAF) is a ``(2, 3)`` array ``[A | c]``: the patch square is ``c + A [-1, 1]^2``
      (the kornia convention), so ``sqrt(|det A|)`` is the patch half-width in pixels.
    - Angles are in radians. Images are float32 in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError
from lookalike.data.images import quantize_u8
from lookalike.geometry import (
    _check_range,
    _from_mapping,
    _log_uniform,
    _uniform,
    map_lafs,
    project_points,
    warp_image,
)

__all__ = [
    "HPATCHES_JITTER",
    "Jitter",
    "PhotometricRanges",
    "corresponding_patches",
    "cut_patches",
    "detect_lafs",
    "jitter_lafs",
    "lafs_inside",
    "random_jitter",
    "random_photometric",
    "suppress_overlaps",
]


@dataclass(frozen=True)
class PhotometricRanges:
    """Ranges of the random photometric change, applied in this order.

    Attributes:
        gamma: exponent on intensities, sampled log-uniformly.
        contrast: factor around the image mean.
        brightness: additive offset.
        blur: Gaussian blur sigma in pixels, applied with probability ``p_blur``.
        noise: standard deviation of additive Gaussian noise.
        jpeg: JPEG quality (1-100), applied with probability ``p_jpeg`` after clipping to ``[0, 1]``.
        p_blur: probability of blurring.
        p_jpeg: probability of JPEG compression.
    """

    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.7, 1.3)
    brightness: tuple[float, float] = (-0.1, 0.1)
    blur: tuple[float, float] = (0.0, 1.2)
    noise: tuple[float, float] = (0.0, 0.02)
    jpeg: tuple[float, float] = (40.0, 95.0)
    p_blur: float = 0.3
    p_jpeg: float = 0.3

    def __post_init__(self) -> None:
        for name in ("gamma", "contrast"):
            _check_range(f"PhotometricRanges.{name}", getattr(self, name), low=1e-6)
        _check_range("PhotometricRanges.brightness", self.brightness)
        _check_range("PhotometricRanges.blur", self.blur, low=0.0)
        _check_range("PhotometricRanges.noise", self.noise, low=0.0)
        _, hi = _check_range("PhotometricRanges.jpeg", self.jpeg, low=1.0)
        if hi > 100:
            raise OptionError(
                f"PhotometricRanges.jpeg: expected qualities in [1, 100], got {self.jpeg!r}"
            )
        for name in ("p_blur", "p_jpeg"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
                raise OptionError(
                    f"PhotometricRanges.{name}: expected a probability in [0, 1], got {p!r}"
                )

    @classmethod
    def identity(cls) -> PhotometricRanges:
        """Ranges that leave the image unchanged."""
        return cls(
            (1.0, 1.0), (1.0, 1.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (95.0, 95.0), 0.0, 0.0
        )

    @classmethod
    def coerce(cls, value: Any, name: str = "photometric") -> PhotometricRanges:
        """Accept ``None`` (defaults), an instance, or a mapping of field names to values."""
        return _from_mapping(cls, value, name)


def lafs_inside(lafs: np.ndarray, size: tuple[int, int], *, border: float = 0.0) -> np.ndarray:
    """``(N,)`` bool: the patch square ``c + A [-1, 1]^2`` lies within ``[border, side - 1 - border]``."""
    lafs = np.asarray(lafs, dtype=np.float64)
    h, w = size
    extent = np.abs(lafs[:, :, 0]) + np.abs(lafs[:, :, 1])  # half-size of the square's bounding box
    lo = lafs[:, :, 2] - extent
    hi = lafs[:, :, 2] + extent
    ok = (lo[:, 0] >= border) & (lo[:, 1] >= border)
    ok &= (hi[:, 0] <= w - 1 - border) & (hi[:, 1] <= h - 1 - border)
    return ok & np.isfinite(lafs).all(axis=(1, 2))


def random_photometric(
    image: np.ndarray, rng: np.random.Generator, ranges: PhotometricRanges | None = None
) -> np.ndarray:
    """Apply a random gamma, contrast, brightness, blur, noise and JPEG change to a float32 ``[0, 1]`` image.

    Gamma, contrast (around the mean after gamma) and brightness are applied as one 256-entry table to the
    image quantised to 8 bits; blur and noise act on floats; JPEG quantises again.

    Returns:
        A new float32 image in ``[0, 1]``, same shape.

    Example:
        >>> import numpy as np
        >>> img = np.random.default_rng(0).random((8, 8), dtype=np.float32)
        >>> out = random_photometric(img, np.random.default_rng(1), PhotometricRanges.identity())
        >>> bool(np.allclose(out, img))
        True
    """
    import cv2

    r = ranges or PhotometricRanges()
    out = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    gamma = _log_uniform(rng, r.gamma)
    contrast = _uniform(rng, r.contrast)
    brightness = _uniform(rng, r.brightness)
    if gamma != 1.0 or contrast != 1.0 or brightness != 0.0:
        # Point operations through a 256-entry table on the 8-bit quantised image (as a camera would).
        u8 = quantize_u8(out)
        levels = np.power(np.arange(256, dtype=np.float64) / 255.0, gamma)
        mean = 0.0
        if contrast != 1.0:
            hist = np.bincount(u8.ravel(), minlength=256)
            mean = float(hist @ levels / max(u8.size, 1))
        table = ((levels - mean) * contrast + mean + brightness).astype(np.float32)
        out = cv2.LUT(u8, table.reshape(1, 256))
    if r.p_blur > 0 and rng.random() < r.p_blur:
        sigma = _uniform(rng, r.blur)
        if sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, sigmaY=sigma)
    sigma_n = _uniform(rng, r.noise)
    if sigma_n > 0:
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma_n)
    out = np.clip(out, 0.0, 1.0)
    if r.p_jpeg > 0 and rng.random() < r.p_jpeg:
        quality = round(_uniform(rng, r.jpeg))
        u8 = quantize_u8(out)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / np.float32(255.0)
    return out.astype(np.float32, copy=False)


def _circle_overlap(r1: float, r2: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Intersection over union of a circle of radius ``r1`` with circles ``r2`` at centre distances ``d``."""
    r2 = np.asarray(r2, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    inter = np.zeros_like(d)
    inside = d <= np.abs(r1 - r2)
    inter[inside] = np.pi * np.minimum(r1, r2[inside]) ** 2
    part = (d < r1 + r2) & ~inside
    if part.any():
        dp, rp = d[part], r2[part]
        c1 = np.clip((dp**2 + r1**2 - rp**2) / (2 * dp * r1), -1.0, 1.0)
        c2 = np.clip((dp**2 + rp**2 - r1**2) / (2 * dp * rp), -1.0, 1.0)
        k = (-dp + r1 + rp) * (dp + r1 - rp) * (dp - r1 + rp) * (dp + r1 + rp)
        inter[part] = (
            r1**2 * np.arccos(c1) + rp**2 * np.arccos(c2) - 0.5 * np.sqrt(np.maximum(k, 0))
        )
    union = np.pi * r1**2 + np.pi * r2**2 - inter
    return inter / union


def suppress_overlaps(xy: np.ndarray, radius: np.ndarray, max_overlap: float) -> np.ndarray:
    """Greedy suppression of circular regions, strongest first: ``(N,)`` boolean mask of the kept ones.

    ``xy`` ``(N, 2)`` centres and ``radius`` ``(N,)`` radii are in decreasing strength; a region is
    dropped when its overlap (intersection over union) with a stronger kept one exceeds ``max_overlap``.

    Example:
        >>> suppress_overlaps(np.array([[0.0, 0.0], [0.5, 0.0], [9.0, 0.0]]), np.ones(3), 0.5)
        array([ True, False,  True])
    """
    keep = np.ones(len(xy), dtype=bool)
    for i in range(len(xy)):
        if not keep[i]:
            continue
        rest = np.flatnonzero(keep[i + 1 :]) + i + 1
        if rest.size:
            d = np.linalg.norm(xy[rest] - xy[i], axis=1)
            keep[rest[_circle_overlap(radius[i], radius[rest], d) > max_overlap]] = False
    return keep


def detect_lafs(
    gray: np.ndarray, *, budget: int = 1000, mr_size: float = 6.0, max_overlap: float = 0.5
) -> np.ndarray:
    """Detect DoG keypoints (OpenCV SIFT detector) and return their LAFs, strongest first.

    Convention:
        - The LAF half-width is ``mr_size * sigma`` with ``sigma = keypoint.size / 2`` (so ``mr_size=6`` spans the
          12-sigma window of the SIFT descriptor). The LAF orientation is ``-keypoint.angle``: OpenCV measures its
          angle clockwise on screen, kornia counter-clockwise, so the dominant gradient points along the
          patch's +x axis.
        - Keypoints whose circular regions overlap by more than ``max_overlap`` (intersection over union) with a
          stronger one are dropped (this also removes SIFT's duplicate orientations).

    Args:
        gray: ``(H, W)`` float image in ``[0, 1]`` (or uint8).
        budget: maximum number of SIFT keypoints (``nfeatures``).
        mr_size: magnification of the detected scale.
        max_overlap: overlap above which the weaker keypoint is dropped.

    Returns:
        ``(N, 2, 3)`` float64 LAFs.

    Example:
        >>> from lookalike.data import bundled_photos
        >>> lafs = detect_lafs(bundled_photos(["camera"])[0].gray_array, budget=50)
        >>> lafs.shape[1:], 0 < len(lafs) <= 50
        ((2, 3), True)
    """
    import cv2

    check_positive(budget, "budget")
    check_positive(mr_size, "mr_size")
    u8 = gray if gray.dtype == np.uint8 else quantize_u8(gray)
    kps = cv2.SIFT_create(nfeatures=int(budget)).detect(u8, None)
    if not kps:
        return np.zeros((0, 2, 3))
    kps = sorted(kps, key=lambda k: -k.response)
    xy = np.array([k.pt for k in kps], dtype=np.float64)
    radius = np.array([mr_size * k.size / 2.0 for k in kps], dtype=np.float64)
    angle = np.radians(-np.array([k.angle for k in kps], dtype=np.float64))
    keep = suppress_overlaps(xy, radius, max_overlap)
    xy, radius, angle = xy[keep], radius[keep], angle[keep]
    cos, sin = np.cos(angle), np.sin(angle)
    # kornia: A = s * [[cos, sin], [-sin, cos]] for an orientation counter-clockwise on screen
    shape = radius[:, None, None] * np.stack(
        [np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1
    )
    return np.concatenate([shape, xy[:, :, None]], axis=2)


def cut_patches(
    image: np.ndarray | torch.Tensor, lafs: np.ndarray, patch_size: int
) -> torch.Tensor:
    """Sample ``(N, 1, P, P)`` float32 patches at ``(N, 2, 3)`` LAFs from a ``(H, W)`` image.

    Convention:
        - Cell ``(i, j)`` samples the image at ``c + A (u_j, u_i)`` with ``u_k = (2k + 1) / P - 1``: the patch
          tiles the square ``c + A [-1, 1]^2`` exactly as :func:`kornia.feature.extract_patches_from_pyramid`.
        - Anti-aliasing: a LAF of half-width ``s`` is read from pyramid level ``floor(log2(2 s / P))`` (OpenCV
          ``pyrDown`` levels, while the shorter side stays >= ``P``), bilinear (``cv2.warpAffine``), replicating
          the border. On level 0 the result equals kornia's to float32 precision; on coarser levels the pyramid
          filters differ slightly.

    Example:
        >>> import numpy as np
        >>> img = np.arange(25, dtype=np.float32).reshape(5, 5)
        >>> laf = np.array([[[2.5, 0.0, 2.0], [0.0, 2.5, 2.0]]])  # the whole 5 x 5 image
        >>> bool(np.allclose(cut_patches(img, laf, 5)[0, 0].numpy(), img))
        True
    """
    import cv2

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    img = np.ascontiguousarray(np.asarray(image, dtype=np.float32).reshape(image.shape[-2:]))
    lafs = np.asarray(lafs, dtype=np.float64).reshape(-1, 2, 3)
    P = int(patch_size)
    out = np.zeros((len(lafs), 1, P, P), dtype=np.float32)
    if len(lafs) == 0:
        return torch.from_numpy(out)
    scale = np.sqrt(np.abs(np.linalg.det(lafs[:, :, :2])))
    pyramid = [img]
    levels = np.floor(np.log2(np.maximum(2.0 * scale / P, 1e-12)))
    while min(pyramid[-1].shape) // 2 >= P and len(pyramid) <= max(levels.max(), 0):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    levels = np.clip(levels, 0, len(pyramid) - 1).astype(np.int64)
    offset = np.full(2, 1.0 / P - 1.0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i, (level, laf) in enumerate(zip(levels, lafs)):
        if not np.isfinite(laf).all():
            continue
        f = float(
            2**level
        )  # pyrDown keeps the even pixels: level-L pixel x is level-0 pixel x * 2^L
        M = np.empty((2, 3))
        M[:, :2] = laf[:, :2] * (2.0 / P) / f
        M[:, 2] = (laf[:, 2] + laf[:, :2] @ offset) / f
        out[i, 0] = cv2.warpAffine(
            pyramid[level], M, (P, P), flags=flags, borderMode=cv2.BORDER_REPLICATE
        )
    return torch.from_numpy(out)


@dataclass(frozen=True)
class Jitter:
    """Half-ranges of the HPatches frame jitter.

    Attributes:
        rotation: radians.
        scale: ``s ~ U[1 - scale, 1 + scale]``.
        anisotropy: ``log2 a ~ U[-anisotropy, anisotropy]``.
        translation: in units of the region radius (the LAF half-width).
    """

    rotation: float
    scale: float
    anisotropy: float
    translation: float


#: The HPatches easy / hard / tough jitter, keyed by difficulty letter.
HPATCHES_JITTER: dict[str, Jitter] = {
    "e": Jitter(math.radians(10.0), 0.10, 0.2, 0.15),
    "h": Jitter(math.radians(20.0), 0.20, 0.4, 0.30),
    "t": Jitter(math.radians(30.0), 0.30, 0.6, 0.45),
}


def random_jitter(rng: np.random.Generator, n: int, jitter: Jitter) -> np.ndarray:
    """``(n, 2, 3)`` jitter transforms ``[T | t]`` in the region frame (unit circle = the region).

    Example:
        >>> import numpy as np
        >>> T = random_jitter(np.random.default_rng(0), 4, Jitter(0.0, 0.0, 0.0, 0.0))
        >>> bool(np.allclose(T, [[1, 0, 0], [0, 1, 0]]))
        True
    """
    theta = rng.uniform(-jitter.rotation, jitter.rotation, n)
    s = rng.uniform(1.0 - jitter.scale, 1.0 + jitter.scale, n)
    a = 2.0 ** rng.uniform(-jitter.anisotropy, jitter.anisotropy, n)
    t = rng.uniform(-jitter.translation, jitter.translation, (n, 2))
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    scale = np.zeros((n, 2, 2))
    scale[:, 0, 0] = s * np.sqrt(a)
    scale[:, 1, 1] = s / np.sqrt(a)
    return np.concatenate([rot @ scale, t[:, :, None]], axis=2)


def jitter_lafs(lafs: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Apply region-frame transforms: ``A' = A T`` and ``c' = c + A t``; ``(N, 2, 3)`` each."""
    A = lafs[:, :, :2]
    shape = A @ transforms[:, :, :2]
    center = lafs[:, :, 2] + np.einsum("nij,nj->ni", A, transforms[:, :, 2])
    return np.concatenate([shape, center[:, :, None]], axis=2)


def _inside_source(H: np.ndarray, view_lafs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The view LAF squares' corners map back inside the source image (so no patch reads the black border)."""
    h, w = size
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    pts = view_lafs[:, None, :, 2] + np.einsum("nij,kj->nki", view_lafs[:, :, :2], corners)
    back = project_points(np.linalg.inv(H), pts.reshape(-1, 2)).reshape(-1, 4, 2)
    ok = (
        (back[..., 0] >= 0)
        & (back[..., 0] <= w - 1)
        & (back[..., 1] >= 0)
        & (back[..., 1] <= h - 1)
    )
    return ok.all(axis=1)


def corresponding_patches(
    image: np.ndarray,
    lafs: np.ndarray,
    homographies: Sequence[np.ndarray],
    *,
    patch_size: int = 32,
    rng: np.random.Generator | None = None,
    photometric: PhotometricRanges | None = None,
    laf_mode: str = "affine",
    jitter: Jitter | None = None,
    max_points: int | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Cut the same keypoints out of several homographic views of one image.

    Args:
        image: ``(H, W)`` float32 source in ``[0, 1]``.
        lafs: ``(N, 2, 3)`` source LAFs.
        homographies: ``V`` homographies from the source to each view (same size as the source).
        patch_size: output patch side ``P``.
        rng: generator for the photometric changes and the keypoint subset (required with either).
        photometric: photometric ranges applied independently to every view; ``None`` for none.
        laf_mode: ``"affine"`` or ``"similarity"`` (see :func:`~lookalike.geometry.map_lafs`).
        jitter: frame jitter drawn independently for every view before the mapping (detector noise, as the
            HPatches :class:`Jitter`); ``None`` for exact correspondences.
        max_points: keep at most this many of the visible keypoints (a random subset).

    Returns:
        ``patches`` ``(M, V, 1, P, P)`` float32 in ``[0, 1]`` and ``index`` ``(M,)``: the rows of ``lafs`` used,
        those fully inside every view (and whose view square maps back inside the source).
    """
    size = image.shape[:2]
    views = []
    valid = np.ones(len(lafs), dtype=bool)
    if jitter is not None and rng is None:
        raise OptionError("corresponding_patches: jitter needs an rng")
    for H in homographies:
        frames = (
            lafs if jitter is None else jitter_lafs(lafs, random_jitter(rng, len(lafs), jitter))
        )
        view_lafs = map_lafs(H, frames, mode=laf_mode)
        valid &= lafs_inside(view_lafs, size, border=1.0) & _inside_source(H, view_lafs, size)
        views.append(view_lafs)
    index = np.flatnonzero(valid)
    if max_points is not None and index.size > max_points:
        if rng is None:
            raise OptionError("corresponding_patches: max_points needs an rng to draw the subset")
        index = np.sort(rng.choice(index, size=max_points, replace=False))
    out = torch.empty(index.size, len(homographies), 1, patch_size, patch_size)
    for v, (H, view_lafs) in enumerate(zip(homographies, views)):
        if index.size == 0:
            break
        warped = warp_image(image, H, size)
        if photometric is not None:
            if rng is None:
                raise OptionError("corresponding_patches: photometric changes need an rng")
            warped = random_photometric(warped, rng, photometric)
        out[:, v] = cut_patches(warped, view_lafs[index], patch_size)
    return out.clamp_(0.0, 1.0), index
