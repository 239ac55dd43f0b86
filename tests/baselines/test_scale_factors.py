"""VGG, BoostDesc and TEBLID get the keypoint scale factor OpenCV's documentation gives per detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lookalike.baselines.opencv import (
    OpenCVDescriptor,
    available_opencv_descriptors,
    scale_factor_for,
)
from lookalike.core.errors import OptionError
from lookalike.data import bundled_photos
from lookalike.matching.keypoints import detect_keypoints
from lookalike.matching.pipeline import ImageMatcher

KINDS = [k for k in ("vgg", "boostdesc", "teblid") if available_opencv_descriptors()[k]]
pytestmark = pytest.mark.skipif(not KINDS, reason="this OpenCV has no xfeatures2d descriptors")

# Typed by hand from the scale_factor paragraphs of OpenCV's VGG_create / BoostDesc_create /
# TEBLID_create documentation: SIFT 6.75; KAZE, SURF 6.25; AKAZE, MSD, AGAST, FAST, BRISK 5.00;
# ORB 0.75 (VGG, BoostDesc) and 1.00 (TEBLID).
DOCUMENTED = {
    ("vgg", "sift"): 6.75, ("vgg", "surf"): 6.25, ("vgg", "kaze"): 6.25,
    ("vgg", "akaze"): 5.0, ("vgg", "brisk"): 5.0, ("vgg", "orb"): 0.75,
    ("boostdesc", "sift"): 6.75, ("boostdesc", "surf"): 6.25, ("boostdesc", "kaze"): 6.25,
    ("boostdesc", "akaze"): 5.0, ("boostdesc", "brisk"): 5.0, ("boostdesc", "orb"): 0.75,
    ("teblid", "sift"): 6.75, ("teblid", "surf"): 6.25, ("teblid", "kaze"): 6.25,
    ("teblid", "akaze"): 5.0, ("teblid", "brisk"): 5.0, ("teblid", "orb"): 1.0,
}  # fmt: skip
# Our detectors: DoG is OpenCV's SIFT detector, the Hessian blob detector is SURF/KAZE-like,
# Harris-Laplace has no documented value and is treated as SIFT-like.
OURS = {"dog": 6.75, "hessian": 6.25, "harris-laplace": 6.75}
MAKE = {
    "vgg": cv2.xfeatures2d.VGG_create,
    "boostdesc": cv2.xfeatures2d.BoostDesc_create,
    "teblid": cv2.xfeatures2d.TEBLID_create,
}


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return (bundled_photos(["camera"])[0].gray_array * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cv_kps(gray):
    return detect_keypoints(gray, max_keypoints=60).to_cv()


def _uses_factor(kind, extractor, factor, gray, cv_kps) -> bool:
    """``extractor`` computes what OpenCV's factory with ``scale_factor=factor`` computes (TEBLID has
    no getScaleFactor: its output is the oracle)."""
    _, ours = extractor.compute(gray, list(cv_kps))
    _, expected = MAKE[kind](scale_factor=factor).compute(gray, list(cv_kps))
    return np.array_equal(ours, expected)


@pytest.mark.parametrize(("kind", "family"), list(DOCUMENTED))
def test_table_is_the_documented_one(kind, family):
    assert scale_factor_for(kind, family) == DOCUMENTED[(kind, family)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("detector", list(OURS))
def test_matcher_gives_the_detector_its_factor(kind, detector, gray, cv_kps):
    extractor = ImageMatcher(f"opencv-{kind}", detector=detector).describer.extractor
    assert _uses_factor(kind, extractor, OURS[detector], gray, cv_kps)
    other = 5.0  # the check can fail: another documented factor gives other descriptors
    assert not _uses_factor(kind, extractor, other, gray, cv_kps)


@pytest.mark.parametrize("kind", KINDS)
def test_keypoint_mode_equals_opencv_with_the_documented_factor(kind, gray):
    kps = detect_keypoints(gray, method="hessian", max_keypoints=150)
    desc = OpenCVDescriptor(kind, detector="hessian")
    got = desc.describe_keypoints(gray, kps)
    kept, expected = MAKE[kind](scale_factor=6.25).compute(gray, kps.to_cv())
    assert len(got) == len(kept) > 100
    if desc.binary:
        np.testing.assert_array_equal(got.descriptors.numpy(), expected)
    else:
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(got.descriptors.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_given_scale_factor_wins(kind, gray, cv_kps):
    matcher = ImageMatcher(
        f"opencv-{kind}", detector="hessian", descriptor_options={"scale_factor": 5.0}
    )
    assert _uses_factor(kind, matcher.describer.extractor, 5.0, gray, cv_kps)
    assert matcher.describer.patch_extent == 5.0


@pytest.mark.parametrize("kind", KINDS)
def test_patch_mode_keeps_the_patch_as_the_sampled_square(kind, gray, cv_kps):
    desc = OpenCVDescriptor(kind)
    desc.use_detector("hessian")
    assert _uses_factor(kind, desc._patch_extractor, 6.75, gray, cv_kps)
    assert desc.patch_extent == 6.75 and desc.keypoint_size(65) == pytest.approx(65 / 6.75)
    patches = torch.rand(4, 1, 65, 65, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(desc(patches), OpenCVDescriptor(kind)(patches))


def test_bad_detector_or_kind():
    with pytest.raises(OptionError):
        scale_factor_for("sift", "dog")
    with pytest.raises(OptionError):
        scale_factor_for("vgg", "superpoint")
    with pytest.raises(OptionError):
        OpenCVDescriptor("vgg", detector="superpoint")
