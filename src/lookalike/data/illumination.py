"""Random illumination changes for synthetic training views: light direction, tone, shadows, local contrast.

The photometric changes of :mod:`lookalike.data.synth` (gamma, contrast, brightness, blur, noise, JPEG) are
global point operations and sensor effects. Real day/night and lighting changes (HPatches ``i_*``, the
Oxford ``leuven`` sequence) also change the light *across* the image: one side brighter than the other,
cast shadows, a tone curve that crushes the shadows at night, local contrast from a camera's
processing. :func:`random_illumination` draws all four, so the two views of a training pair can be lit
differently.

Convention:
    - Images are float ``(H, W)`` gray or ``(H, W, C)`` in ``[0, 1]``, taken as gamma-encoded (sRGB-like,
      exponent :data:`ENCODING_GAMMA`); the light changes act on linear intensities
      (``x ** 2.2``), multiplicatively, and the result is re-encoded with the drawn tone curve.
    - Order: linearise, multiply by the shading field (light direction) and the cast-shadow mask, scale by
      the exposure, tone-map (shoulder, encoding gamma), clip to ``[0, 1]``, then local contrast
      (CLAHE on the 8-bit image, blended in).
    - ``strength`` scales every drawn effect towards the identity (0: the input itself, clipped to
      ``[0, 1]`` as float32; 1: the drawn change). The generator is used the same way whatever the
      strength, so one seed gives the same draw at every strength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError, ShapeError, ValueRangeError
from lookalike.data.images import quantize_u8
from lookalike.geometry import _check_range, _from_mapping, _uniform

__all__ = [
    "ENCODING_GAMMA",
    "IlluminationRanges",
    "cast_shadow",
    "local_contrast",
    "random_illumination",
    "shading_field",
    "tone_curve",
]

#: Exponent of the gamma encoding assumed for input images (``linear = x ** 2.2``).
ENCODING_GAMMA = 2.2


@dataclass(frozen=True)
class IlluminationRanges:
    """Ranges of :func:`random_illumination` (module Convention for the order).

    Attributes:
        slope: log-intensity change across the image along the light direction (``exp(slope * t)``,
            ``t`` from -1 to 1 over the image), drawn uniformly; the direction is uniform.
        spot: depth of a Gaussian light spot (``exp(-spot * r^2)`` away from a random centre, ``r`` in
            units of the image half-diagonal), drawn uniformly.
        exposure: log2 exposure change (EV), drawn uniformly.
        p_night: probability of a night-like exposure (``night_exposure`` instead of ``exposure``).
        night_exposure: log2 exposure of night-like views.
        shoulder: Reinhard shoulder ``c`` of the tone curve ``y = x (1 + c) / (x + c)``, drawn
            log-uniformly (small ``c``: strong highlight compression); ``tone_mix`` blends it in.
        tone_mix: weight of the shoulder curve against the identity, drawn uniformly.
        gamma: the encoding exponent of the output (``y ** (1 / gamma)``), drawn log-uniformly.
        p_shadow: probability of a cast shadow.
        shadow_darkness: fraction of light the shadow removes, drawn uniformly.
        shadow_softness: penumbra width, in units of the shorter image side, drawn uniformly.
        p_local_contrast: probability of a local contrast change (CLAHE).
        clahe_clip: CLAHE clip limit, drawn uniformly.
        clahe_tiles: CLAHE tiles per side, drawn uniformly (rounded).
        clahe_mix: weight of the CLAHE image against the tone-mapped one, drawn uniformly.

    Example:
        >>> IlluminationRanges.coerce({"p_shadow": 0.0}).p_shadow
        0.0
    """

    slope: tuple[float, float] = (0.0, 1.2)
    spot: tuple[float, float] = (0.0, 1.0)
    exposure: tuple[float, float] = (-1.5, 1.0)
    p_night: float = 0.25
    night_exposure: tuple[float, float] = (-4.0, -2.0)
    shoulder: tuple[float, float] = (0.2, 2.0)
    tone_mix: tuple[float, float] = (0.0, 1.0)
    gamma: tuple[float, float] = (1.6, 3.0)
    p_shadow: float = 0.4
    shadow_darkness: tuple[float, float] = (0.3, 0.85)
    shadow_softness: tuple[float, float] = (0.0, 0.05)
    p_local_contrast: float = 0.4
    clahe_clip: tuple[float, float] = (1.5, 4.0)
    clahe_tiles: tuple[float, float] = (2.0, 12.0)
    clahe_mix: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        for name in ("slope", "spot", "shadow_softness", "tone_mix", "clahe_mix"):
            _check_range(f"IlluminationRanges.{name}", getattr(self, name), low=0.0)
        for name in ("exposure", "night_exposure"):
            _check_range(f"IlluminationRanges.{name}", getattr(self, name))
        for name in ("shoulder", "gamma", "clahe_clip", "clahe_tiles"):
            _check_range(f"IlluminationRanges.{name}", getattr(self, name), low=1e-6)
        _check_range("IlluminationRanges.shadow_darkness", self.shadow_darkness, low=0.0)
        for name in ("tone_mix", "clahe_mix", "shadow_darkness"):
            if getattr(self, name)[1] > 1.0:
                raise OptionError(
                    f"IlluminationRanges.{name}: expected values in [0, 1], got {getattr(self, name)}"
                )
        for name in ("p_night", "p_shadow", "p_local_contrast"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise OptionError(f"IlluminationRanges.{name}: expected a probability, got {p!r}")

    @classmethod
    def coerce(cls, value: Any, name: str = "illumination") -> IlluminationRanges:
        """An :class:`IlluminationRanges` from itself, a mapping of its fields, or ``None`` (defaults)."""
        return _from_mapping(cls, value, name)


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ShapeError(f"{name}: expected a non-empty (H, W) or (H, W, C) array, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise OptionError(f"{name}: expected a float array in [0, 1], got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueRangeError(f"{name}: expected finite values, got NaN or infinity")
    return np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled so the half-diagonal is 1, centred: ``(x (1, W), y (H, 1))``."""
    h, w = shape
    half = 0.5 * math.hypot(h - 1, w - 1) or 1.0
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / half
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / half
    return x[None, :], y[:, None]


