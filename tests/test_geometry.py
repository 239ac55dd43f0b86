"""lookalike.geometry: against OpenCV (perspectiveTransform, warpPerspective), finite differences, hand cases."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from lookalike.core.errors import OptionError, ShapeError
from lookalike.geometry import (
    WarpRanges,
    homography_jacobian,
    image_corners,
    map_lafs,
    project_points,
    random_homography,
    warp_image,
)


def _homography(seed: int = 1, size=(200, 240)) -> np.ndarray:
    return random_homography(np.random.default_rng(seed), size)


# ---------------------------------------------------------------- random homographies
def test_identity_ranges_give_identity():
    H = random_homography(np.random.default_rng(0), (50, 80), WarpRanges.identity())
    np.testing.assert_allclose(H, np.eye(3), atol=1e-12)


def test_homography_is_seeded_and_keeps_the_centre_near():
    size = (300, 400)
    a = random_homography(np.random.default_rng(5), size)
    b = random_homography(np.random.default_rng(5), size)
    c = random_homography(np.random.default_rng(6), size)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    centre = np.array([[(400 - 1) / 2, (300 - 1) / 2]])
    moved = project_points(a, centre)[0] - centre[0]
    assert abs(moved[0]) <= 0.1 * 400 + 1e-9 and abs(moved[1]) <= 0.1 * 300 + 1e-9


def test_rotation_range_is_in_radians():
    quarter = (math.pi / 2, math.pi / 2)
    ranges = WarpRanges(quarter, (1, 1), (1, 1), (0, 0), (0, 0), (0, 0))
    H = random_homography(np.random.default_rng(0), (101, 101), ranges)
    # a point right of the centre goes below it (y down): a quarter turn
    np.testing.assert_allclose(project_points(H, [[60.0, 50.0]])[0], [50.0, 60.0], atol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": (0.0, 1.0)},
        {"rotation": (1.0, -1.0)},
        {"perspective": (-1.0, 1.0)},
        {"shear": (0, "x")},
    ],
)
def test_bad_warp_ranges(kwargs):
    with pytest.raises(OptionError):
        WarpRanges(**kwargs)


def test_coerce_and_bad_arguments():
    r = WarpRanges.coerce({"rotation": [-0.5, 0.5]})
    assert r.rotation == (-0.5, 0.5) and r.scale == WarpRanges().scale
    with pytest.raises(OptionError, match="unknown keys"):
        WarpRanges.coerce({"zoom": (1, 2)})
    with pytest.raises(OptionError):
        random_homography(0, (10, 10))  # not a Generator
    with pytest.raises(OptionError):
        random_homography(np.random.default_rng(0), (10, -1))


# ---------------------------------------------------------------- projection
def test_project_points_matches_opencv():
    H = _homography(2)
    pts = np.random.default_rng(3).uniform(0, 240, (50, 2))
    expected = cv2.perspectiveTransform(pts[None], H)[0]
    np.testing.assert_allclose(project_points(H, pts), expected, rtol=1e-10, atol=1e-9)


def test_homography_sign_does_not_matter_and_behind_camera_is_nan():
    H = _homography(3)
    pts = np.array([[10.0, 20.0], [50.0, 70.0]])
    np.testing.assert_allclose(project_points(-H, pts), project_points(H, pts))
    np.testing.assert_allclose(homography_jacobian(-2 * H, pts), homography_jacobian(H, pts))
    H_inf = np.array([[1.0, 0, 0], [0, 1, 0], [1.0, 0, 1.0]])  # w = x + 1
    out = project_points(H_inf, [[0.0, 5.0], [-1.0, 5.0], [-3.0, 5.0]])
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()


def test_bad_shapes():
    with pytest.raises(ShapeError):
        project_points(np.eye(2), [[0.0, 0.0]])
    with pytest.raises(ShapeError):
        project_points(np.eye(3), [0.0, 0.0])
    with pytest.raises(ShapeError):
        map_lafs(np.eye(3), np.zeros((2, 3)))
    with pytest.raises(OptionError):
        map_lafs(np.eye(3), np.zeros((1, 2, 3)), mode="projective")


def test_image_corners():
    assert image_corners((3, 5)).tolist() == [[0, 0], [4, 0], [0, 2], [4, 2]]


# ---------------------------------------------------------------- local affine maps
def test_jacobian_matches_finite_differences():
    H = _homography(1)
    pts = np.random.default_rng(2).uniform(20, 180, (10, 2))
    jac = homography_jacobian(H, pts)
    eps = 1e-4
    for axis in range(2):
        step = np.zeros(2)
        step[axis] = eps
        fd = (project_points(H, pts + step) - project_points(H, pts - step)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, axis], fd, rtol=1e-6, atol=1e-8)


def test_map_lafs_is_first_order_exact():
    """Points c + A u of a small source LAF map to c' + A' u up to O(|A u|^2)."""
    H = _homography(4)
    rng = np.random.default_rng(5)
    centres = rng.uniform(40, 160, (6, 2))
    units = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [0.6, -0.8]])
    errors = []
    for half in (2.0, 1.0, 0.5):
        A = half * np.array([[1.0, 0.3], [-0.2, 0.9]])
        lafs = np.concatenate([np.repeat(A[None], 6, 0), centres[:, :, None]], axis=2)
        mapped = map_lafs(H, lafs)
        pts = centres[:, None] + np.einsum("ij,kj->ki", A, units)[None]
        truth = project_points(H, pts.reshape(-1, 2)).reshape(6, -1, 2)
        approx = mapped[:, None, :, 2] + np.einsum("nij,kj->nki", mapped[:, :, :2], units)
        errors.append(np.abs(truth - approx).max())
    assert errors[0] < 0.05
    # halving the frame quarters the error: second order
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3


def test_map_lafs_affine_and_similarity():
    A = np.array([[2.0, 0.5, 3.0], [0.1, 1.5, -1.0], [0.0, 0.0, 1.0]])  # an affine homography
    lafs = np.array([[[4.0, 0.0, 10.0], [0.0, 4.0, 20.0]]])
    out = map_lafs(A, lafs)
    np.testing.assert_allclose(out[0, :, :2], A[:2, :2] @ lafs[0, :, :2])
    np.testing.assert_allclose(out[0, :, 2], A[:2, :2] @ [10.0, 20.0] + A[:2, 2])
    sim = map_lafs(A, lafs, mode="similarity")[0, :, :2]
    np.testing.assert_allclose(sim.T @ sim, np.eye(2) * abs(np.linalg.det(sim)), atol=1e-9)
    assert abs(np.linalg.det(sim)) == pytest.approx(abs(np.linalg.det(out[0, :, :2])))


# ---------------------------------------------------------------- warps
def test_warp_image_matches_opencv_and_keeps_dtype():
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    H = random_homography(np.random.default_rng(1), (60, 80))
    expected = cv2.warpPerspective(rgb, H, (80, 60), flags=cv2.INTER_LINEAR)
    got = warp_image(rgb, H)
    assert got.dtype == np.uint8 and got.shape == rgb.shape
    np.testing.assert_array_equal(got, expected)
    assert warp_image(rgb[:, :, 0].astype(np.float32), H, (30, 40)).shape == (30, 40)


def test_warp_image_samples_the_source_at_the_inverse_map():
    """Independent oracle: output pixel y shows the source at H^-1 y (bilinear, numpy)."""
    img = np.random.default_rng(2).random((50, 70)).astype(np.float32)
    H = random_homography(np.random.default_rng(3), (50, 70), WarpRanges(scale=(0.9, 1.1)))
    out = warp_image(img, H)
    ys, xs = np.mgrid[5:45, 5:65]
    src = project_points(np.linalg.inv(H), np.stack([xs.ravel(), ys.ravel()], 1).astype(float))
    x, y = src[:, 0], src[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= 68) & (y <= 48)
    x0, y0 = np.floor(x[inside]).astype(int), np.floor(y[inside]).astype(int)
    fx, fy = x[inside] - x0, y[inside] - y0
    expected = (
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x0 + 1] * fx * (1 - fy)
        + img[y0 + 1, x0] * (1 - fx) * fy
        + img[y0 + 1, x0 + 1] * fx * fy
    )
    got = out[ys.ravel()[inside], xs.ravel()[inside]]
    assert inside.sum() > 1000
    np.testing.assert_allclose(got, expected, atol=2e-2)  # OpenCV's 5-bit sub-pixel weights


def test_warp_image_identity_and_bad_input():
    img = np.random.default_rng(0).random((30, 40), dtype=np.float32)
    np.testing.assert_allclose(warp_image(img, np.eye(3)), img, atol=1e-6)
    with pytest.raises(ShapeError):
        warp_image(np.zeros(5), np.eye(3))
