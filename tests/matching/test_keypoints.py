"""Keypoint detection: OpenCV conventions kept, budget, upright mode, other detectors, degenerate images."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.core.errors import OptionError, ShapeError
from lookalike.data import bundled_photos
from lookalike.matching.keypoints import Keypoints, available_detectors, detect_keypoints


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return bundled_photos(["camera"])[0].rgb


def test_dog_equals_opencv_sift_detector(camera):
    import cv2

    gray = cv2.cvtColor(camera, cv2.COLOR_RGB2GRAY)
    ref = sorted(cv2.SIFT_create().detect(gray, None), key=lambda k: -k.response)
    kps = detect_keypoints(camera, max_keypoints=None)
    assert len(kps) == len(ref)
    np.testing.assert_allclose(np.sort(kps.response)[::-1], [k.response for k in ref], rtol=1e-6)
    # the strongest keypoint with OpenCV's own position, diameter and clockwise angle
    best = ref[0]
    i = int(np.argmax(kps.response))
    np.testing.assert_allclose(kps.xy[i], best.pt, atol=1e-4)
    assert kps.size[i] == pytest.approx(best.size) and kps.angle[i] == pytest.approx(best.angle)
    assert kps.image_size == gray.shape


def test_budget_keeps_strongest(camera):
    all_kps = detect_keypoints(camera, max_keypoints=None)
    some = detect_keypoints(camera, max_keypoints=100)
    assert len(some) == 100
    assert np.all(np.diff(some.response) <= 0)
    assert some.response.min() >= np.sort(all_kps.response)[::-1][99] - 1e-9


def test_upright_removes_orientation_duplicates(camera):
    kps = detect_keypoints(camera, max_keypoints=None)
    up = detect_keypoints(camera, max_keypoints=None, upright=True)
    assert np.all(up.angle == 0)
    assert len(up) < len(kps)  # SIFT duplicates blobs with several orientations
    key = np.concatenate([up.xy, up.size[:, None]], axis=1)
    assert len(np.unique(key, axis=0)) == len(up)


@pytest.mark.parametrize("method", ["harris-laplace", "hessian"])
def test_other_detectors(method, camera):
    if method not in available_detectors():
        pytest.skip(f"{method} not available")
    small = camera[:256, :256]
    kps = detect_keypoints(small, method=method, max_keypoints=200)
    assert 0 < len(kps) <= 200
    assert np.all(kps.size > 0) and np.all((kps.angle >= 0) & (kps.angle < 360))
    assert np.any(kps.angle != 0)
    up = detect_keypoints(small, method=method, max_keypoints=200, upright=True)
    assert np.all(up.angle == 0)


def test_hessian_orientation_follows_a_rotation(camera):
    """Rotating the image by 90 degrees clockwise adds 90 to the estimated (clockwise) angle."""
    gray = camera[128:384, 128:384, 0]
    kps = detect_keypoints(gray, method="hessian", max_keypoints=30)
    rot = np.ascontiguousarray(np.rot90(gray, k=-1))  # clockwise on screen
    kr = detect_keypoints(rot, method="hessian", max_keypoints=60)
    # (x, y) -> (H - 1 - y, x) for a clockwise quarter turn
    mapped = np.stack([gray.shape[0] - 1 - kps.xy[:, 1], kps.xy[:, 0]], axis=1)
    d = np.linalg.norm(mapped[:, None] - kr.xy[None], axis=2)
    i, j = np.nonzero(d < 0.5)
    assert len(i) >= 10
    diff = np.mod(kr.angle[j] - kps.angle[i] - 90 + 180, 360) - 180
    assert np.median(np.abs(diff)) < 5


@pytest.mark.parametrize(
    "image",
    [np.zeros((1, 1), np.uint8), np.zeros((5, 300), np.uint8), np.full((64, 64), 77, np.uint8)],
    ids=["1x1", "thin", "flat"],
)
def test_degenerate_images_give_no_keypoints(image):
    kps = detect_keypoints(image)
    assert len(kps) == 0 and kps.xy.shape == (0, 2)


def test_sixteen_bit_and_rgba_inputs(camera):
    gray16 = camera[..., 0].astype(np.uint16) * 257
    rgba = np.dstack([camera, np.full(camera.shape[:2], 255, np.uint8)])
    a = detect_keypoints(camera[..., 0], max_keypoints=50)
    b = detect_keypoints(gray16, max_keypoints=50)
    c = detect_keypoints(rgba, max_keypoints=50)
    np.testing.assert_allclose(a.xy, b.xy)
    assert len(c) == 50


def test_bad_options(camera):
    with pytest.raises(OptionError):
        detect_keypoints(camera, method="fast")
    with pytest.raises(OptionError):
        detect_keypoints(camera, max_keypoints=0)


def test_keypoints_container():
    kps = Keypoints.from_arrays([[1, 2], [3, 4]], size=[2, 3], angle=[-90, 370])
    assert kps.angle.tolist() == [270.0, 10.0]
    cv = kps.to_cv()
    assert [k.class_id for k in cv] == [0, 1] and cv[1].pt == (3.0, 4.0)
    back = Keypoints.from_cv(cv, (10, 10))
    np.testing.assert_allclose(back.size, kps.size)
    assert len(kps.subset([1])) == 1 and len(Keypoints.empty()) == 0
    with pytest.raises(ShapeError):
        Keypoints.from_arrays([[1, 2]], size=[1, 2])


def test_unknown_dog_option_is_an_error_naming_the_valid_ones():
    image = np.zeros((64, 64), np.uint8)
    image[20:40, 20:40] = 255
    with pytest.raises(OptionError, match=r"contrast_threshold.*edge_threshold.*sigma") as info:
        detect_keypoints(image, contrast_treshold=0.01)  # typo: silently ignored before
    assert "contrast_treshold" in str(info.value)
    with pytest.raises(OptionError, match="mr_size"):
        detect_keypoints(image, method="hessian", mr_sise=6.0)
    # the valid ones still work and change the result (a lower threshold finds more blobs)
    few = detect_keypoints(image, contrast_threshold=0.2, max_keypoints=None)
    many = detect_keypoints(image, contrast_threshold=0.001, max_keypoints=None)
    assert len(many) >= len(few)
