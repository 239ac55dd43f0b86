"""HardNet loss: loop oracle (values and gradients), duplicate rule, labels, degenerate batches."""

from __future__ import annotations

import math
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
from lookalike.losses.hardnet import DegenerateBatchWarning, HardNetLoss, hardnet_loss

EPS = 1e-6


def _pair(n: int, d: int, seed: int = 0, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    p = F.normalize(a + noise * torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    return a, p


def _d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((x - y) ** 2).sum() + EPS)


def oracle(a, p, labels=None, *, margin=1.0, loss_type="triplet_margin", swap=False, thr=0.008):
    """Brute force: Python loops over anchors and candidates, the original HardNet formulas."""
    n = a.shape[0]
    terms = []
    for i in range(n):
        d_pos = _d(a[i], p[i])
        best = None
        for j in range(n):
            if j == i or (labels is not None and int(labels[i]) == int(labels[j])):
                continue
            candidates = [_d(a[i], p[j])] + ([_d(a[j], p[i])] if swap else [])
            for c in candidates:
                if c.item() >= thr and (best is None or c.item() < best.item()):
                    best = c
        if best is None:
            continue
        if loss_type == "triplet_margin":
            terms.append(torch.clamp(margin + d_pos - best, min=0.0))
        elif loss_type == "softmin":  # the original's "softmax" form, without its 1e-8
            exp_pos = torch.exp(2.0 - d_pos)
            terms.append(-torch.log(exp_pos / (exp_pos + torch.exp(2.0 - best))))
        else:
            terms.append(torch.clamp(margin - best, min=0.0) + d_pos)
    if not terms:
        return torch.zeros((), dtype=a.dtype)
    return torch.stack(terms).mean()


def _value_and_grads(fn, a, p):
    a = a.detach().clone().requires_grad_(True)
    p = p.detach().clone().requires_grad_(True)
    value = fn(a, p)
    ga, gp = torch.autograd.grad(value, (a, p), allow_unused=True)
    ga = torch.zeros_like(a) if ga is None else ga
    gp = torch.zeros_like(p) if gp is None else gp
    return value.detach(), ga, gp


def _compare(ours, ref, dtype):
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for x, y in zip(ours, ref):
        assert_close(x.cpu().double(), y, dtype=dtype, **tol)


@pytest.mark.parametrize("loss_type", ["triplet_margin", "softmin", "contrastive"])
@pytest.mark.parametrize("swap", [False, True])
def test_matches_loop_oracle(loss_type, swap, device, dtype):
    a, p = _pair(12, 8, seed=1)
    ref = _value_and_grads(lambda x, y: oracle(x, y, loss_type=loss_type, swap=swap), a, p)
    ours = _value_and_grads(
        lambda x, y: hardnet_loss(x, y, loss_type=loss_type, anchor_swap=swap),
        a.to(device, dtype),
        p.to(device, dtype),
    )
    assert ours[0].dtype == dtype and ours[0].shape == ()
    assert ref[0] > 0
    _compare(ours, ref, dtype)


@pytest.mark.parametrize("margin", [0.0, 0.5, 2.0])
def test_margin_matches_oracle(margin):
    a, p = _pair(10, 6, seed=2)
    ours = hardnet_loss(a, p, margin=margin, anchor_swap=True)
    assert_close(ours, oracle(a, p, margin=margin, swap=True))


@pytest.mark.parametrize("swap", [False, True])
def test_labels_exclude_same_label_negatives(swap):
    a, p = _pair(12, 8, seed=3)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5])
    ours = _value_and_grads(lambda x, y: hardnet_loss(x, y, labels, anchor_swap=swap), a, p)
    ref = _value_and_grads(lambda x, y: oracle(x, y, labels, swap=swap), a, p)
    _compare(ours, ref, torch.float64)
    # unique labels are the same as no labels
    unique = hardnet_loss(a, p, torch.arange(12), anchor_swap=swap)
    assert_close(unique, hardnet_loss(a, p, anchor_swap=swap))


def test_labels_change_the_hardest_negative():
    a, p = _pair(6, 4, seed=4)
    p[1] = F.normalize(a[0] + 0.05, dim=0)  # p_1 is a very hard negative for a_0 ...
    free = hardnet_loss(a, p)
    same = hardnet_loss(a, p, torch.tensor([0, 0, 1, 2, 3, 4]))  # ... unless same label
    assert same < free
    assert_close(same, oracle(a, p, torch.tensor([0, 0, 1, 2, 3, 4])))


def test_exact_duplicate_is_not_a_negative():
    a, p = _pair(8, 8, seed=5)
    p[5] = a[3]  # the same patch twice in the batch: d(a_3, p_5) = sqrt(eps) = 0.001
    with_rule = hardnet_loss(a, p)
    without = hardnet_loss(a, p, duplicate_threshold=0.0)
    assert_close(with_rule, oracle(a, p))
    assert_close(without, oracle(a, p, thr=0.0))
    # without the rule the duplicate is the hardest negative of a_3: a term close to 1 + d_pos
    assert without - with_rule > 0.5 / 8


