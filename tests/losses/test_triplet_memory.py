"""Batch-hard triplet with reference rows and the cross-batch memory (``memory=``).

Oracles: a loop over anchors written from the definition (values and, through autograd, gradients)
and pytorch-metric-learning's ``CrossBatchMemory`` around its ``BatchHardMiner`` +
``TripletMarginLoss`` fed the same batches (values).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lookalike
from lookalike.core.errors import DTypeError, OptionError, ShapeError
from lookalike.losses._memory import EmbeddingMemory
from lookalike.losses.triplet import (
    BatchHardTripletLoss,
    DegenerateBatchWarning,
    batch_hard_triplet_loss,
)


def _loop(x, labels, ref, ref_labels, margin, soft, eps):
    """The definition, anchor by anchor: hardest positive / negative among batch (not itself) + refs."""
    cand = torch.cat([x, ref])
    cand_labels = torch.cat([labels, ref_labels]).tolist()
    terms = []
    for i in range(x.shape[0]):
        pos, neg = [], []
        for j in range(cand.shape[0]):
            if j == i:
                continue
            d = torch.sqrt(((x[i] - cand[j]) ** 2).sum() + eps)
            (pos if cand_labels[j] == int(labels[i]) else neg).append(d)
        if pos and neg:
            gap = torch.stack(pos).max() - torch.stack(neg).min()
            terms.append(F.softplus(gap) if soft else F.relu(margin + gap))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("margin, soft", [(0.3, False), (0.0, True)])
def test_reference_rows_match_a_loop_over_anchors(seed, margin, soft):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (10,), generator=gen)
    ref_labels = torch.randint(0, 6, (15,), generator=gen)
    base = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    ref = torch.randn(15, 5, generator=gen, dtype=torch.float64)
    x_ours, x_loop = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    ours = batch_hard_triplet_loss(
        x_ours, labels, margin=margin, soft=soft, ref_embeddings=ref, ref_labels=ref_labels
    )
    loop = _loop(x_loop, labels, ref, ref_labels, margin, soft, 1e-6)
    torch.testing.assert_close(ours, loop, rtol=1e-10, atol=1e-12)
    ours.backward()
    loop.backward()
    torch.testing.assert_close(x_ours.grad, x_loop.grad, rtol=1e-8, atol=1e-10)


def test_reference_rows_give_anchors_a_positive_the_batch_lacks():
    """Every id once in the batch: no anchor alone; with a memory holding the ids, all anchors."""
    x = torch.tensor([[0.0], [4.0]])
    labels = torch.tensor([0, 1])
    with pytest.warns(DegenerateBatchWarning):
        assert batch_hard_triplet_loss(x, labels).item() == 0.0
    ref, ref_labels = torch.tensor([[1.0], [3.5]]), torch.tensor([0, 1])
    value = batch_hard_triplet_loss(x, labels, margin=1.0, eps=0.0, ref_embeddings=ref,
                                    ref_labels=ref_labels)  # fmt: skip
    # anchor 0: d_ap = 1 (ref 0), d_an = 3.5 (ref 1) -> 0; anchor 1: d_ap = 0.5, d_an = 3 (ref 0) -> 0
    assert value.item() == 0.0
    value = batch_hard_triplet_loss(x, labels, margin=3.0, eps=0.0, ref_embeddings=ref,
                                    ref_labels=ref_labels)  # fmt: skip
    assert value.item() == pytest.approx(((3 + 1 - 3.5) + (3 + 0.5 - 3)) / 2)


def test_empty_reference_rows_change_nothing():
    gen = torch.Generator().manual_seed(0)
    x, labels = torch.randn(8, 4, generator=gen), torch.arange(4).repeat(2)
    plain = batch_hard_triplet_loss(x, labels, soft=True)
    empty = batch_hard_triplet_loss(x, labels, soft=True, ref_embeddings=torch.zeros(0, 4),
                                    ref_labels=torch.zeros(0, dtype=torch.int64))  # fmt: skip
    assert torch.equal(plain, empty)


def test_reference_row_errors():
    x, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(OptionError, match="both or neither"):
        batch_hard_triplet_loss(x, labels, ref_embeddings=torch.randn(2, 3))
    with pytest.raises(ShapeError, match="ref_embeddings"):
        batch_hard_triplet_loss(x, labels, ref_embeddings=torch.randn(2, 5),
                                ref_labels=torch.tensor([0, 1]))  # fmt: skip
    with pytest.raises(ShapeError, match="ref_labels"):
        batch_hard_triplet_loss(x, labels, ref_embeddings=torch.randn(2, 3),
                                ref_labels=torch.tensor([0, 1, 2]))  # fmt: skip
    with pytest.raises(DTypeError, match="ref_labels"):
        batch_hard_triplet_loss(x, labels, ref_embeddings=torch.randn(2, 3),
                                ref_labels=torch.tensor([0.0, 1.0]))  # fmt: skip


def _batches(count, n=8, dim=6, ids=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        labels = torch.randint(0, ids, (n,), generator=gen)
        out.append((F.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64)), labels))
    return out


@pytest.mark.parametrize("margin, soft", [(0.2, False), (0.0, True)])
def test_memory_term_matches_pml_cross_batch_memory(margin, soft):
    """Ours = batch term + memory term; PML's CrossBatchMemory (memory M + N incl. the current batch,
    self-comparisons removed) computes the memory term alone."""
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import CrossBatchMemory, TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer

    assert pml.__version__
    n, dim, mem = 8, 6, 20
    distance = LpDistance(normalize_embeddings=False, p=2, power=1)
    inner = TripletMarginLoss(margin=margin, distance=distance, reducer=MeanReducer(),
                              smooth_loss=soft)  # fmt: skip
    ref = CrossBatchMemory(inner, dim, memory_size=mem + n, miner=BatchHardMiner(distance=distance))
    ref.double()
    ours = BatchHardTripletLoss(margin=margin, soft=soft, eps=0.0, memory=mem, embedding_dim=dim)
    ours.double()
    for step, (x, labels) in enumerate(_batches(7)):
        batch = batch_hard_triplet_loss(x, labels, margin=margin, soft=soft, eps=0.0)
        total = ours(x, labels)
        expected = ref(x, labels)
        if step == 0:  # our memory is empty: the batch term alone
            assert torch.equal(total, batch)
        else:
            torch.testing.assert_close(total - batch, expected, rtol=1e-9, atol=1e-12)
    assert len(ours.bank) == mem and int(ours.calls) == 7


def test_memory_start_weight_and_eval_mode():
    batches = _batches(5)
    plain = BatchHardTripletLoss(soft=True)
    xbm = BatchHardTripletLoss(soft=True, memory=12, memory_start=2, memory_weight=0.5,
                               embedding_dim=6)  # fmt: skip
    full = BatchHardTripletLoss(soft=True, memory=12, embedding_dim=6)
    for step, (x, labels) in enumerate(batches):
        x = x.float()
        p, w, f = plain(x, labels), xbm(x, labels), full(x, labels)
        if step < 2:  # memory_start = 2: the first two calls are the batch term alone
            assert torch.equal(w, p)
        else:  # half the memory term (both memories hold the same rows)
            torch.testing.assert_close(w - p, 0.5 * (f - p))
            assert (f - p).item() > 0
    xbm.eval()
    before = xbm.bank.embeddings.clone(), int(xbm.bank.count), int(xbm.calls)
    x, labels = batches[0]
    assert torch.equal(xbm(x.float(), labels), plain(x.float(), labels))
    assert torch.equal(xbm.bank.embeddings, before[0])
    assert (int(xbm.bank.count), int(xbm.calls)) == before[1:]


def test_memory_term_backpropagates_after_the_memory_is_updated():
    """The memory is written in place after the loss: the graph must hold a copy of it."""
    crit = BatchHardTripletLoss(soft=True, memory=16, embedding_dim=6)
    for x, labels in _batches(3):
        x = x.float().requires_grad_(True)
        crit(x, labels).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_memory_state_dict_round_trip_continues_identically():
    batches = [(x.float(), y) for x, y in _batches(6)]
    a = BatchHardTripletLoss(soft=True, memory=10, memory_start=1, embedding_dim=6)
    for x, labels in batches[:3]:
        a(x, labels)
    state = a.state_dict()
    assert set(state) == {"calls", "bank.embeddings", "bank.labels", "bank.count"}
    b = lookalike.create("loss", "batch_hard_triplet", soft=True, memory=10, memory_start=1,
                         embedding_dim=6)  # fmt: skip
    b.load_state_dict(state)
    for x, labels in batches[3:]:
        assert torch.equal(a(x, labels), b(x, labels))
    # without a memory the loss has no state, as before (old checkpoints load)
    assert BatchHardTripletLoss(embedding_dim=6).state_dict() == {}


def test_embedding_memory_keeps_the_last_rows_in_a_ring():
    bank = EmbeddingMemory(size=5, dim=1)
    assert len(bank) == 0 and bank.contents()[0].shape == (0, 1)
    bank.add(torch.arange(3.0)[:, None], torch.arange(3))
    bank.add(torch.arange(3.0, 7.0)[:, None], torch.arange(3, 7))
    rows, labels = bank.contents()
    assert len(bank) == 5 and int(bank.count) == 7
    assert sorted(rows[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert torch.equal(rows[:, 0].long(), labels)
    bank.add(torch.arange(10.0, 18.0)[:, None], torch.arange(10, 18))  # more rows than slots
    rows, labels = bank.contents()
    assert sorted(labels.tolist()) == [13, 14, 15, 16, 17] and int(bank.count) == 15
    assert torch.equal(rows[:, 0].long(), labels)


def test_memory_option_errors():
    with pytest.raises(OptionError, match="embedding_dim"):
        BatchHardTripletLoss(memory=8)
    with pytest.raises(OptionError, match="memory"):
        BatchHardTripletLoss(memory=-1, embedding_dim=4)
    with pytest.raises(OptionError, match="memory_start"):
        BatchHardTripletLoss(memory=8, memory_start=1.5, embedding_dim=4)
    with pytest.raises(OptionError, match="memory_weight"):
        BatchHardTripletLoss(memory=8, memory_weight=-1.0, embedding_dim=4)
    crit = BatchHardTripletLoss(memory=8, embedding_dim=4)
    with pytest.raises(ShapeError, match=r"\(N, 4\)"):
        crit(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