def shading_field(
    shape: tuple[int, int],
    *,
    direction: float,
    slope: float,
    spot: float = 0.0,
    center: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """``(H, W)`` float32 multiplicative light field ``exp(slope * (x cos d + y sin d) - spot * |p - center|^2)``.

    ``x``, ``y`` and ``center`` are in units of the image half-diagonal, centred on the image (``y`` down);
    ``direction`` is in radians, clockwise on screen from ``+x``.

    Example:
        >>> field = shading_field((3, 3), direction=0.0, slope=0.0)
        >>> bool(np.all(field == 1.0))
        True
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"shape: expected (H, W) with positive sides, got {tuple(shape)}")
    x, y = _grid((int(shape[0]), int(shape[1])))
    t = x * math.cos(direction) + y * math.sin(direction)
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2
    return np.exp(slope * t - spot * r2).astype(np.float32)


def cast_shadow(
    shape: tuple[int, int], polygon: np.ndarray, *, darkness: float, softness: float = 0.0
) -> np.ndarray:
    """``(H, W)`` float32 light mask: ``1 - darkness`` inside ``polygon`` (``(K, 2)`` pixel ``(x, y)``), 1 outside.

    ``softness`` is the Gaussian penumbra sigma in pixels (0: a hard edge).

    Example:
        >>> mask = cast_shadow((4, 4), np.array([[0, 0], [1, 0], [1, 3], [0, 3]]), darkness=0.5)
        >>> mask[0].tolist()
        [0.5, 0.5, 1.0, 1.0]
    """
    import cv2

    if not 0.0 <= darkness <= 1.0:
        raise OptionError(f"darkness: expected a value in [0, 1], got {darkness!r}")
    check_positive(softness, "softness", strict=False)
    inside = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(inside, [np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)], 1)
    mask = 1.0 - np.float32(darkness) * inside.astype(np.float32)
    if softness > 0.05:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=softness, sigmaY=softness)
    return mask


def tone_curve(linear: np.ndarray, *, shoulder: float, mix: float, gamma: float) -> np.ndarray:
    """Linear intensities to encoded ``[0, 1]`` values: ``((1 - mix) x + mix x (1 + c) / (x + c)) ** (1 / gamma)``.

    Values are clipped to ``[0, 1]`` before the encoding.

    Example:
        >>> tone_curve(np.array([0.25]), shoulder=1.0, mix=0.0, gamma=2.0).tolist()
        [0.5]
    """
    x = np.maximum(np.asarray(linear, dtype=np.float32), 0.0)
    c = np.float32(shoulder)
    y = (1.0 - mix) * x + mix * x * (1.0 + c) / (x + c)
    return np.power(np.clip(y, 0.0, 1.0), np.float32(1.0 / gamma)).astype(np.float32)


def local_contrast(image: np.ndarray, *, clip: float, tiles: int, mix: float = 1.0) -> np.ndarray:
    """CLAHE (``cv2.createCLAHE``) on the 8-bit image, blended: ``(1 - mix) image + mix clahe``, float32.

    Colour images are equalised on each channel.

    Example:
        >>> out = local_contrast(np.full((8, 8), 0.5, np.float32), clip=2.0, tiles=2, mix=0.0)
        >>> bool(np.all(out == 0.5))
        True
    """
    import cv2

    check_positive(clip, "clip")
    check_positive(tiles, "tiles")
    img = np.asarray(image, dtype=np.float32)
    clahe = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles)))
    u8 = quantize_u8(img)
    planes = [u8] if u8.ndim == 2 else [u8[..., k] for k in range(u8.shape[2])]
    out = np.stack([clahe.apply(np.ascontiguousarray(p)) for p in planes], axis=-1)
    eq = out.reshape(img.shape).astype(np.float32) / np.float32(255.0)
    return ((1.0 - mix) * img + mix * eq).astype(np.float32)


def _random_polygon(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A shadow: a random convex-ish polygon covering a random part of the image (``(K, 2)`` pixels)."""
    h, w = shape
    k = int(rng.integers(3, 7))
    center = rng.uniform([0.0, 0.0], [w, h])
    radius = rng.uniform(0.3, 0.9) * max(h, w)
    angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, k))
    radii = radius * rng.uniform(0.5, 1.0, k)
    return center + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _draw(rng: np.random.Generator, r: IlluminationRanges, shape: tuple[int, int]) -> dict:
    """Every random number of one change, drawn in a fixed order (independent of the strength)."""
    night = rng.random() < r.p_night
    draw = {
        "direction": rng.uniform(0.0, 2.0 * math.pi),
        "slope": _uniform(rng, r.slope),
        "spot": _uniform(rng, r.spot),
        "center": tuple(rng.uniform(-0.7, 0.7, 2)),
        "ev": _uniform(rng, r.night_exposure if night else r.exposure),
        "shoulder": math.exp(_uniform(rng, (math.log(r.shoulder[0]), math.log(r.shoulder[1])))),
        "tone_mix": _uniform(rng, r.tone_mix),
        "gamma": math.exp(_uniform(rng, (math.log(r.gamma[0]), math.log(r.gamma[1])))),
        "shadow": rng.random() < r.p_shadow,
        "polygon": _random_polygon(rng, shape),
        "darkness": _uniform(rng, r.shadow_darkness),
        "softness": _uniform(rng, r.shadow_softness) * min(shape),
        "contrast": rng.random() < r.p_local_contrast,
        "clip": _uniform(rng, r.clahe_clip),
        "tiles": round(_uniform(rng, r.clahe_tiles)),
        "clahe_mix": _uniform(rng, r.clahe_mix),
    }
    draw["night"] = night
    return draw


