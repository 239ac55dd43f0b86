"""``batch_hard_triplet`` against pytorch-metric-learning's BatchHardMiner + TripletMarginLoss.

An independent implementation: PML mines on its own distance matrix (``torch.cdist``) and reduces
with a plain mean over the mined triplets (``MeanReducer``). Values and gradients agree to float64
rounding for Euclidean distances (ours with ``eps=0``), hinge and soft margin.
"""

from __future__ import annotations

import pytest
import torch

from lookalike.losses.triplet import batch_hard_triplet_loss

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning.distances import LpDistance  # noqa: E402
from pytorch_metric_learning.losses import TripletMarginLoss  # noqa: E402
from pytorch_metric_learning.miners import BatchHardMiner  # noqa: E402
from pytorch_metric_learning.reducers import MeanReducer  # noqa: E402


def _pml(x, labels, margin, soft):
    distance = LpDistance(normalize_embeddings=False, p=2, power=1)
    triplets = BatchHardMiner(distance=distance)(x, labels)
    loss = TripletMarginLoss(
        margin=margin, distance=distance, reducer=MeanReducer(), smooth_loss=soft
    )
    return loss(x, labels, triplets)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("margin, soft", [(0.0, False), (0.3, False), (1.0, False), (0.0, True)])
def test_batch_hard_triplet_matches_pml(seed, margin, soft):
    gen = torch.Generator().manual_seed(seed)
    p, k = 3 + seed, 2 + seed % 3
    labels = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=gen)]
    base = torch.randn(p * k, 8, generator=gen, dtype=torch.float64)
    x_ours = base.clone().requires_grad_(True)
    x_ref = base.clone().requires_grad_(True)
    ours = batch_hard_triplet_loss(x_ours, labels, margin=margin, soft=soft, eps=0.0)
    ref = _pml(x_ref, labels, margin, soft)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-8, atol=1e-10)
