"""View synthesis (ASIFT/MODS style) and affine keypoint regions."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from lookalike.core.errors import OptionError
from lookalike.matching.keypoints import Keypoints, detect_keypoints
from lookalike.matching.laf import keypoints_to_laf
from lookalike.matching.patches import _sampling_scale, extract_patches
from lookalike.matching.pipeline import ImageMatcher
from lookalike.matching.views import _map_back, affine_views, check_tilts, warp_view


def test_tilts_and_views():
    assert check_tilts("asift") == (1.0, 2.0, 4.0) and check_tilts(None) is None
    assert check_tilts([4, 1, 2, 2]) == (1.0, 2.0, 4.0)
    assert len(affine_views(check_tilts("asift"))) == 1 + 5 + 10  # ASIFT: 72 / t degrees apart
    for bad in ["nope", [0.5], [], [float("nan")], [object()]]:
        with pytest.raises(OptionError, match="views"):
            check_tilts(bad)


def test_affine_keypoint_laf_is_shape_times_rotation():
    shape = np.array([[[2.0, 0.5], [0.0, 0.5]]], np.float32)  # unit determinant
    kps = Keypoints.from_arrays([[10.0, 20.0]], size=[4.0], angle=[90.0])
    kps = Keypoints(kps.xy, kps.size, kps.angle, kps.response, kps.octave, (64, 64), shape)
    laf = keypoints_to_laf(kps, extent=1.0, dtype=torch.float64)[0, 0]
    # angle 90 clockwise: kornia orientation -90, A = s * [[cos, sin], [-sin, cos]] = 2 [[0, -1], [1, 0]]
    expected = (
        2.0
        * torch.tensor(shape[0], dtype=torch.float64)
        @ torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(laf[:, :2], expected)
    assert laf[:, 2].tolist() == [10.0, 20.0]
    both = Keypoints.concat([kps, Keypoints.from_arrays([[1.0, 1.0]])], (64, 64))
    assert both.affine.shape == (2, 2, 2) and np.array_equal(both.affine[1], np.eye(2))
    assert np.array_equal(both.subset([0]).affine, shape)


def test_sampling_scale_is_the_longest_axis():
    s = torch.tensor(3.0)
    similarity = s * torch.tensor([[math.cos(0.3), math.sin(0.3)], [-math.sin(0.3), math.cos(0.3)]])
    assert float(_sampling_scale(similarity)) == pytest.approx(3.0, abs=1e-6)
    assert float(_sampling_scale(torch.diag(torch.tensor([8.0, 2.0])))) == pytest.approx(8.0)


def test_view_map_moves_a_dot_where_the_view_shows_it():
    image = np.zeros((120, 160), np.uint8)
    cv2.circle(image, (40, 90), 3, 255, -1)
    for tilt, rotation in [(1.0, 0.0), (2.0, 36.0), (4.0, 126.0)]:
        view, M = warp_view(image, tilt, rotation)
        y, x = np.unravel_index(np.argmax(cv2.GaussianBlur(view, (0, 0), 2)), view.shape)
        predicted = M[:, :2] @ np.array([40.0, 90.0]) + M[:, 2]
        assert np.abs(predicted - [x, y]).max() <= 1.5, (tilt, rotation)


def test_mapped_back_regions_cut_the_views_patches():
    """A view keypoint's patch, cut from the original image through its affine region, is the patch
    the view itself shows (up to the view's blur and resampling)."""
    from lookalike.data import bundled_photos

    gray = cv2.cvtColor(bundled_photos(["coffee"])[0].rgb, cv2.COLOR_RGB2GRAY)
    view, M = warp_view(gray, 2.0, 72.0)
    kps = detect_keypoints(view, max_keypoints=40)
    back = _map_back(kps, M, gray.shape[:2])
    inside = _map_back(kps, M, (10**6, 10**6))  # the same keypoints, none dropped
    assert len(back) <= len(kps) == len(inside)
    keep = np.flatnonzero(np.isin(inside.xy[:, 0], back.xy[:, 0]))
    from_view = extract_patches(view, keypoints_to_laf(kps.subset(keep), extent=6.0), 32)
    from_image = extract_patches(gray, keypoints_to_laf(back, extent=6.0), 32)
    same = torch.nn.functional.cosine_similarity(
        from_view.flatten(1) - from_view.mean(), from_image.flatten(1) - from_image.mean()
    )
    assert float(same.median()) > 0.9


def _tilted_pair():
    from lookalike.data import bundled_photos

    gray = cv2.cvtColor(bundled_photos(["coffee"])[0].rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    # a strong out-of-plane rotation: compress by 4 along a direction 30 degrees from x
    phi = math.radians(30.0)
    R = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    L = R @ np.diag([0.25, 1.0]) @ R.T
    centre = np.array([w / 2, h / 2])
    H = np.eye(3)
    H[:2, :2], H[:2, 2] = L, centre - L @ centre
    return gray, cv2.warpPerspective(gray, H, (w, h)), H


def _correct_inliers(result, H, tol=4.0):
    p0, p1 = result.points0[result.inliers], result.points1[result.inliers]
    if len(p0) == 0:
        return 0
    mapped = cv2.perspectiveTransform(p0.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)
    return int((np.linalg.norm(mapped - p1, axis=1) <= tol).sum())


def test_views_match_a_tilt_the_plain_pipeline_cannot():
    gray, tilted, H = _tilted_pair()
    plain = ImageMatcher("sift", max_keypoints=300)(gray, tilted)
    views = ImageMatcher("sift", max_keypoints=300, views=(1, 4))(gray, tilted)
    assert _correct_inliers(views, H) >= 3 * max(_correct_inliers(plain, H), 10)


def test_views_need_a_patch_describer():
    with pytest.raises(OptionError, match="views"):
        ImageMatcher("opencv-sift", views="asift")
    with pytest.raises(OptionError, match="views"):
        ImageMatcher("sift", views=[0.3])
