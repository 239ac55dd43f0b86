"""k-reciprocal re-ranking against the published algorithm written as a dense loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError
from lookalike.index.rerank import k_reciprocal_rerank
from reid.reference import rerank_loop, torchreid_module


def _features(seed, q=12, g=40, d=8, ids=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, d))
    x = centres[rng.integers(0, ids, q + g)] + 0.7 * rng.normal(size=(q + g, d))
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    return dist[:q, q:], dist[:q, :q], dist[q:, q:]


@pytest.mark.parametrize(
    ("seed", "k1", "k2", "lam"), [(0, 20, 6, 0.3), (1, 6, 3, 0.0), (2, 4, 1, 0.5), (3, 9, 2, 1.0)]
)
def test_equals_the_published_algorithm(seed, k1, k2, lam):
    q_g, q_q, g_g = _features(seed)
    expected = rerank_loop(q_g, q_q, g_g, k1, k2, lam)
    out = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert out.dtype == torch.float32 and tuple(out.shape) == q_g.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-6)


def test_squared_inputs_give_the_same_result():
    q_g, q_q, g_g = _features(4)
    plain = k_reciprocal_rerank(q_g, q_q, g_g, k1=8, k2=3)
    squared = k_reciprocal_rerank(q_g**2, q_q**2, g_g**2, k1=8, k2=3, squared=True)
    np.testing.assert_allclose(plain.numpy(), squared.numpy(), atol=1e-6)


def test_equals_torchreid_re_ranking():
    module = torchreid_module("utils/rerank.py")
    if module is None:
        pytest.skip(
            "torchreid is not installed (optional oracle; the loop oracle above always runs)"
        )
    q_g, q_q, g_g = _features(5, q=15, g=60)
    # torchreid squares its inputs as the paper does with Euclidean distances.
    theirs = module.re_ranking(q_g, q_q, g_g, k1=10, k2=4, lambda_value=0.3)
    ours = k_reciprocal_rerank(q_g, q_q, g_g, k1=10, k2=4, lambda_value=0.3)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_bad_inputs():
    q_g, q_q, g_g = _features(0, q=4, g=10)
    with pytest.raises(ShapeError):
        k_reciprocal_rerank(q_g, q_q[:3], g_g)
    with pytest.raises(ShapeError):
        k_reciprocal_rerank(q_g, q_q, g_g[:, :9])
    with pytest.raises(ValueRangeError):
        k_reciprocal_rerank(np.full_like(q_g, np.nan), q_q, g_g, k1=4)
    with pytest.raises(ValueRangeError):
        k_reciprocal_rerank(q_g, -q_q, g_g, k1=4)
    with pytest.raises(ValueRangeError):
        k_reciprocal_rerank(q_g.astype(np.int64), q_q, g_g, k1=4)
    with pytest.raises(OptionError):
        k_reciprocal_rerank(q_g, q_q, g_g, k1=14)
    with pytest.raises(OptionError):
        k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(OptionError):
        k_reciprocal_rerank(q_g, q_q, g_g, k2=0)
    with pytest.raises(EmptyInputError):
        k_reciprocal_rerank(np.zeros((0, 10)), np.zeros((0, 0)), g_g)
