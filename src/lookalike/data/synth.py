"""Synthetic views and patch sampling: random homographies, their local affine maps, random photometric
changes, keypoint frames, the HPatches frame jitter and patch cutting.

Pure NumPy/OpenCV functions used by the training-pair generator (:mod:`lookalike.data.bundled_pairs`), the
HPatches-style patch extraction (:mod:`lookalike.data.sequence_patches`) and the AMOS views reader.

Convention:
    - Pixel coordinates ``(x, y)``, pixel centres at integers, ``y`` pointing down (OpenCV and kornia).
    - A homography ``H`` (3, 3) maps source pixels to view pixels: ``x_view ~ H x_src``.
    - A local affine frame (LAF) is a ``(2, 3)`` array ``[A | c]``: the patch square is ``c + A [-1, 1]^2``
      (the kornia convention), so ``sqrt(|det A|)`` is the patch half-width in pixels.
    - Angles are in radians. Images are float32 in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError

__all__ = [
    "HPATCHES_JITTER",
    "Jitter",
    "PhotometricRanges",
    "WarpRanges",
    "cut_patches",
    "detect_lafs",
    "homography_jacobian",
    "jitter_lafs",
    "lafs_inside",
    "map_lafs",
    "project_points",
    "random_homography",
    "random_jitter",
    "random_photometric",
    "warp_image",
]


def _check_range(name: str, value: Any, *, low: float | None = None) -> tuple[float, float]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    if not ok or value[0] > value[1] or (low is not None and value[0] < low):
        bound = "" if low is None else f", both >= {low}"
        raise OptionError(
            f"{name}: expected a (min, max) pair with min <= max{bound}, got {value!r}"
        )
    return float(value[0]), float(value[1])


def _from_mapping(cls: type, value: Any, name: str) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise OptionError(
                f"{name}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    raise OptionError(f"{name}: expected a {cls.__name__} or a mapping, got {type(value).__name__}")


@dataclass(frozen=True)
class WarpRanges:
    """Ranges of the random homography, each a ``(min, max)`` pair sampled uniformly unless noted.

    Attributes:
        rotation: in-plane rotation in radians.
        scale: isotropic zoom, sampled log-uniformly (``(1, 1)`` disables it).
        anisotropy: ratio of the x to the y scale, sampled log-uniformly.
        shear: x-shear coefficient (``x += shear * y``).
        perspective: the two projective coefficients, each in units of ``1 / max(H, W)``; ``0.3`` changes the
            homogeneous scale by at most 15 % at the image border.
        translation: shift as a fraction of the image width (x) and height (y).
    """

    rotation: tuple[float, float] = (-math.pi, math.pi)
    scale: tuple[float, float] = (0.7, 1.4)
    anisotropy: tuple[float, float] = (0.8, 1.25)
    shear: tuple[float, float] = (-0.15, 0.15)
    perspective: tuple[float, float] = (-0.3, 0.3)
    translation: tuple[float, float] = (-0.1, 0.1)

    def __post_init__(self) -> None:
        for f in fields(self):
            low = 1e-6 if f.name in ("scale", "anisotropy") else None
            _check_range(f"WarpRanges.{f.name}", getattr(self, f.name), low=low)
        if max(abs(v) for v in self.perspective) >= 1.0:
            raise OptionError(
                f"WarpRanges.perspective: expected |value| < 1, got {self.perspective!r}"
            )

    @classmethod
    def identity(cls) -> WarpRanges:
        """Ranges that always give the identity homography."""
        zero = (0.0, 0.0)
        return cls(zero, (1.0, 1.0), (1.0, 1.0), zero, zero, zero)

    @classmethod
    def coerce(cls, value: Any, name: str = "warp") -> WarpRanges:
        """Accept ``None`` (defaults), an instance, or a mapping of field names to pairs."""
        return _from_mapping(cls, value, name)


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


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def random_homography(
    rng: np.random.Generator, size: tuple[int, int], ranges: WarpRanges | None = None
) -> np.ndarray:
    """Draw a homography that keeps the image centre near the centre of a view of the same size.

    ``H = T(c + t) · R(θ) · diag(s √a, s / √a) · Shear · P · T(-c)`` with ``c`` the image centre, ``P`` the
    projective part, ``t`` the translation.

    Args:
        rng: NumPy random generator.
        size: ``(height, width)`` of the source (and of the view).
        ranges: sampling ranges (defaults of :class:`WarpRanges`).

    Returns:
        ``(3, 3)`` float64 homography, normalised so ``H[2, 2] == 1``.

    Example:
        >>> import numpy as np
        >>> H = random_homography(np.random.default_rng(0), (100, 200), WarpRanges.identity())
        >>> np.allclose(H, np.eye(3))
        True
    """
    r = ranges or WarpRanges()
    h, w = size
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    theta = _uniform(rng, r.rotation)
    s = _log_uniform(rng, r.scale)
    a = _log_uniform(rng, r.anisotropy)
    k = _uniform(rng, r.shear)
    px = _uniform(rng, r.perspective) / max(h, w)
    py = _uniform(rng, r.perspective) / max(h, w)
    tx = _uniform(rng, r.translation) * w
    ty = _uniform(rng, r.translation) * h
    cos, sin = math.cos(theta), math.sin(theta)
    rot = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    scale = np.diag([s * math.sqrt(a), s / math.sqrt(a), 1.0])
    shear = np.array([[1.0, k, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    persp = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [px, py, 1.0]])
    to_origin = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    back = np.array([[1.0, 0.0, cx + tx], [0.0, 1.0, cy + ty], [0.0, 0.0, 1.0]])
    H = back @ rot @ scale @ shear @ persp @ to_origin
    return H / H[2, 2]


def _oriented(H: np.ndarray) -> np.ndarray:
    """``H`` up to sign, with ``H[2, 2] >= 0`` (a homography and its negative are the same map)."""
    H = np.asarray(H, dtype=np.float64)
    return -H if H[2, 2] < 0 else H


def project_points(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through ``H``; returns ``(N, 2)``.

    Points with ``w <= 0`` (behind the camera, for ``H`` scaled so that ``H[2, 2] > 0``) map to NaN.
    """
    H = _oriented(H)
    pts = np.asarray(xy, dtype=np.float64)
    hom = pts @ H[:, :2].T + H[:, 2]
    w = hom[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hom[:, :2] / w
    out[(w[:, 0] <= 0)] = np.nan
    return out


def homography_jacobian(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Jacobians ``(N, 2, 2)`` of ``x -> H x`` (in inhomogeneous coordinates) at ``(N, 2)`` points.

    With ``u = H[:2] [x; 1]``, ``w = H[2] [x; 1]`` and ``y = u / w``: ``J = (H[:2, :2] - y H[2, :2]) / w``.

    Example:
        >>> import numpy as np
        >>> homography_jacobian(np.diag([2.0, 3.0, 1.0]), np.zeros((1, 2)))[0]
        array([[2., 0.],
               [0., 3.]])
    """
    H = _oriented(H)
    pts = np.asarray(xy, dtype=np.float64)
    w = pts @ H[2, :2] + H[2, 2]
    y = project_points(H, pts)
    jac = H[None, :2, :2] - y[:, :, None] * H[None, 2:3, :2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return jac / w[:, None, None]


def map_lafs(H: np.ndarray, lafs: np.ndarray, *, mode: str = "affine") -> np.ndarray:
    """Map source LAFs ``(N, 2, 3)`` into the view of ``H`` through its local affine approximation.

    The centre is projected, ``c' = H(c)``, and the shape is ``A' = J(c) A`` with ``J`` the Jacobian of ``H`` at
    ``c``, so both frames cover the same surface to first order.

    Args:
        H: ``(3, 3)`` homography from the source to the view.
        lafs: ``(N, 2, 3)`` source LAFs.
        mode: ``"affine"`` keeps ``J A`` (affine-normalised pairs); ``"similarity"`` keeps only its scale
            ``sqrt(|det|)`` and the direction of its first column (the frame a similarity-covariant detector
            would find, leaving the residual shear and anisotropy in the patch).

    Returns:
        ``(N, 2, 3)`` LAFs in the view (non-finite where the centre maps behind the camera).
    """
    if mode not in ("affine", "similarity"):
        raise OptionError(f"mode: expected one of ['affine', 'similarity'], got {mode!r}")
    lafs = np.asarray(lafs, dtype=np.float64)
    centers = lafs[:, :, 2]
    jac = homography_jacobian(H, centers)
    shape = jac @ lafs[:, :, :2]
    if mode == "similarity":
        scale = np.sqrt(np.abs(np.linalg.det(shape)))
        angle = np.arctan2(shape[:, 1, 0], shape[:, 0, 0])
        cos, sin = np.cos(angle), np.sin(angle)
        shape = scale[:, None, None] * np.stack(
            [np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1
        )
    return np.concatenate([shape, project_points(H, centers)[:, :, None]], axis=2)


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


def warp_image(image: np.ndarray, H: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Warp a float32 ``(H, W)`` image by ``H`` (bilinear, zero outside) into a view of ``size``."""
    import cv2

    h, w = size if size is not None else image.shape[:2]
    return cv2.warpPerspective(
        image,
        H,
        (int(w), int(h)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


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
        u8 = (out * 255.0 + 0.5).astype(np.uint8)
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
        u8 = (out * 255.0 + 0.5).astype(np.uint8)
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
    u8 = gray if gray.dtype == np.uint8 else np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8)
    kps = cv2.SIFT_create(nfeatures=int(budget)).detect(u8, None)
    if not kps:
        return np.zeros((0, 2, 3))
    kps = sorted(kps, key=lambda k: -k.response)
    xy = np.array([k.pt for k in kps], dtype=np.float64)
    radius = np.array([mr_size * k.size / 2.0 for k in kps], dtype=np.float64)
    angle = np.radians(-np.array([k.angle for k in kps], dtype=np.float64))
    keep = np.ones(len(kps), dtype=bool)
    for i in range(len(kps)):
        if not keep[i]:
            continue
        rest = np.flatnonzero(keep[i + 1 :]) + i + 1
        if rest.size:
            d = np.linalg.norm(xy[rest] - xy[i], axis=1)
            keep[rest[_circle_overlap(radius[i], radius[rest], d) > max_overlap]] = False
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
