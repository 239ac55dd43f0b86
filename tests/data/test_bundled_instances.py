"""The ``bundled_instances`` data set: regions, views, held-out validation, retrieval scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import LookalikeError, OptionError, ShapeError
from lookalike.data.bundled import HELD_OUT_PHOTOS, bundled_photos
from lookalike.data.bundled_instances import (
    BundledInstances,
    _RandomView,
    region_grid,
    retrieval_scores,
)


def _small(**kwargs) -> BundledInstances:
    options = {"photos": ["camera"], "scales": [1.0, 0.5], "image_size": 32, "samples_per_class": 3}
    options.update(kwargs)
    return lookalike.create("dataset", "bundled_instances", **options)


# ----------------------------------------------------------------------------- region grid
@pytest.mark.parametrize(("h", "w"), [(512, 512), (300, 451), (191, 384), (1000, 872)])
def test_region_grid_squares_lie_inside_and_tile_each_scale(h, w):
    scales = [1.0, 0.6, 0.35, 0.2]
    regions = region_grid(h, w, scales)
    start = 0
    for f in scales:
        side = f * min(h, w)
        nx, ny = max(1, round(w / side)), max(1, round(h / side))
        block = regions[start : start + nx * ny]
        start += nx * ny
        np.testing.assert_allclose(block[:, 2], side)
        assert (block[:, 0] - side / 2 >= -1e-9).all() and (
            block[:, 0] + side / 2 <= w + 1e-9
        ).all()
        assert (block[:, 1] - side / 2 >= -1e-9).all() and (
            block[:, 1] + side / 2 <= h + 1e-9
        ).all()
        # brute force: the union of the squares covers the image up to gaps < a quarter side
        covered = np.zeros((h, w), bool)
        for cx, cy, s in block:
            covered[
                int(cy - s / 2) : int(np.ceil(cy + s / 2)),
                int(cx - s / 2) : int(np.ceil(cx + s / 2)),
            ] = True
        assert covered.mean() > 0.75
    assert start == len(regions)


def test_region_grid_rejects_bad_scales():
    with pytest.raises(OptionError, match="scales"):
        region_grid(10, 10, [1.5])
    with pytest.raises(OptionError, match="scales"):
        region_grid(10, 10, [0.0])


# ----------------------------------------------------------------------------- samples
def test_samples_are_views_labelled_by_region():
    data = _small()
    regions = region_grid(512, 512, [1.0, 0.5])
    assert data.num_classes == len(regions) == 5
    assert len(data) == 15 and data.labels.tolist() == [c for c in range(5) for _ in range(3)]
    assert data.class_counts.tolist() == [3] * 5
    np.testing.assert_allclose(data.regions[:, 1:], regions)
    view, label = data[7]
    assert view.shape == (3, 32, 32) and view.dtype == torch.float32 and label == 2
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
    with pytest.raises(IndexError):
        data[15]


def test_weak_views_show_their_region():
    """Oracle: the region cut straight from the photo with OpenCV (area resize)."""
    data = _small(image_size=48, strength=1e-4)
    rgb = bundled_photos(["camera"])[0].rgb
    torch.manual_seed(0)
    errors = []
    for c, (cx, cy, side) in enumerate(data.regions[:, 1:]):
        x0, y0, s = round(cx - side / 2), round(cy - side / 2), round(side)
        crop = cv2.resize(rgb[y0 : y0 + s, x0 : x0 + s], (48, 48), interpolation=cv2.INTER_AREA)
        expected = torch.from_numpy(crop).permute(2, 0, 1).float() / 255
        for k in range(3):
            view, _ = data[c * 3 + k]
            flipped = view.flip(-1)  # the flip is not weakened
            errors.append(min((view - expected).abs().mean(), (flipped - expected).abs().mean()))
            # another region is farther away than the view is from its own region
    assert max(errors) < 0.06
    other = cv2.resize(rgb[0:256, 0:256], (48, 48), interpolation=cv2.INTER_AREA)
    other = torch.from_numpy(other).permute(2, 0, 1).float() / 255
    view, _ = data[0]  # the whole photo
    assert (view - other).abs().mean() > 2 * max(errors)


def test_random_view_corners_follow_the_strength():
    torch.manual_seed(0)
    square = np.array([[32, 32], [96, 32], [96, 96], [32, 96]], float)
    mirrored = square[[1, 0, 3, 2]]
    weak = [_RandomView(64, 1e-6).corners() for _ in range(50)]
    is_mirror = [np.abs(c - mirrored).max() < 1e-3 for c in weak]
    assert all(np.abs(c - square).max() < 1e-3 or m for c, m in zip(weak, is_mirror))
    assert 0 < sum(is_mirror) < 50  # both orientations occur
    strong = np.stack([_RandomView(64, 1.0).corners() for _ in range(200)])
    spread = np.abs(np.abs(strong - 64) - 32).max()
    assert 10 < spread < 64  # zoom, rotation and perspective move the corners, not wildly


def test_procedural_classes_are_added():
    data = _small(procedural=2)
    assert data.num_classes == 7
    assert (data.regions[-2:] == -1).all()
    view, label = data[len(data) - 1]
    assert label == 6 and view.shape == (3, 32, 32)


def test_default_photos_exclude_held_out():
    from lookalike.data.bundled import BUNDLED_PHOTOS

    data = lookalike.create(
        "dataset", "bundled_instances", image_size=16, scales=[1.0], samples_per_class=1
    )
    expected = tuple(p for p in BUNDLED_PHOTOS if p not in HELD_OUT_PHOTOS)
    assert data.photos == expected and len(expected) == 14
    assert sorted(set(data.regions[:, 0].astype(int))) == list(range(14))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"photos": ["chelsea"]},
        {"photos": ["nope"]},
        {"photos": []},
        {"image_size": 8},
        {"samples_per_class": 0},
        {"procedural": -1},
        {"scales": []},
        {"strength": 0},
    ],
)
def test_bad_options_raise(kwargs):
    with pytest.raises(LookalikeError):
        _small(**kwargs)


# ----------------------------------------------------------------------------- validation
def test_validation_set_is_fixed_held_out_and_leaves_the_rng_alone():
    data = _small()
    torch.manual_seed(5)
    first = data.validation_set()
    after = torch.rand(3)
    torch.manual_seed(5)
    expected_after = torch.rand(3)
    torch.testing.assert_close(after, expected_after)  # the training stream is untouched
    second = _small(procedural=1).validation_set()
    torch.testing.assert_close(first.patches, second.patches)
    n = sum(
        len(region_grid(p.rgb.shape[0], p.rgb.shape[1], [0.5, 0.3]))
        for p in bundled_photos(list(HELD_OUT_PHOTOS))
    )
    assert first.patches.shape == (4 * n, 3, 32, 32)
    assert first.labels.tolist() == [c for c in range(n) for _ in range(4)]
    labels = first.labels
    pos, neg = first.pairs[first.is_match], first.pairs[~first.is_match]
    assert len(pos) == n and (labels[pos[:, 0]] == labels[pos[:, 1]]).all()
    assert len(neg) > 0 and (labels[neg[:, 0]] != labels[neg[:, 1]]).all()
    capped = data.validation_set(n_points=5)
    assert capped.patches.shape[0] == 20
    torch.testing.assert_close(capped.patches, first.patches[:20])


# ----------------------------------------------------------------------------- retrieval scores
def _oracle(desc: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score

    aps, top1 = [], []
    sims = desc @ desc.T
    for q in range(len(desc)):
        others = [i for i in range(len(desc)) if i != q]
        rel = labels[others] == labels[q]
        if not rel.any():
            continue
        aps.append(average_precision_score(rel, sims[q, others]))
        top1.append(rel[int(np.argmax(sims[q, others]))])
    return float(np.mean(aps)), float(np.mean(top1))


def test_retrieval_scores_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 40)
    labels[-1] = 99  # a query without relevant rows is skipped
    desc = rng.normal(size=(40, 8)) + 1.5 * np.eye(8)[labels % 8]
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    scores = retrieval_scores(torch.from_numpy(desc), labels)
    m, r1 = _oracle(desc, labels)
    assert scores["map"] == pytest.approx(m, abs=1e-4)
    assert scores["recall_at_1"] == pytest.approx(r1, abs=1e-4)
    assert 0 < scores["map"] < 1


def test_retrieval_scores_check_inputs():
    with pytest.raises(ShapeError):
        retrieval_scores(torch.rand(4, 2), [0, 0, 1])
    with pytest.raises(OptionError):
        retrieval_scores(torch.rand(3, 2), [0, 1, 2])
