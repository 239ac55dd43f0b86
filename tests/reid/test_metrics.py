"""Re-ID metrics against a per-query loop, torchreid's own evaluation and a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError
from lookalike.eval.metrics.reid import reid_metrics, single_shot_cmc
from reid.reference import market_loop, single_shot_loop, torchreid_module


def _random_case(seed, q=40, g=120, ids=15, cams=4):
    rng = np.random.default_rng(seed)
    dist = rng.random((q, g)).astype(np.float32)
    qids, gids = rng.integers(0, ids + 3, q), rng.integers(0, ids, g)  # some ids not in the gallery
    qcams, gcams = rng.integers(0, cams, q), rng.integers(0, cams, g)
    return dist, qids, gids, qcams, gcams


def test_toy_case_by_hand():
    # Query 0 (id 7, cam 0): sorted gallery 1(id 7, cam 0: removed), 0 (id 3), 2 (id 7), 3 (id 7).
    #   kept list: id3, id7, id7 -> first hit at rank 2, AP = (1/2 + 2/3) / 2, INP = 2/3.
    # Query 1 (id 3, cam 1): sorted 0 (id 3, cam 2) first -> rank 1, AP 1, INP 1.
    dist = [[0.2, 0.1, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]]
    s = reid_metrics(dist, [7, 3], [3, 7, 7, 7], [0, 1], [2, 0, 1, 2], max_rank=4)
    np.testing.assert_allclose(s.cmc, [0.5, 1.0, 1.0, 1.0])
    assert s.mean_ap == pytest.approx(((0.5 + 2 / 3) / 2 + 1.0) / 2)
    assert s.mean_inp == pytest.approx((2 / 3 + 1.0) / 2)
    assert s.num_valid_queries == 2
    assert s.as_dict(ranks=(1, 2)) == pytest.approx(
        {"rank1": 0.5, "rank2": 1.0, "mAP": s.mean_ap, "mINP": s.mean_inp}
    )


@pytest.mark.parametrize("seed", range(4))
def test_equals_per_query_loop(seed):
    case = _random_case(seed)
    cmc, ap, inp, valid = market_loop(*case, max_rank=20)
    s = reid_metrics(*case, max_rank=20, chunk_size=7)
    np.testing.assert_allclose(s.cmc, cmc, atol=1e-12)
    assert s.mean_ap == pytest.approx(ap, abs=1e-12)
    assert s.mean_inp == pytest.approx(inp, abs=1e-12)
    assert s.num_valid_queries == valid < 40  # some queries have no match left: skipped


@pytest.mark.parametrize("seed", range(3))
def test_equals_torchreid_eval_market1501(seed):
    rank = torchreid_module("metrics/rank.py")
    if rank is None:
        pytest.skip(
            "torchreid is not installed (optional oracle; the loop oracle above always runs)"
        )
    dist, qids, gids, qcams, gcams = _random_case(seed, q=60, g=300, ids=30)
    cmc, m_ap = rank.eval_market1501(dist, qids, gids, qcams, gcams, 50)
    s = reid_metrics(torch.from_numpy(dist), qids, gids, qcams, gcams, max_rank=50)
    np.testing.assert_allclose(s.cmc, cmc, atol=1e-6)
    assert s.mean_ap == pytest.approx(m_ap, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_single_shot_equals_loop_with_the_same_draws(seed):
    case = _random_case(seed, q=12, g=50, ids=6, cams=3)
    expected = single_shot_loop(*case, max_rank=10, repeats=4, seed=seed)
    s = single_shot_cmc(*case, max_rank=10, repeats=4, seed=seed)
    np.testing.assert_allclose(s.cmc, expected, atol=1e-12)
    assert s.mean_ap == pytest.approx(reid_metrics(*case, max_rank=10).mean_ap)
    assert np.isnan(s.mean_inp) and "mINP" not in s.as_dict()


def _viper_like(seed, n=30):
    rng = np.random.default_rng(seed)
    return rng.random((n, n)), np.arange(n), rng.permutation(n), np.zeros(n, int), np.ones(n, int)


def test_single_shot_with_one_image_per_id_is_the_plain_cmc():
    case = _viper_like(0)
    np.testing.assert_allclose(
        single_shot_cmc(*case, max_rank=20, repeats=3).cmc, reid_metrics(*case, max_rank=20).cmc
    )


def test_single_shot_equals_torchreid_eval_cuhk03():
    rank = torchreid_module("metrics/rank.py")
    if rank is None:
        pytest.skip("torchreid is not installed (optional oracle)")
    if not hasattr(np, "bool"):
        np.bool = bool  # torchreid's eval_cuhk03 still uses the removed alias
    # One image per gallery identity: torchreid's draws are all the same, the result deterministic.
    case = _viper_like(1, n=40)
    cmc, m_ap = rank.eval_cuhk03(*case, 20)
    s = single_shot_cmc(*case, max_rank=20)
    np.testing.assert_allclose(s.cmc, cmc, atol=1e-6)
    assert s.mean_ap == pytest.approx(m_ap)
    # Several images per identity: torchreid's random mean (10 draws x 30 runs) agrees statistically.
    case = _random_case(3, q=30, g=90, ids=10, cams=3)
    np.random.seed(0)
    theirs = np.mean([rank.eval_cuhk03(*case, 10)[0] for _ in range(30)], 0)
    ours = single_shot_cmc(*case, max_rank=10, repeats=300).cmc
    np.testing.assert_allclose(ours, theirs, atol=0.03)


def test_bad_inputs():
    dist, qids, gids, qcams, gcams = _random_case(0, q=5, g=8)
    with pytest.raises(ShapeError):
        reid_metrics(dist, qids[:4], gids, qcams, gcams)
    with pytest.raises(ShapeError):
        reid_metrics(dist[0], qids, gids, qcams, gcams)
    with pytest.raises(ValueRangeError):
        reid_metrics(np.full((5, 8), np.nan), qids, gids, qcams, gcams)
    with pytest.raises(ValueRangeError):
        reid_metrics(dist, qids.astype(float), gids, qcams, gcams)
    with pytest.raises(OptionError):
        reid_metrics(dist, qids, gids, qcams, gcams, max_rank=0)
    with pytest.raises(OptionError):
        single_shot_cmc(dist, qids, gids, qcams, gcams, repeats=0)
    with pytest.raises(EmptyInputError):  # every query's matches are in its own camera only
        reid_metrics(dist, np.zeros(5, int), np.zeros(8, int), np.zeros(5, int), np.zeros(8, int))
    with pytest.raises(EmptyInputError):
        reid_metrics(np.zeros((0, 8)), [], gids, [], gcams)


@pytest.mark.parametrize("seed", range(3))
def test_ties_are_broken_by_gallery_index(seed):
    dist, qids, gids, qcams, gcams = _random_case(seed)
    dist = np.floor(dist * 4)  # four distinct values: ties everywhere
    cmc, ap, inp, _ = market_loop(dist, qids, gids, qcams, gcams, max_rank=20)
    s = reid_metrics(dist, qids, gids, qcams, gcams, max_rank=20)
    np.testing.assert_allclose(s.cmc, cmc, atol=1e-12)
    assert (s.mean_ap, s.mean_inp) == pytest.approx((ap, inp), abs=1e-12)