def random_illumination(
    image: Any,
    rng: np.random.Generator,
    ranges: IlluminationRanges | dict[str, Any] | None = None,
    *,
    strength: float = 1.0,
) -> np.ndarray:
    """Apply one random illumination change (module Convention).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` float image in ``[0, 1]`` (values outside are clipped).
        rng: NumPy generator (the change depends only on its state and ``ranges``).
        ranges: :class:`IlluminationRanges` (or a mapping of its fields); defaults if ``None``.
        strength: 0 (identity) to 1 (the drawn change); values above 1 exaggerate it.

    Returns:
        float32 array of the image's shape, values in ``[0, 1]``.

    Raises:
        ShapeError, OptionError, ValueRangeError: not a float image, a NaN, a bad strength or range.

    Example:
        >>> import numpy as np
        >>> img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
        >>> out = random_illumination(img, np.random.default_rng(0))
        >>> out.shape, out.dtype, bool(out.min() >= 0 and out.max() <= 1)
        ((8, 8), dtype('float32'), True)
        >>> bool(np.array_equal(random_illumination(img, np.random.default_rng(0), strength=0.0), img))
        True
    """
    if not isinstance(rng, np.random.Generator):
        raise OptionError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength < 0:
        raise OptionError(f"strength: expected a number >= 0, got {strength!r}")
    r = IlluminationRanges.coerce(ranges)
    img = _check_image(image)
    d = _draw(rng, r, img.shape[:2])
    if strength == 0:
        return img.copy()
    s = float(strength)
    light = shading_field(
        img.shape[:2], direction=d["direction"], slope=s * d["slope"], spot=s * d["spot"],
        center=d["center"],
    )  # fmt: skip
    if d["shadow"]:
        light = light * cast_shadow(
            img.shape[:2], d["polygon"], darkness=min(s * d["darkness"], 1.0),
            softness=d["softness"],
        )  # fmt: skip
    light = light * np.float32(2.0 ** (s * d["ev"]))
    if img.ndim == 3:
        light = light[..., None]
    linear = np.power(img, np.float32(ENCODING_GAMMA)) * light
    gamma = ENCODING_GAMMA * (d["gamma"] / ENCODING_GAMMA) ** s
    out = tone_curve(linear, shoulder=d["shoulder"], mix=min(s * d["tone_mix"], 1.0), gamma=gamma)
    if d["contrast"]:
        out = local_contrast(
            out, clip=d["clip"], tiles=max(int(d["tiles"]), 1), mix=min(s * d["clahe_mix"], 1.0)
        )
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
