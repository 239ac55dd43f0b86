"""Keypoint -> LAF -> patch conventions, checked against OpenCV's angle sign and kornia's samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.errors import ShapeError
from lookalike.matching.keypoints import Keypoints
from lookalike.matching.patches import (
    SIFT_EXTENT,
    extract_patches,
    image_to_tensor,
    keypoints_to_laf,
    laf_to_keypoints,
    pyramid_levels,
)


def _kps(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return Keypoints.from_arrays(
        rng.uniform(20, 100, (n, 2)),
        size=rng.uniform(2, 12, n),
        angle=rng.uniform(0, 360, n),
        response=rng.uniform(0, 1, n),
        image_size=(120, 130),
    )


def test_laf_scale_and_orientation_follow_opencv_and_kornia():
    import kornia.feature as KF

    kps = _kps()
    lafs = keypoints_to_laf(kps, extent=SIFT_EXTENT, dtype=torch.float64)
    scale = KF.get_laf_scale(lafs).view(-1).numpy()
    np.testing.assert_allclose(scale, SIFT_EXTENT * kps.size / 2, rtol=1e-6)
    ori = KF.get_laf_orientation(lafs).view(-1).numpy()
    # kornia counts counter-clockwise, OpenCV clockwise: ori = -angle (mod 360)
    np.testing.assert_allclose(np.mod(ori + kps.angle + 180, 360) - 180, 0, atol=1e-6)
    expected = KF.laf_from_center_scale_ori(
        torch.from_numpy(kps.xy[None]).double(),
        torch.from_numpy(SIFT_EXTENT * kps.size / 2).double().view(1, -1, 1, 1),
        torch.from_numpy(-kps.angle).double().view(1, -1, 1),
    )
    torch.testing.assert_close(lafs, expected)


def test_laf_roundtrip():
    kps = _kps()
    back = laf_to_keypoints(keypoints_to_laf(kps, extent=4.0), extent=4.0)
    np.testing.assert_allclose(back.xy, kps.xy, atol=1e-4)
    np.testing.assert_allclose(back.size, kps.size, rtol=1e-5)
    np.testing.assert_allclose(np.mod(back.angle - kps.angle + 180, 360) - 180, 0, atol=1e-3)


def test_opencv_angle_turns_patch_x_axis_clockwise_on_screen():
    """A bright bar along the keypoint's direction appears along the patch's +x axis."""
    image = np.zeros((101, 101), np.float32)
    angle = 30.0  # clockwise on screen, as OpenCV
    t = np.linspace(0, 40, 400)
    xs = 50 + t * np.cos(np.deg2rad(angle))
    ys = 50 + t * np.sin(np.deg2rad(angle))  # y down: positive angle goes down-right
    image[np.round(ys).astype(int), np.round(xs).astype(int)] = 1.0
    kps = Keypoints.from_arrays([[50.0, 50.0]], size=[16.0], angle=[angle])
    patch = extract_patches(
        torch.from_numpy(image)[None, None], keypoints_to_laf(kps, extent=5.0), 21
    )
    row = patch[0, 0, 10]  # the middle row runs along the patch x axis
    assert row[11:].mean() > 0.3 and row[:9].mean() < 0.05


def test_matches_kornia_extract_patches_simple_without_pyramid(dtype):
    import kornia.feature as KF

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 60, 70, generator=g, dtype=dtype)
    lafs = keypoints_to_laf(_kps(8), extent=2.0, dtype=dtype)
    ours = extract_patches(image, lafs, 16, pyramid=False)
    ref = KF.extract_patches_simple(image, lafs, PS=16).view(-1, 1, 16, 16)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_matches_kornia_pyramid_level_choice():
    import kornia.feature as KF

    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 1, 256, 256, generator=g)
    # half-widths 10 (level 0), 40 (level 1) and 70 (level 2) for 32-pixel patches
    kps = Keypoints.from_arrays([[100, 100], [128, 120], [140, 128]], size=[10.0, 40.0, 70.0])
    lafs = keypoints_to_laf(kps, extent=2.0)
    ours = extract_patches(image, lafs, 32)
    ref = KF.extract_patches_from_pyramid(image, lafs, PS=32).view(-1, 1, 32, 32)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 257, 190), (2, 3, 33, 20)])
def test_pyramid_levels_equal_kornia_pyrdown(dtype, shape):
    from kornia.geometry.transform import pyrdown

    image = torch.rand(*shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    levels = pyramid_levels(image, 3)
    expected = [image]
    while len(expected) < 3 and min(expected[-1].shape[-2:]) // 2 >= 16:
        expected.append(pyrdown(expected[-1]))
    assert [lv.shape for lv in levels] == [e.shape for e in expected]
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for ours, ref in zip(levels, expected):
        torch.testing.assert_close(ours, ref, rtol=0, atol=tol)


def test_two_images_many_levels_equal_kornia_per_image():
    """Grouping LAFs by (image, level) returns every patch in its input order."""
    import kornia.feature as KF

    g = torch.Generator().manual_seed(4)
    image = torch.rand(2, 1, 200, 220, generator=g)
    centres = torch.rand(2, 40, 2, generator=g) * 150 + 25
    sizes = torch.rand(2, 40, generator=g) * 60 + 2  # levels 0 to 2 for 32-pixel patches
    lafs = torch.cat([torch.diag_embed(torch.stack([sizes, sizes], -1)), centres[..., None]], -1)
    lafs[1, 7, 0, 2] = float("inf")  # a non-finite LAF: zero patch, the rest unaffected
    ours = extract_patches(image, lafs, 32).view(2, 40, 1, 32, 32)
    for b in range(2):
        keep = torch.isfinite(lafs[b]).flatten(1).all(1)
        ref = KF.extract_patches_from_pyramid(image[b : b + 1], lafs[b : b + 1, keep], PS=32)
        torch.testing.assert_close(ours[b, keep], ref[0], rtol=1e-4, atol=1e-4)
    assert torch.all(ours[1, 7] == 0)


def test_pyramid_reduces_aliasing():
    """A fine checkerboard sampled by a large patch averages to grey only with the pyramid."""
    yy, xx = np.mgrid[0:256, 0:256]
    image = torch.from_numpy(((xx + yy) % 2).astype(np.float32))[None, None]
    # a sampling step of 7.3 pixels: without the pyramid the samples hit the squares in moire
    lafs = keypoints_to_laf(Keypoints.from_arrays([[128.3, 127.6]], size=[58.4]), extent=2.0)
    with_pyr = extract_patches(image, lafs, 16)
    without = extract_patches(image, lafs, 16, pyramid=False)
    assert with_pyr.std() < 0.1 < without.std()
    assert abs(float(with_pyr.mean()) - 0.5) < 0.05


def test_batch_and_channels():
    image = torch.rand(2, 3, 40, 50)
    lafs = keypoints_to_laf(_kps(4), extent=1.0).repeat(2, 1, 1, 1)
    assert extract_patches(image, lafs, 8).shape == (8, 3, 8, 8)


def test_empty_and_non_finite_lafs():
    image = torch.rand(1, 1, 20, 20)
    assert extract_patches(image, torch.zeros(1, 0, 2, 3), 8).shape == (0, 1, 8, 8)
    lafs = keypoints_to_laf(Keypoints.from_arrays([[5, 5], [9, 9]], size=[4, 4]), extent=1.0)
    lafs[0, 0, 0, 0] = float("nan")
    out = extract_patches(image, lafs, 8)
    assert torch.all(out[0] == 0) and torch.isfinite(out).all() and out[1].abs().sum() > 0


def test_tiny_image_and_numpy_input():
    out = extract_patches(np.full((1, 1), 255, np.uint8), keypoints_to_laf(_kps(2)), 8)
    assert out.shape == (2, 1, 8, 8) and torch.allclose(out, torch.ones_like(out))
    assert image_to_tensor(np.zeros((3, 4), np.uint8)).shape == (1, 1, 3, 4)


def test_bad_shapes():
    with pytest.raises(ShapeError):
        extract_patches(torch.rand(1, 1, 10, 10), torch.zeros(1, 3, 3, 3), 8)
    with pytest.raises(ShapeError):
        extract_patches(torch.rand(2, 1, 10, 10), torch.zeros(1, 3, 2, 3), 8)
