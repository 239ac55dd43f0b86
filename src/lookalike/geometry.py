"""Homographies, one copy: random draws, point projection, image warps and local affine maps.

Used by the synthetic training views (:mod:`lookalike.data.bundled_pairs`), the HPatches-style patch
extraction (:mod:`lookalike.data.sequence_patches`), the matching metrics (:mod:`lookalike.eval.metrics`)
and the demo.

Convention:
    - Pixel coordinates ``(x, y)``, pixel centres at integers, ``y`` pointing down (OpenCV and kornia).
    - A homography ``H`` ``(3, 3)`` maps source pixels to view pixels: ``x_view ~ H x_src``. ``H`` and
      ``-H`` are the same map: functions orient ``H`` so that ``H[2, 2] >= 0`` first.
    - A point whose homogeneous ``w`` is ``<= 0`` (behind the camera, or at infinity) has no image: it
      projects to NaN, and every distance computed from it is non-finite.
    - A local affine frame (LAF) is a ``(2, 3)`` array ``[A | c]``: the patch square is ``c + A [-1, 1]^2``
      (the kornia convention), so ``sqrt(|det A|)`` is the patch half-width in pixels.
    - Angles are in radians.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from lookalike.core.errors import OptionError, ShapeError

__all__ = [
    "WarpRanges",
    "homography_jacobian",
    "image_corners",
    "map_lafs",
    "project_points",
    "random_homography",
    "warp_image",
]


def _check_range(name: str, value: Any, *, low: float | None = None) -> tuple[float, float]:
    """``value`` as a finite ``(min, max)`` pair with ``min <= max`` (and ``min >= low``)."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    if not ok or value[0] > value[1] or (low is not None and value[0] < low):
        bound = "" if low is None else f", both >= {low}"
        raise OptionError(
            f"{name}: expected a (min, max) pair with min <= max{bound}, got {value!r}"
        )
    return float(value[0]), float(value[1])


def _from_mapping(cls: type, value: Any, name: str) -> Any:
    """``None`` (defaults), an instance of the dataclass ``cls``, or a mapping of its fields."""
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


def _homography(H: Any, name: str = "H") -> np.ndarray:
    """``H`` as a ``(3, 3)`` float64 array with ``H[2, 2] >= 0``."""
    arr = np.asarray(H, dtype=np.float64)
    if arr.shape != (3, 3):
        raise ShapeError(f"{name}: expected shape (3, 3), got {arr.shape}")
    return -arr if arr[2, 2] < 0 else arr


def _points(xy: Any, name: str = "points") -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError(f"{name}: expected shape (N, 2), got {arr.shape}")
    return arr


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

    Example:
        >>> WarpRanges.coerce({"rotation": [-0.5, 0.5]}).rotation
        (-0.5, 0.5)
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

    Raises:
        OptionError: ``rng`` is not a generator or ``size`` is not two positive integers.

    Example:
        >>> import numpy as np
        >>> H = random_homography(np.random.default_rng(0), (100, 200), WarpRanges.identity())
        >>> np.allclose(H, np.eye(3))
        True
    """
    if not isinstance(rng, np.random.Generator):
        raise OptionError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if not (len(size) == 2 and all(int(v) == v and v > 0 for v in size)):
        raise OptionError(f"size: expected (height, width) positive integers, got {size!r}")
    r = ranges or WarpRanges()
    h, w = int(size[0]), int(size[1])
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


def project_points(H: Any, xy: Any) -> np.ndarray:
    """Map ``(N, 2)`` points through the homography ``H``; returns ``(N, 2)`` float64.

    Convention:
        Points with ``w <= 0`` (``H`` oriented so that ``H[2, 2] >= 0``) map to NaN (module Convention).

    Raises:
        ShapeError: ``H`` is not ``(3, 3)`` or ``xy`` not ``(N, 2)``.

    Example:
        >>> project_points([[1, 0, 2], [0, 1, 3], [0, 0, 1]], [[1.0, 1.0]]).tolist()
        [[3.0, 4.0]]
    """
    H = _homography(H)
    pts = _points(xy, "xy")
    hom = pts @ H[:, :2].T + H[:, 2]
    w = hom[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hom[:, :2] / w
    out[w[:, 0] <= 0] = np.nan
    return out


def image_corners(size: tuple[int, int]) -> np.ndarray:
    """The 4 pixel-centre corners ``(0, 0), (W-1, 0), (0, H-1), (W-1, H-1)`` of a ``(H, W)`` image.

    Example:
        >>> image_corners((10, 20)).tolist()
        [[0.0, 0.0], [19.0, 0.0], [0.0, 9.0], [19.0, 9.0]]
    """
    h, w = size
    return np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)


def homography_jacobian(H: Any, xy: Any) -> np.ndarray:
    """Jacobians ``(N, 2, 2)`` of ``x -> H x`` (in inhomogeneous coordinates) at ``(N, 2)`` points.

    With ``u = H[:2] [x; 1]``, ``w = H[2] [x; 1]`` and ``y = u / w``: ``J = (H[:2, :2] - y H[2, :2]) / w``:
    the local affine map of ``H`` at each point.

    Example:
        >>> import numpy as np
        >>> homography_jacobian(np.diag([2.0, 3.0, 1.0]), np.zeros((1, 2)))[0]
        array([[2., 0.],
               [0., 3.]])
    """
    H = _homography(H)
    pts = _points(xy, "xy")
    w = pts @ H[2, :2] + H[2, 2]
    y = project_points(H, pts)
    jac = H[None, :2, :2] - y[:, :, None] * H[None, 2:3, :2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return jac / w[:, None, None]


def map_lafs(H: Any, lafs: Any, *, mode: str = "affine") -> np.ndarray:
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

    Raises:
        OptionError: unknown ``mode``.
        ShapeError: ``lafs`` is not ``(N, 2, 3)``.

    Example:
        >>> import numpy as np
        >>> laf = np.array([[[1.0, 0.0, 5.0], [0.0, 1.0, 5.0]]])
        >>> map_lafs(np.diag([2.0, 2.0, 1.0]), laf)[0].tolist()
        [[2.0, 0.0, 10.0], [0.0, 2.0, 10.0]]
    """
    if mode not in ("affine", "similarity"):
        raise OptionError(f"mode: expected one of ['affine', 'similarity'], got {mode!r}")
    lafs = np.asarray(lafs, dtype=np.float64)
    if lafs.ndim != 3 or lafs.shape[1:] != (2, 3):
        raise ShapeError(f"lafs: expected shape (N, 2, 3), got {lafs.shape}")
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


def warp_image(image: np.ndarray, H: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """Warp ``image`` by ``H`` (source -> output pixels) into an output of ``size = (H, W)``.

    Bilinear (``cv2.INTER_LINEAR``), zero outside the source. Any dtype and channel count OpenCV accepts
    (``(H, W)`` or ``(H, W, C)``, uint8 or float32); the output keeps them.

    Example:
        >>> import numpy as np
        >>> img = np.arange(12, dtype=np.float32).reshape(3, 4)
        >>> bool((warp_image(img, np.eye(3)) == img).all())
        True
    """
    import cv2

    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ShapeError(f"image: expected shape (H, W) or (H, W, C), got {image.shape}")
    h, w = size if size is not None else image.shape[:2]
    return cv2.warpPerspective(
        image,
        _homography(H),
        (int(w), int(h)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
