"""Random homographies, their local affine maps and photometric changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.core.errors import OptionError
from lookalike.data.synth import (
    PhotometricRanges,
    WarpRanges,
    homography_jacobian,
    lafs_inside,
    map_lafs,
    project_points,
    random_homography,
    random_photometric,
    warp_image,
)


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
    ranges = WarpRanges(
        rotation=(math.pi / 2, math.pi / 2),
        scale=(1, 1),
        anisotropy=(1, 1),
        shear=(0, 0),
        perspective=(0, 0),
        translation=(0, 0),
    )
    H = random_homography(np.random.default_rng(0), (101, 101), ranges)
    # a point right of the centre goes below it (y down): a quarter turn
    out = project_points(H, np.array([[60.0, 50.0]]))[0]
    np.testing.assert_allclose(out, [50.0, 60.0], atol=1e-9)


def test_jacobian_matches_finite_differences():
    H = random_homography(np.random.default_rng(1), (200, 200))
    pts = np.random.default_rng(2).uniform(20, 180, (10, 2))
    jac = homography_jacobian(H, pts)
    eps = 1e-4
    for axis in range(2):
        step = np.zeros(2)
        step[axis] = eps
        fd = (project_points(H, pts + step) - project_points(H, pts - step)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, axis], fd, rtol=1e-6, atol=1e-8)


def test_homography_sign_does_not_matter():
    H = random_homography(np.random.default_rng(3), (100, 100))
    pts = np.array([[10.0, 20.0], [50.0, 70.0]])
    np.testing.assert_allclose(project_points(-H, pts), project_points(H, pts))
    np.testing.assert_allclose(homography_jacobian(-2 * H, pts), homography_jacobian(H, pts))


def test_map_lafs_affine_and_similarity():
    A = np.array([[2.0, 0.5, 3.0], [0.1, 1.5, -1.0], [0.0, 0.0, 1.0]])  # an affine homography
    lafs = np.array([[[4.0, 0.0, 10.0], [0.0, 4.0, 20.0]]])
    out = map_lafs(A, lafs)
    np.testing.assert_allclose(out[0, :, :2], A[:2, :2] @ lafs[0, :, :2])
    np.testing.assert_allclose(out[0, :, 2], A[:2, :2] @ [10.0, 20.0] + A[:2, 2])
    sim = map_lafs(A, lafs, mode="similarity")[0, :, :2]
    np.testing.assert_allclose(sim.T @ sim, np.eye(2) * abs(np.linalg.det(sim)), atol=1e-9)
    assert abs(np.linalg.det(sim)) == pytest.approx(abs(np.linalg.det(out[0, :, :2])))
    with pytest.raises(OptionError):
        map_lafs(A, lafs, mode="projective")


def test_lafs_inside():
    lafs = np.array(
        [
            [[5.0, 0.0, 10.0], [0.0, 5.0, 10.0]],  # square 5..15: inside a 20 x 20 image
            [[5.0, 0.0, 3.0], [0.0, 5.0, 10.0]],  # crosses x = 0
            [[3.0, 3.0, 10.0], [-3.0, 3.0, 10.0]],  # rotated square: half-extent 6
            [[np.nan, 0.0, 10.0], [0.0, 5.0, 10.0]],
        ]
    )
    np.testing.assert_array_equal(lafs_inside(lafs, (20, 20)), [True, False, True, False])
    np.testing.assert_array_equal(lafs_inside(lafs, (20, 20), border=4.5), [False] * 4)


def test_warp_image_identity():
    img = np.random.default_rng(0).random((30, 40), dtype=np.float32)
    np.testing.assert_allclose(warp_image(img, np.eye(3)), img, atol=1e-6)


def test_photometric_identity_and_range():
    img = np.random.default_rng(0).random((32, 48), dtype=np.float32)
    np.testing.assert_allclose(
        random_photometric(img, np.random.default_rng(1), PhotometricRanges.identity()), img
    )
    ranges = PhotometricRanges(p_blur=1.0, p_jpeg=1.0)
    a = random_photometric(img, np.random.default_rng(7), ranges)
    b = random_photometric(img, np.random.default_rng(7), ranges)
    assert a.dtype == np.float32 and a.shape == img.shape
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, img, atol=1e-3)


def test_photometric_gamma_exact():
    img = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    ranges = PhotometricRanges(
        gamma=(2.0, 2.0), contrast=(1, 1), brightness=(0, 0), noise=(0, 0), p_blur=0.0, p_jpeg=0.0
    )
    out = random_photometric(img, np.random.default_rng(0), ranges)
    np.testing.assert_allclose(out, (np.round(img * 255) / 255) ** 2, atol=1e-6)


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


@pytest.mark.parametrize("kwargs", [{"jpeg": (10, 120)}, {"p_blur": 1.5}, {"gamma": (0.0, 1.0)}])
def test_bad_photometric_ranges(kwargs):
    with pytest.raises(OptionError):
        PhotometricRanges(**kwargs)


def test_coerce_from_mapping():
    r = WarpRanges.coerce({"rotation": [-0.5, 0.5]})
    assert r.rotation == (-0.5, 0.5) and r.scale == WarpRanges().scale
    assert PhotometricRanges.coerce(None) == PhotometricRanges()
    with pytest.raises(OptionError, match="unknown keys"):
        WarpRanges.coerce({"zoom": (1, 2)})
