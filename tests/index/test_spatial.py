"""Spatial verification: a hand-built case on bundled photos and their synthetic warps, inlier counts
equal to the ImageMatcher on each pair, features computed once per image, the score convention, and
the a-priori inlier threshold checked on held-out photos."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import OptionError
from lookalike.data.bundled import HELD_OUT_PHOTOS, bundled_photos
from lookalike.geometry import WarpRanges, random_homography, warp_image
from lookalike.index.rerankers import RerankContext, Shortlist
from lookalike.index.spatial import MIN_INLIERS, SpatialVerification, spatial_scores
from lookalike.matching import ImageMatcher


def _small(rgb: np.ndarray, side: int = 192) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


@functools.cache
def _photos() -> dict[str, np.ndarray]:
    return {p.name: _small(p.rgb) for p in bundled_photos(list(HELD_OUT_PHOTOS))}


def _warp(rgb: np.ndarray, seed: int) -> np.ndarray:
    ranges = WarpRanges(rotation=(-0.3, 0.3), scale=(0.8, 1.2), perspective=(-0.1, 0.1))
    H = random_homography(np.random.default_rng(seed), rgb.shape[:2], ranges)
    return warp_image(rgb, H)


def _case():
    """Queries chelsea and coffee; database: gravel (distractor), a warp of coffee, a warp of
    chelsea. The global rows put the distractor first for both queries, the wrong photo second."""
    p = _photos()
    queries = [p["chelsea"], p["coffee"]]
    database = [p["gravel"], _warp(p["coffee"], 1), _warp(p["chelsea"], 2)]
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    db = torch.nn.functional.normalize(
        torch.tensor([[1.0, 1.0, 0.0], [0.9, 0.1, 1.0], [0.1, 0.9, 1.0]]), dim=1
    )
    return Shortlist.search(q, db), RerankContext(query_images=queries, database_images=database)


def test_spatial_verification_moves_the_true_match_to_the_top():
    shortlist, context = _case()
    assert shortlist.ranked.tolist() == [[0, 1, 2], [0, 2, 1]]  # distractor first, true match last
    spatial = lookalike.create("reranker", "spatial")
    out = spatial(shortlist, context)
    assert out.ranked[:, 0].tolist() == [2, 1]
    inliers = spatial.last_inliers
    assert inliers[0, 2] >= MIN_INLIERS and inliers[1, 2] >= MIN_INLIERS
    assert inliers[:, :2].max() < MIN_INLIERS  # the distractor and the other photo stay unverified
    # unverified candidates keep their global order behind the verified one
    assert out.ranked.tolist() == [[2, 0, 1], [1, 0, 2]]
    assert torch.all(out.scores[:, :-1] >= out.scores[:, 1:])
    assert out.scores[0, 0].floor() == inliers[0, 2]


def test_spatial_inliers_equal_the_image_matcher_on_each_pair():
    shortlist, context = _case()
    spatial = SpatialVerification(top_k=3)
    spatial(shortlist, context)
    direct = ImageMatcher("rootsift", max_keypoints=1024, max_size=640, geometry="homography")
    for r in (0, 2):  # query 0 against the distractor and against its true match
        j = int(shortlist.ranked[0, r])
        pair = direct(context.query_images[0], context.database_images[j])
        assert int(spatial.last_inliers[0, r]) == pair.num_inliers, j
    assert int(spatial.last_inliers[0, 2]) >= MIN_INLIERS


def test_top_k_limits_the_verified_candidates():
    shortlist, context = _case()
    spatial = SpatialVerification(top_k=2)
    out = spatial(shortlist, context)
    assert spatial.last_inliers[:, 2].tolist() == [0, 0]  # not matched
    assert out.ranked.tolist() == shortlist.ranked.tolist()  # the true match was beyond top 2


def test_features_are_computed_once_per_image(tmp_path, monkeypatch):
    p = _photos()
    files = []
    for i, rgb in enumerate([p["chelsea"], _warp(p["chelsea"], 3), p["coffee"]]):
        files.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(files[-1], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    db = torch.eye(3)
    shortlist = Shortlist.search(db, db, self_index=torch.arange(3), exclude_self=True)
    spatial = SpatialVerification()
    seen: list = []
    original = spatial.matcher.features
    monkeypatch.setattr(
        spatial.matcher, "features", lambda image: seen.append(image) or original(image)
    )
    context = RerankContext(query_images=files, database_images=files)
    out = spatial(shortlist, context)
    assert sorted(seen) == sorted(files)  # 3 images, 6 pairs: each image described once
    assert out.ranked[0, 0] == 1 and out.ranked[1, 0] == 0
    first = spatial.last_inliers.clone()
    again = spatial(shortlist, context)
    assert len(seen) == 3  # a second call reuses the cached features (and counts) of files
    assert torch.equal(spatial.last_inliers, first) and torch.equal(again.ranked, out.ranked)
    spatial.clear_cache()
    spatial(shortlist, context)
    assert len(seen) == 6 and torch.equal(spatial.last_inliers, first)


def test_spatial_scores_convention():
    inliers = torch.tensor([[0, 20, 20, 30, 14], [15, 0, 0, 0, 0]])
    order, scores = spatial_scores(inliers, min_inliers=15)
    assert order.tolist() == [[3, 1, 2, 0, 4], [0, 1, 2, 3, 4]]
    t = torch.tensor([5, 4, 3, 2, 1]) / 10.0  # (K - r) / 2K
    expected = torch.tensor(
        [[30 + t[3], 20 + t[1], 20 + t[2], t[0] - 1, t[4] - 1], [15 + t[0], *(t[1:] - 1)]]
    )
    torch.testing.assert_close(scores, expected.float())


def test_spatial_refuses_missing_images_and_bad_options():
    shortlist, context = _case()
    with pytest.raises(OptionError, match="images"):
        SpatialVerification()(shortlist)
    with pytest.raises(OptionError, match="expected 2 query"):
        SpatialVerification()(
            shortlist, RerankContext(query_images=context.query_images[:1], database_images=[])
        )
    with pytest.raises(OptionError):
        SpatialVerification(top_k=0)
    with pytest.raises(OptionError):
        SpatialVerification(geometry="none")


@pytest.mark.slow
def test_min_inliers_separates_warps_from_other_photos_on_held_out_photos():
    """The a-priori threshold, checked on synthetic warps of the held-out bundled photos only."""
    p = _photos()
    others = [_small(x.rgb) for x in bundled_photos(["camera", "astronaut", "brick"])]
    spatial = SpatialVerification()
    true, false = [], []
    features = {name: spatial.features(rgb) for name, rgb in p.items()}
    others = [spatial.features(x) for x in others]
    for name, rgb in p.items():
        for seed in range(3):
            fw = spatial.features(_warp(rgb, 10 + seed))
            true.append(spatial.inliers(features[name], fw))
            unrelated = [f for n, f in features.items() if n != name] + others
            false += [spatial.inliers(f, fw) for f in unrelated]
    assert min(true) >= MIN_INLIERS > max(false)
