"""OpenCV and kornia baselines: equal to OpenCV/kornia called directly, in both modes, one vocabulary."""

from __future__ import annotations

import cv2
import kornia.feature as KF
import numpy as np
import pytest
import torch

import lookalike
from lookalike._registry import get_entry
from lookalike.baselines import DescriptorUnavailableError, rootsift
from lookalike.baselines.opencv import OpenCVDescriptor, available_opencv_descriptors
from lookalike.core.errors import DTypeError, ShapeError, ValueRangeError
from lookalike.data import bundled_photos
from lookalike.matching.keypoints import Keypoints, detect_keypoints

OPENCV = ["opencv-sift", "opencv-rootsift", "opencv-vgg", "opencv-boostdesc", "opencv-teblid"]
OPENCV += ["opencv-orb"]
KORNIA = ["kornia-sift", "kornia-rootsift", "kornia-mkd"]
ALL = OPENCV + KORNIA
# (dim, metric, patch_size) by hand from OpenCV's and kornia's documentation
EXPECTED = {
    "opencv-sift": (128, "l2", 65),
    "opencv-rootsift": (128, "l2", 65),
    "opencv-vgg": (120, "l2", 65),
    "opencv-boostdesc": (256, "hamming", 65),
    "opencv-teblid": (256, "hamming", 65),
    "opencv-orb": (256, "hamming", 65),
    "kornia-sift": (128, "l2", 41),
    "kornia-rootsift": (128, "l2", 41),
    "kornia-mkd": (238, "l2", 32),
}


def _available(name: str) -> bool:
    return not name.startswith("opencv-") or available_opencv_descriptors()[name[7:]]


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return (bundled_photos(["camera"])[0].gray_array * 255).astype(np.uint8)


