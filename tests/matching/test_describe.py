"""Describers: OpenCV baselines on given keypoints, patch descriptors on pyramid patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lookalike.baselines.opencv import OPENCV_DESCRIPTORS, available_opencv_descriptors
from lookalike.core.errors import LookalikeError, OptionError
from lookalike.data import bundled_photos
from lookalike.descriptors.describe import describe_patches
from lookalike.matching.describe import (
    FUSED_CPU_BATCH,
    NETWORK_EXTENT,
    PatchDescriber,
    create_describer,
    default_extent,
)
from lookalike.matching.keypoints import Keypoints, detect_keypoints
from lookalike.matching.patches import SIFT_EXTENT


class TinyDescriptor(nn.Module):
    """A dummy patch descriptor: 4 x 4 average pooling of a 16 px patch."""

    patch_size = 16
    dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.avg_pool2d(x, 4).flatten(1) * self.scale
        return nn.functional.normalize(out - out.mean(1, keepdim=True), dim=1)


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return np.ascontiguousarray(bundled_photos(["camera"])[0].rgb[:256, :256, 0])


@pytest.fixture(scope="module")
def kps(gray) -> Keypoints:
    return detect_keypoints(gray, max_keypoints=150)


@pytest.mark.parametrize("kind", sorted(OPENCV_DESCRIPTORS))
def test_opencv_baselines(kind, gray, kps):
    if not available_opencv_descriptors()[kind]:
        pytest.skip(f"OpenCV lacks {kind}")
    describer = create_describer(f"opencv-{kind}")
    feats = describer.describe_keypoints(gray, kps)
    assert 0 < len(feats) <= len(kps)
    assert feats.descriptors.shape[0] == len(feats.keypoints)
    if describer.metric == "hamming":
        assert feats.descriptors.dtype == torch.uint8
    else:
        torch.testing.assert_close(feats.descriptors.norm(dim=1), torch.ones(len(feats)))
    # survivors are a subset of the input, in input order
    assert np.all(np.isin(feats.keypoints.response, kps.response))


def test_opencv_sift_equals_opencv_directly(gray, kps):
    import cv2

    _, ref = cv2.SIFT_create().compute(gray, kps.to_cv())
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    feats = create_describer("opencv-sift").describe_keypoints(gray, kps)
    np.testing.assert_allclose(feats.descriptors.numpy(), ref, atol=1e-6)
    root = create_describer("opencv-rootsift").describe_keypoints(gray, kps).descriptors.numpy()
    raw = cv2.SIFT_create().compute(gray, kps.to_cv())[1]
    np.testing.assert_allclose(root, np.sqrt(raw / raw.sum(1, keepdims=True)), atol=1e-6)


def test_patch_describer_batches_and_keeps_every_keypoint(gray, kps):
    model = TinyDescriptor()
    one = PatchDescriber(model, batch_size=1000).describe_keypoints(gray, kps)
    many = PatchDescriber(model, batch_size=7).describe_keypoints(gray, kps)
    assert len(one) == len(kps) and one.descriptors.shape == (len(kps), 16)
    torch.testing.assert_close(one.descriptors, many.descriptors)
    # oracle: the model called on the extracted patches directly, in eval mode
    describer = PatchDescriber(model)
    with torch.no_grad():
        direct = model.eval()(describer.patches(gray, kps))
    torch.testing.assert_close(one.descriptors, direct)


def test_default_batch_size_small_for_fused_networks_on_the_cpu(gray, kps):
    import lookalike

    net = lookalike.create("descriptor", "hardnet", weights="bundled")
    fused = PatchDescriber(net, fuse=True, precision="float32")
    assert fused.batch_size == FUSED_CPU_BATCH == 128
    assert PatchDescriber(net).batch_size == 1024  # unfused: one pass per 1024 patches
    assert PatchDescriber(net, fuse=True, batch_size=4096).batch_size == 4096
    # the batch size changes the speed, not the descriptors
    big = PatchDescriber(net, fuse=True, precision="float32", batch_size=4096)
    torch.testing.assert_close(
        fused.describe_keypoints(gray, kps).descriptors,
        big.describe_keypoints(gray, kps).descriptors,
        atol=1e-5,
        rtol=1e-5,
    )
    with pytest.raises(OptionError, match="batch_size"):
        PatchDescriber(net, batch_size=0)


class ModeSensitive(TinyDescriptor):
    """Dropout: train mode would give different rows from eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.drop(x))


def test_patch_describer_keeps_the_callers_train_mode(gray, kps):
    model = ModeSensitive().train()
    describer = PatchDescriber(model)
    assert model.training  # constructing does not switch the caller's model to eval
    a = describer.describe_keypoints(gray, kps)
    assert model.training  # nor does describing
    b = describer.describe_keypoints(gray, kps)
    torch.testing.assert_close(a.descriptors, b.descriptors)  # described in eval mode: no dropout
    assert not a.descriptors.requires_grad
    model.eval()
    create_describer(model).describe_keypoints(gray, kps)
    assert not model.training  # an eval model stays in eval mode


