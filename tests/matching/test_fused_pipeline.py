"""The pipeline describes with the fused network, both images in one call, reusing it across calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import OptionError, ShapeError
from lookalike.data import bundled_photos
from lookalike.descriptors.patch._inference import FusedPatchNet, bf16_supported, int8_preferred
from lookalike.descriptors.patch._quantize import int8_engine
from lookalike.matching.describe import (
    CALIBRATION_KEYPOINTS,
    CALIBRATION_PHOTOS,
    CALIBRATION_STRIDE,
    PatchDescriber,
    auto_precision,
    calibration_patches,
    create_describer,
)
from lookalike.matching.keypoints import detect_keypoints
from lookalike.matching.pipeline import ImageMatcher, clear_matcher_cache, match_images


@pytest.fixture(scope="module")
def gray():
    return (bundled_photos(["camera"])[0].gray[0, 0].numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def kps(gray):
    return detect_keypoints(gray, max_keypoints=300)


@pytest.fixture(scope="module")
def net():
    return lookalike.create("descriptor", "hardnet", weights="bundled")


def _rows(describer, gray, kps):
    return describer.describe_keypoints(gray, kps).descriptors


def test_fused_float32_agrees_with_the_unfused_network(net, gray, kps):
    plain = _rows(PatchDescriber(net, fuse=False), gray, kps)
    fused = _rows(PatchDescriber(net, fuse=True, precision="float32"), gray, kps)
    assert plain.shape == fused.shape == (len(kps), 128)
    assert float((plain - fused).abs().max()) <= 1e-5


@pytest.mark.skipif(not bf16_supported("cpu"), reason="no native bfloat16 on this CPU")
def test_fused_bfloat16_agrees_in_cosine(net, gray, kps):
    plain = _rows(PatchDescriber(net, fuse=False), gray, kps)
    fused = _rows(PatchDescriber(net, fuse=True, precision="bfloat16"), gray, kps)
    assert fused.dtype == torch.float32
    cosine = (plain * fused).sum(1) / (plain.norm(dim=1) * fused.norm(dim=1))
    # on real patches: mean 0.99996, worst row 0.9997 (bfloat16 activations, float32 statistics)
    assert float(cosine.mean()) >= 0.9999 and float(cosine.min()) >= 0.999


def test_auto_precision_follows_native_support(net, monkeypatch):
    describer = PatchDescriber(net, fuse=True)
    if bf16_supported("cpu"):
        expected = torch.bfloat16
    else:
        expected = torch.qint8 if int8_preferred("cpu") else torch.float32
    assert isinstance(describer.network, FusedPatchNet) and describer.network.dtype == expected
    from lookalike.descriptors.patch import _inference

    monkeypatch.setattr(_inference, "bf16_supported", lambda device=None: False)
    monkeypatch.setattr(_inference, "int8_preferred", lambda device=None: True)
    assert auto_precision("cpu") == "int8"
    assert auto_precision("cpu", compile=True) == "float32"  # int8 is never compiled
    monkeypatch.setattr(_inference, "int8_preferred", lambda device=None: False)
    assert auto_precision("cpu") == "float32"
    monkeypatch.setattr(_inference, "int8_preferred", lambda device=None: True)
    se = lookalike.create("descriptor", "hardnet_se")  # our SE layers: not FX-traceable
    assert auto_precision("cpu", model=se) == "float32"
    assert auto_precision("cpu", model=net) == "int8"
    monkeypatch.setattr(_inference, "bf16_supported", lambda device=None: True)
    assert auto_precision("cpu") == "bfloat16"


@pytest.mark.skipif(int8_engine("cpu") is None, reason="no quantised CPU engine")
def test_fused_int8_agrees_in_cosine_on_real_patches(net, gray, kps):
    plain = _rows(PatchDescriber(net, fuse=False), gray, kps)
    fused = PatchDescriber(net, fuse=True, precision="int8")
    assert fused.network.dtype == torch.qint8
    rows = _rows(fused, gray, kps)
    assert rows.dtype == torch.float32 and rows.shape == plain.shape
    cosine = (plain * rows).sum(1)
    # measured here: mean 0.998, worst row 0.979 (on held-out photos' patches: mean 0.9995)
    assert float(cosine.mean()) >= 0.997 and float(cosine.min()) >= 0.95
    with pytest.raises(OptionError, match="int8"):
        PatchDescriber(net, compile=True, precision="int8")


def test_calibration_patches_come_from_training_photos():
    from lookalike.data.bundled import BUNDLED_PHOTOS, HELD_OUT_PHOTOS

    assert set(CALIBRATION_PHOTOS) <= set(BUNDLED_PHOTOS)
    assert not set(CALIBRATION_PHOTOS) & {*HELD_OUT_PHOTOS, "motorcycle_left"}
    patches = calibration_patches(32, 6.0)
    assert patches.shape[1:] == (1, 32, 32) and patches.dtype == torch.float32
    most = len(CALIBRATION_PHOTOS) * -(-CALIBRATION_KEYPOINTS // CALIBRATION_STRIDE)
    assert 300 <= len(patches) <= most  # 560 with DoG on the three photos
    assert float(patches.std()) > 0.05  # real image content
    torch.testing.assert_close(calibration_patches(32, 6.0), patches, atol=0, rtol=0)


def test_spec_networks_are_fused_modules_are_not(net):
    assert isinstance(create_describer("hardnet:bundled").network, FusedPatchNet)
    assert create_describer("hardnet:bundled", fuse=False).network is not None
    assert not create_describer("hardnet:bundled", fuse=False).fused
    assert create_describer(net).network is net  # the caller's module, described as is
    assert not create_describer("sift").fused  # no fuse_for_inference: described as is


def test_bad_fuse_options(net):
    with pytest.raises(OptionError):
        PatchDescriber(lookalike.create("descriptor", "sift"), fuse=True)
    with pytest.raises(OptionError):
        PatchDescriber(net, fuse=True, precision="float16")


def test_describe_images_equals_image_by_image(net, gray, kps):
    describer = PatchDescriber(net, fuse=False)
    other = np.ascontiguousarray(gray[::-1])
    other_kps = detect_keypoints(other, max_keypoints=200)
    together = describer.describe_images([gray, other], [kps, other_kps])
    alone = [
        describer.describe_keypoints(gray, kps),
        describer.describe_keypoints(other, other_kps),
    ]
    for a, b in zip(together, alone):
        assert len(a) == len(b)
        torch.testing.assert_close(a.descriptors, b.descriptors, atol=1e-6, rtol=0)
    with pytest.raises(ShapeError):
        describer.describe_images([gray], [kps, kps])


def test_one_batch_pair_path_matches_the_old_path(gray):
    photo = (bundled_photos(["coins"])[0].gray[0, 0].numpy() * 255).round().astype(np.uint8)
    opts = {"descriptor_options": {"fuse": False}, "max_keypoints": 300}
    new = ImageMatcher("hardnet:bundled", **opts)(gray, photo)
    old = ImageMatcher("hardnet:bundled", batch_pair=False, **opts)(gray, photo)
    np.testing.assert_array_equal(new.matches, old.matches)
    np.testing.assert_allclose(new.distances, old.distances, atol=1e-5)


def test_the_pipeline_describes_both_images_in_one_call(gray, monkeypatch):
    matcher = ImageMatcher("hardnet:bundled", max_keypoints=100)
    calls = []
    original = matcher.describer._describe
    monkeypatch.setattr(
        matcher.describer, "_describe", lambda p: calls.append(len(p)) or original(p)
    )
    result = matcher(gray, gray)
    assert len(calls) == 1 and calls[0] == len(result.keypoints0) + len(result.keypoints1)
    assert result.num_inliers > 50


def test_match_images_reuses_the_fused_network(gray):
    clear_matcher_cache()
    from lookalike.matching import pipeline

    match_images(gray, gray, "hardnet:bundled", max_keypoints=50)
    (first,) = pipeline._MATCHER_CACHE.values()
    match_images(gray, gray, "hardnet:bundled", max_keypoints=50)
    (second,) = pipeline._MATCHER_CACHE.values()
    assert first is second and first.describer.network is second.describer.network
    clear_matcher_cache()


@pytest.mark.slow
def test_compiled_describer_agrees(net, gray, kps):
    plain = _rows(PatchDescriber(net, fuse=True, precision="float32"), gray, kps)
    compiled = PatchDescriber(net, compile=True, precision="float32")
    assert compiled.network.compiled
    torch.testing.assert_close(_rows(compiled, gray, kps), plain, atol=1e-4, rtol=0)