def _patch_sets(gray: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Random noise and real-looking crops of a photo, ``(N, size, size)`` uint8."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (6, size, size), dtype=np.uint8)
    corners = rng.integers(0, gray.shape[0] - size, (10, 2))
    real = np.stack([gray[y : y + size, x : x + size] for x, y in corners])
    return {"noise": noise, "photo": real}


# ---------------------------------------------------------------- direct oracles
def _xfeatures(name: str):
    make = {
        "opencv-vgg": cv2.xfeatures2d.VGG_create,
        "opencv-boostdesc": cv2.xfeatures2d.BoostDesc_create,
        "opencv-teblid": cv2.xfeatures2d.TEBLID_create,
    }[name]
    return make(scale_factor=6.75)


def _opencv_direct(name: str, patches: np.ndarray) -> np.ndarray:
    """One ``compute`` per patch, with OpenCV's factory and the keypoint rule written out by hand."""
    P = patches.shape[-1]
    c = (P - 1) / 2
    if name in ("opencv-sift", "opencv-rootsift"):
        extractor, kp = cv2.SIFT_create(), cv2.KeyPoint(c, c, P / 5.3033, 0.0)
    elif name == "opencv-orb":  # 31 px window at level 4 (31 * 1.2^4 = 64.3 <= 65 < 77.1)
        extractor = cv2.ORB_create(nlevels=8, scaleFactor=1.2, patchSize=31, edgeThreshold=0)
        kp = cv2.KeyPoint(c, c, 31 * 1.2**4, 0.0, 0.0, 4, 0)
    else:
        extractor, kp = _xfeatures(name), cv2.KeyPoint(c, c, P / 6.75, 0.0)
    rows = np.stack([extractor.compute(np.ascontiguousarray(p), [kp])[1][0] for p in patches])
    if rows.dtype == np.uint8:
        return np.unpackbits(rows, axis=1).astype(np.float32)
    rows = rows.astype(np.float32)
    if name == "opencv-rootsift":
        rows = np.sqrt(rows / rows.sum(axis=1, keepdims=True))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _kornia_direct(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "kornia-mkd":
        return KF.MKDDescriptor(patch_size=32, whitening=None)(x)
    return KF.SIFTDescriptor(patch_size=41, rootsift=name == "kornia-rootsift")(x)


@pytest.mark.parametrize("name", ALL)
def test_registered_with_the_contract_attributes(name):
    if not _available(name):
        pytest.skip(f"this OpenCV lacks {name}")
    model = lookalike.create("descriptor", name)
    dim, metric, size = EXPECTED[name]
    assert (model.dim, model.metric, model.patch_size) == (dim, metric, size)
    assert model.needs_weights is False and model.name == name
    assert model.differentiable is (name in KORNIA)
    assert model.patch_extent > 0
    assert get_entry("descriptor", name).factory.needs_weights is False


@pytest.mark.parametrize("name", OPENCV)
@pytest.mark.parametrize("kind", ["noise", "photo"])
def test_opencv_patch_mode_equals_opencv(name, kind, gray):
    if not _available(name):
        pytest.skip(f"this OpenCV lacks {name}")
    patches = _patch_sets(gray, 65)[kind]
    model = lookalike.create("descriptor", name)
    got = model(torch.from_numpy(patches)[:, None].float() / 255).numpy()
    assert got.dtype == np.float32 and got.shape == (len(patches), model.dim)
    # 5.3033 is rounded: one unit of OpenCV's uint8-scaled SIFT bins (1 / 512) may flip
    atol = 3e-3 if "sift" in name else 1e-6
    np.testing.assert_allclose(got, _opencv_direct(name, patches), atol=atol)


@pytest.mark.parametrize("name", KORNIA)
@pytest.mark.parametrize("kind", ["noise", "photo"])
def test_kornia_patch_mode_equals_kornia(name, kind, gray):
    model = lookalike.create("descriptor", name)
    patches = _patch_sets(gray, model.patch_size)[kind]
    x = torch.from_numpy(patches)[:, None].float() / 255
    torch.testing.assert_close(model(x), _kornia_direct(name, x))


@pytest.mark.parametrize("name", ALL)
def test_patch_mode_edge_cases(name):
    if not _available(name):
        pytest.skip(f"this OpenCV lacks {name}")
    model = lookalike.create("descriptor", name)
    P = model.patch_size
    x = torch.rand(3, 1, P, P, generator=torch.Generator().manual_seed(1))
    x[1] = 0.25  # flat
    out = model(x)
    assert out.shape == (3, model.dim) and out.dtype == torch.float32
    assert torch.equal(out[1], torch.zeros(model.dim))
    if model.metric == "l2":
        torch.testing.assert_close(out[[0, 2]].norm(dim=1), torch.ones(2))
    else:
        assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert model(x[:0]).shape == (0, model.dim)
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueRangeError):
        model(bad)
    bad[0, 0, 3, 3] = float("inf")
    with pytest.raises(ValueRangeError):
        model(bad)
    with pytest.raises(ShapeError):
        model(x[:, :, :-1])
    with pytest.raises(ShapeError):
        model(x[0])
    with pytest.raises(DTypeError):
        model((x * 255).to(torch.uint8))
    torch.testing.assert_close(model(x.double()).float(), out, atol=1e-5, rtol=0)


def test_opencv_quantises_to_8_bits_and_takes_any_square_side():
    sift = lookalike.create("descriptor", "opencv-sift")
    x = torch.rand(4, 1, 65, 65, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(sift(x), sift((x * 255).round() / 255))
    patches = (torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(3)) * 255).round()
    got = sift(patches[:, None] / 255).numpy()
    np.testing.assert_allclose(
        got, _opencv_direct("opencv-sift", patches.numpy().astype(np.uint8)), atol=3e-3
    )


def test_kornia_gradients_flow():
    for name in KORNIA:
        model = lookalike.create("descriptor", name)
        x = torch.rand(2, 1, model.patch_size, model.patch_size, requires_grad=True)
        model(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- keypoint mode
@pytest.fixture(scope="module")
def kps(gray) -> Keypoints:
    return detect_keypoints(gray[:300, :300], max_keypoints=120)


@pytest.mark.parametrize("name", OPENCV)
def test_opencv_keypoint_mode_equals_opencv(name, gray, kps):
    if not _available(name):
        pytest.skip(f"this OpenCV lacks {name}")
    image = np.ascontiguousarray(gray[:300, :300])
    cv_kps = kps.to_cv()
    if name == "opencv-orb":  # ORB level: window 31 * 1.2^L closest to the SIFT region 7.5 size
        extractor = cv2.ORB_create(nlevels=8, scaleFactor=1.2, patchSize=31)
        for kp in cv_kps:
            kp.octave = int(np.clip(round(np.log(7.5 * kp.size / 31) / np.log(1.2)), 0, 7))
            kp.size = 31 * 1.2**kp.octave
    elif "sift" in name:
        extractor = cv2.SIFT_create()
    else:
        extractor = _xfeatures(name)
    kept, ref = extractor.compute(image, cv_kps)
    index = np.array([k.class_id for k in kept])
    order = np.argsort(index, kind="stable")
    index, ref = index[order], ref[order]
    feats = lookalike.create("descriptor", name).describe_keypoints(image, kps)
    np.testing.assert_array_equal(feats.keypoints.xy, kps.xy[index])
    if ref.dtype == np.uint8:
        assert feats.metric == "hamming" and feats.descriptors.dtype == torch.uint8
        np.testing.assert_array_equal(feats.descriptors.numpy(), ref)
        return
    ref = ref.astype(np.float32)
    if name == "opencv-rootsift":
        ref = rootsift(ref)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert feats.metric == "l2"
    np.testing.assert_allclose(feats.descriptors.numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("name", KORNIA)
def test_kornia_keypoint_mode_is_kornia_on_pyramid_patches(name, gray, kps):
    from lookalike.matching.describe import PatchDescriber, create_describer

    describer = create_describer(name)
    assert isinstance(describer, PatchDescriber) and describer.name == name
    module = describer.model.module  # kornia's own module, called directly on the same patches
    patches = describer.patches(gray, kps)
    with torch.no_grad():
        expected = module(patches)
    got = describer.describe_keypoints(gray, kps).descriptors
    assert got.shape == (len(kps), EXPECTED[name][0])
    torch.testing.assert_close(got, expected)


def test_rootsift_is_one_function():
    rows = np.array([[4.0, 0.0, 12.0], [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(rootsift(rows), [[0.5, 0.0, np.sqrt(0.75)], [0, 0, 0]], atol=1e-7)


def test_extents_are_the_descriptor_constants():
    from lookalike.descriptors._base import NETWORK_EXTENT, SIFT_EXTENT

    assert lookalike.create("descriptor", "kornia-sift").patch_extent == SIFT_EXTENT
    assert lookalike.create("descriptor", "kornia-mkd").patch_extent == NETWORK_EXTENT
    assert lookalike.create("descriptor", "opencv-sift").keypoint_size(65) == pytest.approx(
        12.257, abs=1e-3
    )


# ---------------------------------------------------------------- one vocabulary
def test_one_name_vocabulary_everywhere(gray):
    from lookalike.eval.protocols.describers import create_patch_describer
    from lookalike.matching.pipeline import ImageMatcher

    assert set(ALL) <= set(lookalike.list_registered("descriptor"))
    orb = lookalike.create("descriptor", "opencv-orb")
    assert isinstance(orb, OpenCVDescriptor) and orb.metric == "hamming"
    for name in ("opencv-orb", "kornia-mkd"):
        describer = create_patch_describer(name)
        patches = _patch_sets(gray, 65)["photo"]
        model = lookalike.create("descriptor", name)
        x = torch.from_numpy(patches)[:, None].float() / 255
        if model.patch_size != 65:
            from lookalike.descriptors.describe import area_resize

            x = area_resize(x, model.patch_size)
        np.testing.assert_allclose(describer(patches), model(x).numpy(), atol=1e-6)
    matcher = ImageMatcher("kornia-mkd", max_keypoints=200)
    image = np.ascontiguousarray(gray[:256, :256])
    result = matcher(image, image)
    assert result.descriptor == "kornia-mkd" and result.num_inliers > 50


def test_missing_opencv_descriptor(monkeypatch):
    import lookalike.baselines.opencv as opencv

    real = opencv.available_opencv_descriptors
    monkeypatch.setattr(opencv, "available_opencv_descriptors", lambda: {**real(), "vgg": False})
    with pytest.raises(DescriptorUnavailableError, match="VGG_create"):
        lookalike.create("descriptor", "opencv-vgg")
    from lookalike.eval.protocols.describers import resolve_describers

    [(name, describer, note)] = resolve_describers(["opencv-vgg"])
    assert name == "opencv-vgg" and describer is None and "VGG_create" in note