def test_describe_patches_restores_training_mode_and_gives_no_grad():
    model = TinyDescriptor().train()
    out = describe_patches(model, torch.rand(5, 1, 16, 16), batch_size=2)
    assert model.training and not out.requires_grad
    assert describe_patches(model, torch.rand(0, 1, 16, 16)).shape == (0, 16)


def test_rotation_invariance_of_patches(gray):
    """Same keypoints in a quarter-turned image (angle + 90 clockwise) give the same descriptors."""
    describer = create_describer("kornia-sift")
    kps = detect_keypoints(gray, max_keypoints=80)
    inner = (kps.xy.min(1) > 60) & (kps.xy.max(1) < 196)
    kps = kps.subset(inner)
    rot = np.ascontiguousarray(np.rot90(gray, k=-1))  # clockwise on screen
    xy = np.stack([gray.shape[0] - 1 - kps.xy[:, 1], kps.xy[:, 0]], axis=1)
    moved = Keypoints.from_arrays(xy, size=kps.size, angle=kps.angle + 90.0)
    a = describer.describe_keypoints(gray, kps).descriptors
    b = describer.describe_keypoints(rot, moved).descriptors
    assert float((a * b).sum(1).median()) > 0.97
    wrong = Keypoints.from_arrays(xy, size=kps.size, angle=kps.angle - 90.0)  # kornia's sign
    c = describer.describe_keypoints(rot, wrong).descriptors
    assert float((a * c).sum(1).median()) < 0.8


def test_empty_keypoints(gray):
    for spec in ("opencv-sift", "opencv-orb", "kornia-mkd"):
        feats = create_describer(spec).describe_keypoints(gray, Keypoints.empty(gray.shape))
        assert len(feats) == 0 and feats.descriptors.shape[0] == 0
    feats = PatchDescriber(TinyDescriptor()).describe_keypoints(gray, Keypoints.empty(gray.shape))
    assert feats.descriptors.shape == (0, 16)


def test_default_extent():
    assert default_extent(TinyDescriptor(), "tiny") == NETWORK_EXTENT
    assert default_extent(TinyDescriptor(), "sift") == SIFT_EXTENT
    model = TinyDescriptor()
    model.patch_extent = 4.0
    assert PatchDescriber(model).extent == 4.0
    assert PatchDescriber(TinyDescriptor(), extent=3.0).extent == 3.0


def test_module_spec_and_device():
    d = create_describer(TinyDescriptor(), extent=5.0, device="cpu")
    assert isinstance(d, PatchDescriber) and d.patch_size == 16 and d.extent == 5.0


def test_every_name_resolves_through_the_registry(gray, kps):
    import lookalike
    from lookalike._registry import get_entry
    from lookalike.baselines.opencv import OpenCVDescriptor

    patch_families = ("lookalike.descriptors.patch.", "lookalike.baselines.")
    for name in lookalike.list_registered("descriptor"):
        if not get_entry("descriptor", name).factory.__module__.startswith(patch_families):
            continue  # image and re-ID descriptors describe whole images, not keypoint patches
        describer = create_describer(name)
        assert describer.name == name
        if name.startswith("opencv-"):
            assert isinstance(describer, OpenCVDescriptor)  # describes keypoints itself
        else:
            assert isinstance(describer, PatchDescriber)
    mkd = create_describer("kornia-mkd")
    assert mkd.patch_size == 32 and mkd.extent == NETWORK_EXTENT
    assert create_describer("kornia-sift", patch_size=32).patch_size == 32
    assert create_describer("opencv-orb", nfeatures=10).extractor.getMaxFeatures() == 10
    given = PatchDescriber(TinyDescriptor())
    assert create_describer(given) is given


def test_bad_specs():
    with pytest.raises(LookalikeError):
        create_describer("opencv-surfish")
    with pytest.raises(OptionError):
        create_describer("opencv-sift", extent=3.0)
    with pytest.raises(OptionError):
        create_describer("")
    with pytest.raises(LookalikeError):
        create_describer("no-such-descriptor")
    with pytest.raises(OptionError):
        PatchDescriber(TinyDescriptor(), extent=0)


def test_our_sift_describes_pipeline_sized_patches_unless_told():
    from lookalike.matching.describe import PIPELINE_SIFT_PATCH

    assert PIPELINE_SIFT_PATCH == 32
    for name in ("sift", "rootsift"):
        assert create_describer(name).patch_size == 32
        assert create_describer(name, patch_size=24).patch_size == 24
    assert create_describer("kornia-sift").patch_size == 41  # anchors keep their own size
    import lookalike

    module = lookalike.create("descriptor", "sift", patch_size=32)
    assert create_describer(module).patch_size == 32  # a module is described as given
