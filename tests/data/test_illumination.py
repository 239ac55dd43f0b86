"""Illumination changes: identity at strength 0, value range, determinism, and each effect against an oracle."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from lookalike.core.errors import LookalikeError, OptionError, ShapeError, ValueRangeError
from lookalike.data.illumination import (
    ENCODING_GAMMA,
    IlluminationRanges,
    cast_shadow,
    local_contrast,
    random_illumination,
    shading_field,
    tone_curve,
)


def _image(seed: int = 0, shape: tuple[int, ...] = (48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random(shape[:2]).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    if len(shape) == 3:
        img = np.stack([img, img[::-1], 1 - img], axis=-1)[..., : shape[2]]
    return np.ascontiguousarray(img, dtype=np.float32)


@pytest.mark.parametrize("shape", [(48, 64), (40, 30, 3)])
def test_strength_zero_is_the_identity(shape):
    img = _image(1, shape)
    for seed in range(5):
        out = random_illumination(img, np.random.default_rng(seed), strength=0.0)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert np.array_equal(out, img)


def test_strength_zero_clips_to_the_unit_range():
    img = np.array([[-0.5, 0.5], [1.5, 1.0]], dtype=np.float64)
    out = random_illumination(img, np.random.default_rng(0), strength=0.0)
    assert out.tolist() == [[0.0, 0.5], [1.0, 1.0]]


def test_small_strength_is_close_to_the_identity():
    img = _image(2)
    out = random_illumination(img, np.random.default_rng(3), strength=1e-4)
    assert np.abs(out - img).max() < 5e-3


@pytest.mark.parametrize("shape", [(48, 64), (32, 32, 3)])
def test_values_stay_in_range_and_change(shape):
    img = _image(4, shape)
    img[0, 0] = 0.0
    img[-1, -1] = 1.0
    changed = 0
    for seed in range(20):
        out = random_illumination(img, np.random.default_rng(seed), strength=1.5)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
        changed += int(np.abs(out - img).mean() > 0.01)
    assert changed >= 15


def test_same_seed_same_output_other_seed_other_output():
    img = _image(5)
    a = random_illumination(img, np.random.default_rng(7))
    b = random_illumination(img, np.random.default_rng(7))
    c = random_illumination(img, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_generator_advances_the_same_way_at_every_strength():
    img = _image(6)
    rngs = [np.random.default_rng(11) for _ in range(3)]
    for rng, s in zip(rngs, (0.0, 0.5, 1.0)):
        random_illumination(img, rng, strength=s)
    draws = [rng.random() for rng in rngs]
    assert draws[0] == draws[1] == draws[2]


def test_shading_field_matches_a_pixel_loop():
    h, w, direction, slope, spot, center = 5, 7, 0.7, 0.9, 0.4, (0.2, -0.1)
    field = shading_field((h, w), direction=direction, slope=slope, spot=spot, center=center)
    half = 0.5 * math.hypot(h - 1, w - 1)
    for i in range(h):
        for j in range(w):
            x, y = (j - (w - 1) / 2) / half, (i - (h - 1) / 2) / half
            t = x * math.cos(direction) + y * math.sin(direction)
            want = math.exp(slope * t - spot * ((x - center[0]) ** 2 + (y - center[1]) ** 2))
            assert field[i, j] == pytest.approx(want, rel=1e-5)


def test_light_direction_alone_is_a_log_linear_ramp_in_linear_light():
    """Only the shading change: log(out^2.2 / in^2.2) is a plane of slope ``slope / half-diagonal``."""
    ranges = IlluminationRanges(
        slope=(0.8, 0.8), spot=(0.0, 0.0), exposure=(0.0, 0.0), p_night=0.0,
        tone_mix=(0.0, 0.0), gamma=(ENCODING_GAMMA, ENCODING_GAMMA), p_shadow=0.0,
        p_local_contrast=0.0,
    )  # fmt: skip
    h, w = 30, 40
    img = np.full((h, w), 0.3, dtype=np.float32)
    out = random_illumination(img, np.random.default_rng(2), ranges)
    log_gain = ENCODING_GAMMA * (np.log(out) - np.log(img))
    yy, xx = np.mgrid[0:h, 0:w]
    design = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)], axis=1)
    coef, *_ = np.linalg.lstsq(design, log_gain.ravel(), rcond=None)
    assert np.abs(design @ coef - log_gain.ravel()).max() < 1e-3  # a plane
    half = 0.5 * math.hypot(h - 1, w - 1)
    assert math.hypot(coef[0], coef[1]) == pytest.approx(0.8 / half, rel=1e-3)


def test_cast_shadow_matches_point_in_polygon():
    polygon = np.array([[3.0, 2.0], [25.0, 5.0], [18.0, 27.0], [5.0, 20.0]])
    mask = cast_shadow((30, 30), polygon, darkness=0.6)
    yy, xx = np.mgrid[0:30, 0:30]
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    path = MplPath(polygon)
    inside = path.contains_points(pts, radius=-1.0).reshape(30, 30)  # well inside
    outside = ~path.contains_points(pts, radius=1.0).reshape(30, 30)  # well outside
    assert np.allclose(mask[inside], 0.4) and np.allclose(mask[outside], 1.0)
    assert inside.sum() > 100 and outside.sum() > 100


def test_soft_shadow_keeps_its_mean_darkness():
    polygon = np.array([[10.0, 10.0], [50.0, 10.0], [50.0, 50.0], [10.0, 50.0]])
    hard = cast_shadow((60, 60), polygon, darkness=0.5)
    soft = cast_shadow((60, 60), polygon, darkness=0.5, softness=3.0)
    assert hard[30, 10] == 0.5 and hard[30, 9] == 1.0
    assert 0.5 < soft[30, 10] < soft[30, 9] < 1.0  # a penumbra across the edge
    assert abs(soft.mean() - hard.mean()) < 0.01


def test_tone_curve_by_hand():
    x = np.array([0.0, 0.25, 1.0, 4.0], dtype=np.float32)
    out = tone_curve(x, shoulder=0.5, mix=0.5, gamma=2.0)
    for xi, yi in zip(x, out):
        y = min(0.5 * xi + 0.5 * xi * 1.5 / (xi + 0.5), 1.0)
        assert yi == pytest.approx(math.sqrt(y), abs=1e-6)


def test_local_contrast_is_opencv_clahe_blended():
    img = _image(9, (64, 64)) * 0.4 + 0.3
    u8 = (img * 255 + 0.5).astype(np.uint8)
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(u8) / 255.0
    full = local_contrast(img, clip=3.0, tiles=4, mix=1.0)
    half = local_contrast(img, clip=3.0, tiles=4, mix=0.5)
    assert np.allclose(full, clahe, atol=1e-6)
    assert np.allclose(half, 0.5 * img + 0.5 * clahe, atol=1e-6)
    assert full.std() > img.std()


def test_night_views_are_darker():
    img = _image(10)
    night = IlluminationRanges(p_night=1.0, p_shadow=0.0, p_local_contrast=0.0)
    day = IlluminationRanges(p_night=0.0, exposure=(0.0, 0.0), p_shadow=0.0, p_local_contrast=0.0)
    dark = [random_illumination(img, np.random.default_rng(s), night).mean() for s in range(5)]
    light = [random_illumination(img, np.random.default_rng(s), day).mean() for s in range(5)]
    assert max(dark) < min(light)


@pytest.mark.parametrize(
    ("image", "kwargs", "error"),
    [
        (np.zeros(5, np.float32), {}, ShapeError),
        (np.zeros((0, 4), np.float32), {}, ShapeError),
        (np.zeros((4, 4), np.uint8), {}, OptionError),
        (np.full((4, 4), np.nan, np.float32), {}, ValueRangeError),
        (np.zeros((4, 4), np.float32), {"strength": -1.0}, OptionError),
        (np.zeros((4, 4), np.float32), {"ranges": {"p_shadow": 2.0}}, OptionError),
        (np.zeros((4, 4), np.float32), {"ranges": {"shadow_darkness": (0.5, 1.5)}}, OptionError),
        (np.zeros((4, 4), np.float32), {"ranges": {"no_such": 1}}, OptionError),
    ],
)
def test_bad_input_raises(image, kwargs, error):
    with pytest.raises(error):
        random_illumination(image, np.random.default_rng(0), **kwargs)


def test_rng_must_be_a_generator():
    with pytest.raises(LookalikeError, match="Generator"):
        random_illumination(np.zeros((4, 4), np.float32), 0)  # type: ignore[arg-type]