@pytest.mark.parametrize(("offset", "excluded"), [(0.005, True), (0.02, False)])
def test_near_duplicate_threshold_0_008(offset, excluded):
    a, p = _pair(6, 8, seed=6)
    direction = F.normalize(torch.randn(8, dtype=torch.float64), dim=0)
    p[4] = a[2] + offset * direction  # distance ~offset to a_2
    dist = math.sqrt(offset**2 + EPS)
    assert (dist < 0.008) == excluded
    default = hardnet_loss(a, p)
    assert_close(default, oracle(a, p))
    if excluded:
        assert_close(default, oracle(a, p, thr=dist + 1e-9))
        assert default < hardnet_loss(a, p, duplicate_threshold=0.0)
    else:
        assert_close(default, hardnet_loss(a, p, duplicate_threshold=0.0))


def test_anchor_without_valid_negative_is_left_out_of_the_mean():
    a, p = _pair(2, 4, seed=7)
    p[1] = a[0]  # row 0: its only candidate is a duplicate; row 1 keeps d(a_1, p_0)
    per_row_1 = torch.clamp(1.0 + _d(a[1], p[1]) - _d(a[1], p[0]), min=0.0)
    assert_close(hardnet_loss(a, p), per_row_1)
    assert_close(hardnet_loss(a, p), oracle(a, p))


def _assert_degenerate_zero(fn, *inputs):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    with pytest.warns(DegenerateBatchWarning):
        loss = fn(*inputs)
    assert loss.shape == () and loss.item() == 0.0
    loss.backward()
    for x in inputs:
        assert x.grad is not None and torch.count_nonzero(x.grad) == 0


def test_batch_of_one_is_zero_with_warning():
    a, p = _pair(1, 8)
    _assert_degenerate_zero(hardnet_loss, a, p)


@pytest.mark.parametrize("loss_type", ["triplet_margin", "softmin", "contrastive"])
def test_all_labels_equal_is_zero_with_warning(loss_type):
    a, p = _pair(5, 8)
    labels = torch.full((5,), 7)
    _assert_degenerate_zero(lambda x, y: hardnet_loss(x, y, labels, loss_type=loss_type), a, p)


def test_all_rows_duplicates_is_zero_with_warning():
    a = F.normalize(torch.ones(4, 8, dtype=torch.float64), dim=1)
    _assert_degenerate_zero(lambda x, y: hardnet_loss(x, y, anchor_swap=True), a, a.clone())


def test_no_warning_on_a_normal_batch():
    a, p = _pair(6, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateBatchWarning)
        hardnet_loss(a, p)


def test_bad_inputs_raise_typed_errors():
    a, p = _pair(4, 8)
    with pytest.raises(EmptyInputError):
        hardnet_loss(a[:0], p[:0])
    with pytest.raises(EmptyInputError):
        hardnet_loss(a[:, :0], p[:, :0])
    bad = a.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueRangeError, match="anchors"):
        hardnet_loss(bad, p)
    with pytest.raises(ValueRangeError, match="positives"):
        hardnet_loss(a, bad.clone().fill_(float("inf")))
    with pytest.raises(ShapeError, match="positives"):
        hardnet_loss(a, p[:3])
    with pytest.raises(ShapeError, match="positives"):
        hardnet_loss(a, p[:, :5])
    with pytest.raises(ShapeError):
        hardnet_loss(a[0], p[0])
    with pytest.raises(ShapeError, match="labels"):
        hardnet_loss(a, p, torch.arange(3))
    with pytest.raises(DTypeError, match="labels"):
        hardnet_loss(a, p, torch.arange(4.0))
    with pytest.raises(OptionError, match="loss_type"):
        hardnet_loss(a, p, loss_type="softmax")
    with pytest.raises(OptionError, match="margin"):
        hardnet_loss(a, p, margin=-1.0)
    with pytest.raises(OptionError, match="duplicate_threshold"):
        hardnet_loss(a, p, duplicate_threshold=-0.1)
    with pytest.raises(OptionError, match="eps"):
        hardnet_loss(a, p, eps=-1e-6)


@pytest.mark.parametrize("loss_type", ["triplet_margin", "softmin", "contrastive"])
def test_gradcheck_float64(loss_type):
    a, p = _pair(6, 4, seed=8)
    assert gradcheck(lambda x, y: hardnet_loss(x, y, loss_type=loss_type, anchor_swap=True), a, p)


def test_module_is_registered_and_matches_function():
    crit = lookalike.create(
        "loss", "hardnet", margin=0.7, loss_type="contrastive", anchor_swap=True
    )
    assert isinstance(crit, HardNetLoss)
    a, p = _pair(8, 8, seed=9)
    labels = torch.tensor([0, 1, 1, 2, 3, 4, 5, 6])
    expected = hardnet_loss(a, p, labels, margin=0.7, loss_type="contrastive", anchor_swap=True)
    assert_close(crit(a, p, labels), expected)
    assert "contrastive" in repr(crit)
    with pytest.raises(OptionError):
        HardNetLoss(loss_type="nope")
    with pytest.raises(TypeError):
        HardNetLoss(1.0)  # keyword-only


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 9),
    d=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    loss_type=st.sampled_from(["triplet_margin", "softmin", "contrastive"]),
    swap=st.booleans(),
)
def test_property_nonnegative_and_permutation_invariant(n, d, seed, loss_type, swap):
    a, p = _pair(n, d, seed=seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        loss = hardnet_loss(a, p, loss_type=loss_type, anchor_swap=swap)
        permuted = hardnet_loss(a[perm], p[perm], loss_type=loss_type, anchor_swap=swap)
    assert loss >= 0
    assert_close(permuted, loss)
