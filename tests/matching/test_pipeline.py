"""match_images end to end on a known warp, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lookalike
from lookalike.core.errors import DataNotFoundError, LookalikeError, OptionError
from lookalike.data import bundled_photos
from lookalike.data.images import ImageError, write_image
from lookalike.eval.metrics.matching import corner_error
from lookalike.geometry import warp_image
from lookalike.matching.pipeline import (
    DEFAULT_DESCRIPTOR,
    ImageMatcher,
    MatchResult,
    best_shipped_descriptor,
    match_images,
)

H_TRUE = np.array([[0.95, 0.12, 10.0], [-0.1, 0.98, 25.0], [5e-5, -3e-5, 1.0]])


class TinyDescriptor(nn.Module):
    patch_size = 16
    dim = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.avg_pool2d(x, 4).flatten(1)
        return nn.functional.normalize(out - out.mean(1, keepdim=True), dim=1)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    image = np.ascontiguousarray(bundled_photos(["astronaut"])[0].rgb[::2, ::2])
    return image, warp_image(image, H_TRUE)


@pytest.mark.parametrize("descriptor", ["opencv-sift", "kornia-sift"])
def test_recovers_a_known_homography(pair, descriptor):
    result = match_images(*pair, descriptor=descriptor, max_keypoints=500)
    assert isinstance(result, MatchResult)
    assert result.num_inliers >= 50 and result.model is not None
    assert corner_error(result.model, H_TRUE, pair[0].shape[:2]) < 3.0
    m = result.matches
    assert m.dtype == np.int64 and m.shape[1] == 2
    assert m[:, 0].max() < len(result.keypoints0) and m[:, 1].max() < len(result.keypoints1)
    assert result.distances.shape == (result.num_matches,) and result.inliers.dtype == bool
    assert set(result.timings) == {"detect", "describe", "match", "geometry", "total"}
    summary = result.summary()
    assert summary["matches"] == result.num_matches and len(summary["model"]) == 3


def test_registered_and_module_descriptors(pair):
    result = ImageMatcher(TinyDescriptor(), max_keypoints=300, matcher="mnn")(*pair)
    assert result.num_matches > 0 and result.descriptor == "tinydescriptor"
    if "sift" in lookalike.list_registered("descriptor"):
        assert match_images(*pair, max_keypoints=300).model is not None


def test_binary_descriptor_and_fundamental(pair):
    result = match_images(
        *pair, descriptor="opencv-teblid", geometry="fundamental", max_keypoints=400
    )
    assert result.geometry == "fundamental" and result.model is not None
    assert result.num_inliers > 20


def test_geometry_none_keeps_matches(pair):
    result = match_images(*pair, descriptor="opencv-sift", geometry="none", max_keypoints=200)
    assert result.model is None and result.inliers.all()


def test_default_descriptor_is_documented():
    assert DEFAULT_DESCRIPTOR == "sift"
    assert best_shipped_descriptor() in {DEFAULT_DESCRIPTOR} | {
        s for s in lookalike.list_registered("descriptor") for s in (f"{s}:bundled",)
    }


# ---------------------------------------------------------------- bad input


def _no_match(result: MatchResult) -> None:
    assert result.num_matches == 0 and result.model is None and result.num_inliers == 0
    assert result.matches.shape == (0, 2)


@pytest.mark.parametrize(
    "image",
    [np.zeros((1, 1), np.uint8), np.full((64, 80), 128, np.uint8), np.zeros((3, 500), np.uint8)],
    ids=["1x1", "flat", "thin"],
)
def test_images_without_keypoints_give_zero_matches(pair, image):
    _no_match(match_images(image, pair[0], descriptor="opencv-sift"))
    _no_match(match_images(pair[0], image, descriptor="kornia-sift"))


def test_fewer_than_four_matches_give_no_model():
    canvas = np.zeros((120, 120), np.uint8)
    canvas[40:60, 50:70] = 255  # one square: a handful of keypoints
    result = match_images(canvas, canvas, descriptor="opencv-sift", matcher="mnn", max_keypoints=3)
    assert 0 < result.num_matches < 4
    assert result.model is None and not result.inliers.any()


def test_gray_rgba_and_sixteen_bit_inputs(pair):
    rgb, warped = pair
    gray = rgb[..., 0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    deep = gray.astype(np.uint16) * 257
    results = [
        match_images(x, warped, descriptor="opencv-sift", max_keypoints=300)
        for x in (gray, rgba, deep, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    ]
    assert all(r.model is not None for r in results)


def test_files(tmp_path, pair):
    a = write_image(tmp_path / "a.png", pair[0])
    b = write_image(tmp_path / "b.jpg", pair[1])
    assert match_images(a, str(b), descriptor="opencv-sift", max_keypoints=300).model is not None
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_text("not an image")
    with pytest.raises(ImageError):
        match_images(tmp_path / "empty.png", a, descriptor="opencv-sift")
    with pytest.raises(ImageError):
        match_images(a, tmp_path / "junk.jpg", descriptor="opencv-sift")
    with pytest.raises(DataNotFoundError):
        match_images(tmp_path / "missing.png", a, descriptor="opencv-sift")


def test_bad_options(pair):
    with pytest.raises(OptionError):
        ImageMatcher("opencv-sift", matcher="best")
    with pytest.raises(OptionError):
        ImageMatcher("opencv-sift", detector="fast")
    with pytest.raises(OptionError):
        ImageMatcher("opencv-sift", geometry="affine")
    with pytest.raises(LookalikeError):
        ImageMatcher("nonexistent-descriptor")


# ---------------------------------------------------------------- defects fixed


def _no_build(monkeypatch):
    """Make building a descriptor fail loudly: options must be refused before."""
    import lookalike.matching.pipeline as pipeline

    def fail(*args, **kwargs):
        raise AssertionError("the descriptor was built before the options were checked")

    monkeypatch.setattr(pipeline, "create_describer", fail)


@pytest.mark.parametrize(
    "options",
    [
        {"ransac_method": "lmeds"},
        {"matcher": "best"},
        {"detector": "fast"},
        {"geometry": "affine"},
        {"metric": "hamming"},
        {"ratio_threshold": 0.0},
        {"ratio_threshold": 1.5},
        {"ransac_threshold": -1.0},
        {"ransac_threshold": float("nan")},
        {"max_keypoints": 0},
        {"max_keypoints": 2.5},
        {"max_size": -1},
        {"max_size": 1.5},
        {"detector_options": {"contrast_treshold": 0.01}},
    ],
    ids=lambda o: next(iter(o)),
)
def test_every_option_is_checked_before_the_descriptor_is_built(monkeypatch, options):
    _no_build(monkeypatch)
    with pytest.raises(OptionError):
        ImageMatcher("hardnet:bundled", **options)


def test_shipped_candidates_exist():
    from lookalike._registry import is_shipped
    from lookalike.matching.pipeline import SHIPPED_CANDIDATES

    assert SHIPPED_CANDIDATES and all(is_shipped("descriptor", spec) for spec in SHIPPED_CANDIDATES)
    assert best_shipped_descriptor() == SHIPPED_CANDIDATES[0]
    model = lookalike.create("descriptor", best_shipped_descriptor())  # loads
    assert model.dim > 0


def test_match_images_builds_the_descriptor_once(monkeypatch, pair):
    import lookalike.matching.pipeline as pipeline

    calls = []
    real = pipeline.create_describer

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "create_describer", counting)
    pipeline.clear_matcher_cache()
    small = pair[0][:128, :128]
    for _ in range(3):
        match_images(small, small, "sift", max_keypoints=50)
    assert len(calls) == 1
    match_images(small, small, "sift", max_keypoints=60)  # other options: another pipeline
    assert len(calls) == 2
    for k in range(pipeline.MATCHER_CACHE_SIZE + 1):  # the cache stays small
        match_images(small, small, "opencv-sift", max_keypoints=10 + k)
    assert len(pipeline._MATCHER_CACHE) == pipeline.MATCHER_CACHE_SIZE
    pipeline.clear_matcher_cache()


def test_max_size_maps_keypoints_back_to_original_pixels(pair):
    import cv2

    from lookalike.data.images import to_gray
    from lookalike.matching.keypoints import detect_keypoints

    image = cv2.resize(pair[0], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # 512 x 512
    matcher = ImageMatcher("opencv-sift", max_keypoints=300, max_size=256)
    kps = matcher.detect(image)
    # oracle: detection on the INTER_AREA half-size image, mapped by hand (pixel centres)
    half = cv2.resize(to_gray(image), (256, 256), interpolation=cv2.INTER_AREA)
    ref = detect_keypoints(half, max_keypoints=300)
    np.testing.assert_allclose(kps.xy, (ref.xy + 0.5) * 2 - 0.5, atol=1e-4)
    np.testing.assert_allclose(kps.size, ref.size * 2, rtol=1e-6)
    assert kps.image_size == (512, 512) and kps.xy.max() > 256
    # a small image is untouched by max_size
    full = ImageMatcher("opencv-sift", max_keypoints=300, max_size=None).detect(pair[0])
    same = ImageMatcher("opencv-sift", max_keypoints=300, max_size=256).detect(pair[0])
    np.testing.assert_array_equal(full.xy, same.xy)


@pytest.mark.parametrize("descriptor", ["opencv-sift", "sift"])
def test_max_size_model_is_in_original_pixels(pair, descriptor):
    import cv2

    scale = np.diag([3.0, 3.0, 1.0])
    big = cv2.resize(pair[0], None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 768 x 768
    H_big = scale @ H_TRUE @ np.linalg.inv(scale)
    warped = warp_image(big, H_big)
    result = ImageMatcher(descriptor, max_keypoints=500, max_size=256)(big, warped)
    assert result.model is not None and result.num_inliers >= 30
    assert corner_error(result.model, H_big, big.shape[:2]) < 3 * 3.0
    assert result.keypoints0.image_size == big.shape[:2]
    assert np.abs(result.points1 - result.points0).max() < 800  # positions in 768 px, not 256


@pytest.mark.slow
def test_huge_photo_with_default_max_size():
    """A 6000 x 6000 photo (a bundled one enlarged) with a known homography in its pixels."""
    import cv2

    from lookalike.matching.pipeline import DEFAULT_MAX_SIZE

    photo = bundled_photos(["astronaut"])[0].rgb  # 512 x 512
    big = cv2.resize(photo, (6000, 6000), interpolation=cv2.INTER_CUBIC)
    scale = np.diag([6000 / 512, 6000 / 512, 1.0])
    H_big = scale @ H_TRUE @ np.linalg.inv(scale)
    warped = warp_image(big, H_big)
    matcher = ImageMatcher("opencv-sift")
    assert matcher.max_size == DEFAULT_MAX_SIZE == 2048
    result = matcher(big, warped)
    assert result.model is not None and result.num_inliers >= 50
    assert result.keypoints0.image_size == (6000, 6000)
    assert corner_error(result.model, H_big, big.shape[:2]) < 3.0 * 6000 / 2048


def test_pair_detection_in_two_threads_equals_one_after_the_other(monkeypatch):
    from lookalike.data import stereo_pair
    from lookalike.data.images import to_gray

    left, right, _ = stereo_pair()
    g0, g1 = to_gray(left), to_gray(right)
    matcher = ImageMatcher("sift", max_keypoints=300)
    threaded = matcher._detect_both(g0, g1)
    for ours, alone in zip(threaded, (matcher._detect(g0), matcher._detect(g1))):
        np.testing.assert_array_equal(ours.xy, alone.xy)
        np.testing.assert_array_equal(ours.size, alone.size)

    def failing(gray):  # the helper thread (second image) fails: its error reaches the caller
        if gray is g1:
            raise OptionError("detector failed")
        return threaded[0]

    monkeypatch.setattr(matcher, "_detect", failing)
    with pytest.raises(OptionError, match="detector failed"):
        matcher._detect_both(g0, g1)
