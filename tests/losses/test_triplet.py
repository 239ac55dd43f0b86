"""Batch-hard triplet loss and miner: loop oracle (values, gradients, indices), degenerate batches."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lookalike
from conftest import assert_close, gradcheck
from lookalike.core.errors import (
    DTypeError,
    EmptyInputError,
    OptionError,
    ShapeError,
    ValueRangeError,
)
from lookalike.losses.triplet import (
    BatchHardTripletLoss,
    DegenerateBatchWarning,
    batch_hard_miner,
    batch_hard_triplet_loss,
)

EPS = 1e-6
METRICS = ["euclidean", "sqeuclidean", "cosine"]
# identities (P x K, one singleton label) and the patch layout (anchors then positives, label = point)
LABELS = {
    "identities": torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4]),
    "patches": torch.arange(6).repeat(2),
}


def _data(n: int, d: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)


def _dist(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return 1.0 - (x * y).sum() / (x.norm() * y.norm())
    sq = ((x - y) ** 2).sum()
    return sq if metric == "sqeuclidean" else torch.sqrt(sq + EPS)


def oracle_mine(x, labels, metric="euclidean"):
    """Brute force: for each anchor, loop over all candidates; returns (i, j_pos, k_neg, d_ap, d_an)."""
    out = []
    for i in range(x.shape[0]):
        pos = neg = None
        for j in range(x.shape[0]):
            d = _dist(x[i], x[j], metric)
            if j != i and int(labels[j]) == int(labels[i]):
                if pos is None or d.item() > pos[1].item():
                    pos = (j, d)
            elif int(labels[j]) != int(labels[i]) and (neg is None or d.item() < neg[1].item()):
                neg = (j, d)
        if pos is not None and neg is not None:
            out.append((i, pos[0], neg[0], pos[1], neg[1]))
    return out


def oracle_loss(x, labels, *, margin=0.3, soft=False, metric="euclidean"):
    terms = []
    for _, _, _, d_ap, d_an in oracle_mine(x, labels, metric):
        z = d_ap - d_an
        terms.append(torch.log1p(torch.exp(z)) if soft else torch.clamp(margin + z, min=0.0))
    return torch.stack(terms).mean() if terms else torch.zeros((), dtype=x.dtype)


def _value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, (x,))
    return value.detach(), grad


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("layout", sorted(LABELS))
def test_loss_matches_loop_oracle(metric, soft, layout, device, dtype):
    labels = LABELS[layout]
    x = _data(len(labels), 6, seed=1)
    margin = 0.5 if metric != "cosine" else 0.2
    ref = _value_and_grad(
        lambda t: oracle_loss(t, labels, margin=margin, soft=soft, metric=metric), x
    )
    ours = _value_and_grad(
        lambda t: batch_hard_triplet_loss(
            t, labels.to(device), margin=margin, soft=soft, metric=metric
        ),
        x.to(device, dtype),
    )
    assert ours[0].dtype == dtype and ours[0].shape == ()
    assert ref[0] > 0
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for a, b in zip(ours, ref):
        assert_close(a.cpu().double(), b, dtype=dtype, **tol)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("layout", sorted(LABELS))
def test_miner_matches_loop_oracle(metric, layout):
    labels = LABELS[layout]
    x = _data(len(labels), 6, seed=2)
    a, p, n = batch_hard_miner(x, labels, metric=metric)
    ref = oracle_mine(x, labels, metric)
    assert [t.dtype for t in (a, p, n)] == [torch.int64] * 3
    assert a.tolist() == [r[0] for r in ref]
    # compare distances, not indices, so that exact ties could not break the test
    d = torch.stack([_dist(x[i], x[j], metric) for i, j in zip(a.tolist(), p.tolist())])
    assert_close(d, torch.stack([r[3] for r in ref]))
    d = torch.stack([_dist(x[i], x[j], metric) for i, j in zip(a.tolist(), n.tolist())])
    assert_close(d, torch.stack([r[4] for r in ref]))
    assert bool(
        (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all() and (a != p).all()
    )


def test_miner_skips_anchors_without_positive():
    x = _data(5, 4)
    a, _, _ = batch_hard_miner(x, torch.tensor([0, 0, 1, 2, 2]))
    assert a.tolist() == [0, 1, 3, 4]  # label 1 is a singleton: no positive for anchor 2


def test_singletons_are_left_out_of_the_mean():
    x = _data(5, 4, seed=3)
    labels = torch.tensor([0, 0, 1, 2, 2])
    keep = torch.tensor([0, 1, 3, 4])
    full = batch_hard_triplet_loss(x, labels, margin=2.0)
    assert_close(full, oracle_loss(x, labels, margin=2.0))
    # anchor 2 still acts as a negative for the others, so compare per-term: mean of 4 terms
    terms = [torch.clamp(2.0 + r[3] - r[4], min=0.0) for r in oracle_mine(x, labels)]
    assert len(terms) == len(keep)
    assert_close(full, torch.stack(terms).mean())


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        (torch.zeros(6, dtype=torch.int64), "all labels equal: no negative"),
        (torch.arange(6), "all labels distinct: no positive"),
        (torch.tensor([3]), "batch of one"),
    ],
)
def test_degenerate_batches_give_zero_with_warning(labels, why):
    x = _data(len(labels), 4).requires_grad_(True)
    with pytest.warns(DegenerateBatchWarning):
        loss = batch_hard_triplet_loss(x, labels)
    assert loss.shape == () and loss.item() == 0.0, why
    loss.backward()
    assert torch.count_nonzero(x.grad) == 0
    a, p, n = batch_hard_miner(x, labels)
    assert a.numel() == p.numel() == n.numel() == 0


def test_identical_positives_give_finite_gradients():
    x = _data(4, 4, seed=4)
    x = torch.cat([x, x]).requires_grad_(True)  # every positive is an exact duplicate
    labels = torch.arange(4).repeat(2)
    loss = batch_hard_triplet_loss(x, labels, margin=1.0)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_bad_inputs_raise_typed_errors():
    x = _data(4, 3)
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(EmptyInputError):
        batch_hard_triplet_loss(x[:0], labels[:0])
    with pytest.raises(EmptyInputError):
        batch_hard_miner(x[:, :0], labels)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueRangeError, match="embeddings"):
        batch_hard_triplet_loss(bad, labels)
    with pytest.raises(ValueRangeError):
        batch_hard_miner(bad, labels)
    with pytest.raises(ShapeError, match="labels"):
        batch_hard_triplet_loss(x, labels[:3])
    with pytest.raises(ShapeError, match="embeddings"):
        batch_hard_triplet_loss(x[0], labels)
    with pytest.raises(DTypeError, match="labels"):
        batch_hard_triplet_loss(x, labels.double())
    with pytest.raises(OptionError, match="metric"):
        batch_hard_triplet_loss(x, labels, metric="manhattan")
    with pytest.raises(OptionError, match="margin"):
        batch_hard_triplet_loss(x, labels, margin=-0.1)
    with pytest.raises(OptionError, match="eps"):
        batch_hard_miner(x, labels, eps=-1.0)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
def test_gradcheck_float64(metric, soft):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = _data(6, 4, seed=5) * 1.3
    assert gradcheck(
        lambda t: batch_hard_triplet_loss(t, labels, margin=0.5, soft=soft, metric=metric), x
    )


def test_module_is_registered_and_matches_function():
    crit = lookalike.create("loss", "batch_hard_triplet", margin=0.2, metric="cosine")
    assert isinstance(crit, BatchHardTripletLoss)
    x = _data(8, 4, seed=6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert_close(crit(x, labels), batch_hard_triplet_loss(x, labels, margin=0.2, metric="cosine"))
    assert "cosine" in repr(crit)
    with pytest.raises(OptionError):
        BatchHardTripletLoss(metric="l1")
    with pytest.raises(TypeError):
        BatchHardTripletLoss(0.2)  # keyword-only


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 10),
    n_labels=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    metric=st.sampled_from(METRICS),
    soft=st.booleans(),
)
def test_property_nonnegative_and_permutation_invariant(n, n_labels, seed, metric, soft):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, n_labels, (n,), generator=gen)
    perm = torch.randperm(n, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        loss = batch_hard_triplet_loss(x, labels, soft=soft, metric=metric)
        permuted = batch_hard_triplet_loss(x[perm], labels[perm], soft=soft, metric=metric)
    assert loss >= 0
    assert_close(permuted, loss)
    if soft:  # softplus > 0 whenever some anchor is valid
        assert (loss > 0) == (batch_hard_miner(x, labels)[0].numel() > 0)
