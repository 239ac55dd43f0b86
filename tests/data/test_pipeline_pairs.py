"""Pipeline-cut training pairs: correspondences against a brute-force oracle, the pipeline's own sampler,
the stream (shapes, determinism, resume) and the held-out matching validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.pipeline_pairs import (
    MatchingValidation,
    PipelinePairs,
    held_out_pairs,
    keypoint_correspondences,
    pipeline_patches,
    render_view,
)
from lookalike.geometry import homography_jacobian, project_points
from lookalike.matching.describe import PatchDescriber
from lookalike.matching.keypoints import Keypoints

_IDENTITY_WARP = {
    "rotation": (0.0, 0.0),
    "scale": (1.0, 1.0),
    "anisotropy": (1.0, 1.0),
    "shear": (0.0, 0.0),
    "perspective": (0.0, 0.0),
    "translation": (0.0, 0.0),
}


def _brute_force(k0, k1, H, pix, scale, angle):
    """Candidate pairs by a double loop, then mutual nearest in pixels."""
    n0, n1 = len(k0), len(k1)
    cost = np.full((n0, n1), np.inf)
    for i in range(n0):
        p = project_points(H, k0.xy[i : i + 1].astype(np.float64))[0]
        J = homography_jacobian(H, k0.xy[i : i + 1].astype(np.float64))[0]
        local = np.sqrt(abs(np.linalg.det(J)))
        a = np.radians(k0.angle[i])
        d = J @ np.array([np.cos(a), np.sin(a)])
        mapped = np.degrees(np.arctan2(d[1], d[0])) % 360.0
        for j in range(n1):
            dist = float(np.hypot(*(p - k1.xy[j])))
            ratio = k1.size[j] / (k0.size[i] * local)
            turn = abs((k1.angle[j] - mapped + 180.0) % 360.0 - 180.0)
            if dist <= pix and 1 / scale <= ratio <= scale and turn <= angle:
                cost[i, j] = dist
    pairs = set()
    for i in range(n0):
        j = int(np.argmin(cost[i]))
        if np.isfinite(cost[i, j]) and int(np.argmin(cost[:, j])) == i:
            pairs.add((i, j))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correspondences_match_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    H = np.array([[0.9, -0.3, 12.0], [0.25, 1.1, -4.0], [1e-4, -2e-4, 1.0]])
    n = 60
    xy0 = rng.uniform(0, 60, (n, 2))
    k0 = Keypoints.from_arrays(xy0, size=rng.uniform(2, 8, n), angle=rng.uniform(0, 360, n))
    # image 1: the true keypoints with noise in position, scale and angle, shuffled, plus clutter
    J = homography_jacobian(H, xy0)
    local = np.sqrt(np.abs(np.linalg.det(J)))
    a = np.radians(k0.angle)
    d = np.einsum("nij,nj->ni", J, np.stack([np.cos(a), np.sin(a)], 1))
    xy1 = project_points(H, xy0) + rng.normal(0, 1.5, (n, 2))
    size1 = k0.size * local * np.exp(rng.normal(0, 0.2, n))
    ang1 = np.degrees(np.arctan2(d[:, 1], d[:, 0])) + rng.normal(0, 15, n)
    clutter = rng.uniform(0, 80, (30, 2))
    k1 = Keypoints.from_arrays(
        np.concatenate([xy1, clutter])[perm := rng.permutation(n + 30)],
        size=np.concatenate([size1, rng.uniform(2, 8, 30)])[perm],
        angle=np.concatenate([ang1, rng.uniform(0, 360, 30)])[perm],
    )
    got = keypoint_correspondences(
        k0, k1, H, pixel_tolerance=3.0, scale_tolerance=1.4, angle_tolerance=30.0
    )
    want = _brute_force(k0, k1, H, 3.0, 1.4, 30.0)
    assert {tuple(p) for p in got.tolist()} == want
    assert 10 < len(want) < n
    assert np.all(np.diff(got[:, 0]) > 0)


def test_orientation_follows_the_homography():
    """A 90-degree clockwise turn on screen maps angle 0 to angle 90."""
    H = np.array([[0.0, -1.0, 100.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # x -> (100 - y, x)
    k0 = Keypoints.from_arrays([[10.0, 20.0]], size=[4.0], angle=[0.0])
    for angle, hit in ((90.0, True), (0.0, False), (270.0, False), (110.0, True)):
        k1 = Keypoints.from_arrays([[80.0, 10.0]], size=[4.0], angle=[angle])
        assert len(keypoint_correspondences(k0, k1, H)) == int(hit), angle


def test_correspondences_of_nothing_and_bad_tolerances():
    empty = Keypoints.empty()
    one = Keypoints.from_arrays([[1.0, 1.0]], size=[2.0])
    assert keypoint_correspondences(empty, one, np.eye(3)).shape == (0, 2)
    for kwargs in ({"pixel_tolerance": 0.0}, {"scale_tolerance": 0.5}, {"angle_tolerance": -1}):
        with pytest.raises(OptionError):
            keypoint_correspondences(one, one, np.eye(3), **kwargs)


def test_patches_are_exactly_the_pipelines():
    rng = np.random.default_rng(0)
    image = (rng.random((80, 90)) * 255).astype(np.uint8)
    kps = Keypoints.from_arrays(
        rng.uniform(10, 70, (12, 2)), size=rng.uniform(2, 20, 12), angle=rng.uniform(0, 360, 12)
    )
    net = lookalike.create("descriptor", "hardnet")
    want = PatchDescriber(net, extent=6.0).patches(image, kps)
    got = pipeline_patches(image, kps, patch_size=32, extent=6.0)
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_render_view_without_changes_is_the_quantised_warp():
    gray = np.random.default_rng(1).random((20, 30)).astype(np.float32)
    view = render_view(gray, np.eye(3), np.random.default_rng(0))
    assert np.array_equal(view, (gray * 255 + 0.5).astype(np.uint8))


def test_positives_are_cut_at_the_same_detection():
    """No warp and no photometric change: both views are the same image, so pairs are identical."""
    data = PipelinePairs(
        batch_size=16, photos=["camera"], warp=_IDENTITY_WARP, photometric=None, illumination=None
    )
    anchors, positives = next(iter(data))
    assert anchors.shape == (16, 1, 32, 32)
    assert torch.equal(anchors, positives)


def test_stream_shapes_range_determinism_and_labels():
    kwargs = {"batch_size": 16, "photos": ["coins"], "seed": 3, "buffer_batches": 1}
    a0, p0 = next(iter(PipelinePairs(**kwargs)))
    a1, p1 = next(iter(PipelinePairs(**kwargs)))
    assert torch.equal(a0, a1) and torch.equal(p0, p1)
    assert a0.shape == p0.shape == (16, 1, 32, 32)
    assert float(a0.min()) >= 0 and float(a0.max()) <= 1
    assert not torch.equal(a0, p0)  # other warp, other light
    patches, labels = next(iter(PipelinePairs(output="labels", **kwargs)))
    assert patches.shape == (32, 1, 32, 32) and labels.shape == (32,)
    assert len(set(labels[::2].tolist())) == 16 and torch.equal(labels[::2], labels[1::2])


def test_stream_resumes_exactly():
    data = PipelinePairs(batch_size=8, photos=["camera"], buffer_batches=2)
    stream = data.stream()
    next(stream)
    state = stream.state_dict()
    again = data.stream()
    again.load_state_dict(state)
    assert torch.equal(next(again)[0], next(stream)[0])


def test_patch_geometry_records_the_extent():
    geometry = PipelinePairs(extent=7.5, patch_size=48).patch_geometry()
    assert geometry["patch_extent"] == 7.5 and geometry["patch_size"] == 48
    assert "dog" in geometry["keypoints"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"photos": ["no-such"]}, OptionError),
        ({"photos": ["chelsea"]}, EmptyInputError),
        ({"extent": 0.0}, OptionError),
        ({"scale_tolerance": 0.9}, OptionError),
        ({"output": "triplets"}, OptionError),
        ({"illumination": {"p_shadow": 3.0}}, OptionError),
        ({"illumination_strength": -1.0}, OptionError),
    ],
)
def test_bad_options_raise(kwargs, error):
    with pytest.raises(error):
        PipelinePairs(**kwargs)


def test_held_out_pairs_relight_each_view_deterministically():
    plain = held_out_pairs(photos=("coffee",), strength=0.0)
    lit = held_out_pairs(photos=("coffee",))
    again = held_out_pairs(photos=("coffee",))
    assert [p.name for p in lit] == ["coffee moderate", "coffee strong"]
    for p, q, r in zip(plain, lit, again):
        assert p.image0.dtype == np.uint8 and p.image0.ndim == 2
        assert np.array_equal(q.image0, r.image0) and np.array_equal(q.image1, r.image1)
        assert np.abs(q.image0.astype(int) - p.image0).mean() > 2
        assert np.array_equal(p.H, q.H)


@pytest.mark.slow
def test_matching_validation_scores_the_pipeline():
    val = MatchingValidation(held_out_pairs(photos=("coffee",), strength=0.0), max_keypoints=512)
    scores = val.scores("sift")
    assert 0.3 < scores["mma3"] <= 1.0 and 0.0 <= scores["h3"] <= 1.0
    assert val.evaluate("sift") == scores["mma3"]
    assert val.metric == "mma3" and val.higher_is_better
    with pytest.raises(EmptyInputError):
        MatchingValidation([]).scores("sift")


@pytest.mark.slow
def test_matching_validation_is_the_matching_protocol_per_pair():
    """mma3 is the protocol's mutual-NN MMA (evaluate_pair), not the ratio-tested precision."""
    from lookalike.data.nuisance_pairs import nuisance_pairs
    from lookalike.eval.protocols.homography import evaluate_pair
    from lookalike.matching.pipeline import ImageMatcher

    pairs = nuisance_pairs(photos=("coffee",), nuisances=("zoom", "jpeg"))
    scores = MatchingValidation(pairs, max_keypoints=512).scores("sift")
    matcher = ImageMatcher("sift", max_keypoints=512)
    want = []
    for p in pairs:
        f0, f1 = matcher.features(p.image0), matcher.features(p.image1)
        idx, _ = matcher.match_features(f0, f1, matcher="mnn")
        err = np.linalg.norm(
            project_points(p.H, f0.keypoints.xy[idx[:, 0]]) - f1.keypoints.xy[idx[:, 1]], axis=1
        )
        want.append(float((err <= 3.0).mean()))
        assert evaluate_pair(matcher, f0, f1, p.H, p.image0.shape[:2]).num_matches == len(idx)
    assert scores["mma3"] == pytest.approx(np.mean(want), abs=1e-9)
    assert scores["zoom/mma3"] == pytest.approx(want[0], abs=1e-9)
    assert scores["jpeg/mma3"] == pytest.approx(want[1], abs=1e-9)


def test_pipeline_pairs_validation_uses_nuisance_pairs_by_default():
    data = PipelinePairs(batch_size=8, photos=["camera"], val_seeds=(0,))
    val = data.validation_set()
    assert {p.strength for p in val.pairs} == {"zoom", "viewpoint", "blur", "jpeg", "light"}
    demo = PipelinePairs(
        batch_size=8, photos=["camera"], val_seeds=(0,), val_pairs="demo"
    ).validation_set()
    assert {p.strength for p in demo.pairs} == {"moderate", "strong"}
    with pytest.raises(OptionError, match="val_pairs"):
        PipelinePairs(val_pairs="hard")
