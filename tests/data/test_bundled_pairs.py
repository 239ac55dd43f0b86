"""Training pairs from the bundled photos: determinism, shapes, correspondence, labels, held-out split."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.bundled import BUNDLED_PHOTOS, bundled_photos
from lookalike.data.bundled_pairs import (
    VALIDATION_PHOTOS,
    BundledPairs,
    corresponding_patches,
    cut_patches,
    detect_lafs,
)
from lookalike.data.synth import PhotometricRanges
from lookalike.geometry import WarpRanges

PHOTOS = ["camera", "astronaut"]
STRIDE = 1_000_000


@pytest.fixture(scope="module")
def camera():
    gray = bundled_photos(["camera"])[0].gray_array
    return gray, detect_lafs(gray, budget=400)


def _photo_of(labels) -> set[str]:
    names = list(BUNDLED_PHOTOS)
    return {names[int(lab) // STRIDE] for lab in np.asarray(labels)}


def test_registered_and_shapes():
    data = lookalike.create("dataset", "bundled_pairs", batch_size=16, photos=PHOTOS, seed=1)
    anchors, positives = next(iter(data))
    for x in (anchors, positives):
        assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_labels_mode_has_distinct_points_per_batch():
    data = BundledPairs(batch_size=24, n_views=3, output="labels", photos=PHOTOS, patch_size=24)
    for patches, labels in itertools.islice(iter(data), 3):
        assert patches.shape == (72, 1, 24, 24) and labels.shape == (72,)
        values, counts = np.unique(labels.numpy(), return_counts=True)
        assert values.size == 24 and (counts == 3).all()
        # the views of a point are consecutive
        assert (labels.view(24, 3) == labels.view(24, 3)[:, :1]).all()


def test_deterministic_by_seed():
    make = lambda seed: BundledPairs(batch_size=8, output="labels", photos=PHOTOS, seed=seed)  # noqa: E731
    a = list(itertools.islice(iter(make(3)), 2))
    b = list(itertools.islice(iter(make(3)), 2))
    c = next(iter(make(4)))
    for (pa, la), (pb, lb) in zip(a, b):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
        assert torch.equal(la, lb)
    assert not torch.equal(a[0][1], c[1]) or not torch.equal(a[0][0], c[0])


def test_identity_views_give_identical_patches(camera):
    gray, lafs = camera
    H = [np.eye(3), np.eye(3)]
    patches, index = corresponding_patches(gray, lafs, H, patch_size=32)
    assert patches.shape == (index.size, 2, 1, 32, 32) and index.size > 50
    torch.testing.assert_close(patches[:, 0], patches[:, 1], rtol=0, atol=1e-6)


def test_identity_stream_without_photometric_change():
    data = BundledPairs(
        batch_size=32, photos=["camera"], warp=WarpRanges.identity(), photometric=None, jitter=None
    )
    anchors, positives = next(iter(data))
    torch.testing.assert_close(anchors, positives, rtol=0, atol=1e-6)


def _rotation_about(center: tuple[float, float], angle: float, scale: float = 1.0) -> np.ndarray:
    cx, cy = center
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1.0]])


@pytest.mark.parametrize("angle, scale", [(math.radians(30), 1.0), (math.radians(-100), 0.8)])
def test_known_rotation_is_normalised_away(camera, angle, scale):
    gray, lafs = camera
    H = _rotation_about((255.5, 255.5), angle, scale)
    patches, index = corresponding_patches(gray, lafs, [np.eye(3), H], patch_size=32)
    assert index.size > 30
    diff = (patches[:, 0] - patches[:, 1]).abs().mean(dim=(1, 2, 3))
    shuffled = (patches[:, 0] - patches[:, 1].roll(1, 0)).abs().mean(dim=(1, 2, 3))
    assert float(diff.median()) < 0.02  # same content up to resampling
    assert float(shuffled.median()) > 4 * float(diff.median())


def test_similarity_mode_differs_only_by_residual_affine(camera):
    gray, lafs = camera
    shear = np.array([[1.0, 0.3, -60.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    affine, _ = corresponding_patches(gray, lafs, [np.eye(3), shear], patch_size=32)
    similar, _ = corresponding_patches(
        gray, lafs, [np.eye(3), shear], patch_size=32, laf_mode="similarity"
    )
    d_aff = (affine[:, 0] - affine[:, 1]).abs().mean()
    d_sim = (similar[:, 0] - similar[:, 1]).abs().mean()
    assert float(d_aff) < float(d_sim)


def test_orientation_points_the_dominant_gradient_along_x(camera):
    gray, lafs = camera
    patches = cut_patches(gray, lafs, 32)[:, 0].numpy()
    gy, gx = np.gradient(patches, axis=(1, 2))
    yy, xx = np.mgrid[-1:1:32j, -1:1:32j]
    w = np.exp(-(xx**2 + yy**2) / 0.5)
    angle = np.arctan2((gy * w).sum((1, 2)), (gx * w).sum((1, 2)))
    assert float(np.cos(angle).mean()) > 0.5


def test_cut_patches_matches_kornia_on_level_zero(camera):
    from kornia.feature import extract_patches_from_pyramid

    gray, lafs = camera
    scale = np.sqrt(np.abs(np.linalg.det(lafs[:, :, :2])))
    small = lafs[(scale > 8) & (scale < 30)][:40]
    ours = cut_patches(gray, small, 32)
    ref = extract_patches_from_pyramid(
        torch.from_numpy(gray)[None, None], torch.from_numpy(small).float()[None], PS=32
    )[0]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)


def test_detect_lafs_suppresses_overlaps(camera):
    _, lafs = camera
    centers = lafs[:, :, 2]
    d = np.linalg.norm(centers[:, None] - centers[None], axis=2) + np.eye(len(lafs)) * 1e9
    assert d.min() > 0.5  # no duplicate locations (SIFT's extra orientations are dropped)


def test_validation_split_is_held_out_and_fixed():
    data = BundledPairs(batch_size=16, output="labels", photos=None, seed=0)
    assert set(data.train_photos).isdisjoint(data.val_photos)
    assert set(data.val_photos) == set(VALIDATION_PHOTOS)
    assert set(data.train_photos) | set(data.val_photos) == set(BUNDLED_PHOTOS)
    _, labels = next(iter(data))
    assert _photo_of(labels) <= set(data.train_photos)

    val = data.validation_set(n_points=150)
    again = data.validation_set(n_points=150)
    assert _photo_of(val.labels) <= set(VALIDATION_PHOTOS)
    assert val.patches.shape == (300, 1, 32, 32)
    torch.testing.assert_close(val.patches, again.patches, rtol=0, atol=0)
    assert torch.equal(val.pairs, again.pairs)
    # every point once, two views each
    _, counts = np.unique(val.labels.numpy(), return_counts=True)
    assert (counts == 2).all()
    same = val.labels[val.pairs[:, 0]] == val.labels[val.pairs[:, 1]]
    assert torch.equal(same, val.is_match)
    assert int(val.is_match.sum()) == 150 and int((~val.is_match).sum()) > 100
    # independent of the training configuration
    other = BundledPairs(seed=9, warp=WarpRanges.identity(), photometric=None, jitter="t")
    torch.testing.assert_close(
        other.validation_set(n_points=150).patches, val.patches, rtol=0, atol=0
    )


def test_jitter_perturbs_identity_views(camera):
    gray, lafs = camera
    rng = np.random.default_rng(0)
    from lookalike.data.synth import HPATCHES_JITTER

    exact, _ = corresponding_patches(gray, lafs, [np.eye(3)] * 2, patch_size=32)
    noisy, _ = corresponding_patches(
        gray, lafs, [np.eye(3)] * 2, patch_size=32, rng=rng, jitter=HPATCHES_JITTER["h"]
    )
    d_exact = (exact[:, 0] - exact[:, 1]).abs().mean()
    d_noisy = (noisy[:, 0] - noisy[:, 1]).abs().mean()
    assert float(d_exact) < 1e-6 < 0.01 < float(d_noisy)
    with pytest.raises(OptionError):
        corresponding_patches(gray, lafs, [np.eye(3)], jitter=HPATCHES_JITTER["e"])


def test_bad_options():
    with pytest.raises(OptionError):
        BundledPairs(n_views=1)
    with pytest.raises(OptionError):
        BundledPairs(output="triplets")
    with pytest.raises(OptionError):
        BundledPairs(photos=["no_such_photo"])
    with pytest.raises(OptionError):
        BundledPairs(batch_size=0)
    with pytest.raises(EmptyInputError):
        BundledPairs(photos=["chelsea"], val_photos=["chelsea"])
    with pytest.raises(OptionError):
        BundledPairs(warp={"rotation": (1.0, 0.0)})
    with pytest.raises(OptionError):
        BundledPairs(jitter="x")
    with pytest.raises(OptionError):
        BundledPairs().validation_set(jitter="x")


def test_photometric_views_differ_but_stay_in_range(camera):
    gray, lafs = camera
    rng = np.random.default_rng(0)
    patches, _ = corresponding_patches(
        gray,
        lafs,
        [np.eye(3), np.eye(3)],
        patch_size=16,
        rng=rng,
        photometric=PhotometricRanges(p_blur=1.0, p_jpeg=1.0),
        max_points=20,
    )
    assert patches.shape == (20, 2, 1, 16, 16)
    assert float((patches[:, 0] - patches[:, 1]).abs().mean()) > 1e-3
    assert float(patches.min()) >= 0 and float(patches.max()) <= 1


def test_stream_state_resumes_the_exact_sequence():
    import json

    data = BundledPairs(batch_size=8, photos=["camera"], keypoint_budget=150, buffer_batches=2)
    whole = list(itertools.islice(iter(data), 5))
    stream = data.stream()
    for _ in range(2):
        next(stream)
    state = stream.state_dict()
    json.dumps({k: v for k, v in state.items() if k != "patches"})  # JSON-ready besides the tensor
    again = data.stream()
    again.load_state_dict(state)
    for expected in whole[2:]:
        got = next(again)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    with pytest.raises(OptionError, match="stream state"):
        again.load_state_dict({**state, "patches": torch.zeros(1)})


def test_validation_set_of_every_point_warns_nothing(caplog):
    import logging

    data = BundledPairs(val_photos=["coins"], keypoint_budget=150)
    with caplog.at_level(logging.WARNING):
        everything = data.validation_set(n_points=None)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        more = data.validation_set(n_points=100_000)
    assert "points available" in caplog.text
    torch.testing.assert_close(everything.patches, more.patches, rtol=0, atol=0)
