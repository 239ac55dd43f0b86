"""SOS regulariser: loop oracle (values, gradients, neighbourhoods), invariances, degenerate batches."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lookalike
from conftest import assert_close, gradcheck
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError
from lookalike.losses.sos import (
    DegenerateBatchWarning,
    SOSRegularizer,
    knn_union_mask,
    sos_regularizer,
)

EPS = 1e-6


def _pair(n: int, d: int, seed: int = 0, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    p = F.normalize(a + noise * torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    return a, p


def _d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((x - y) ** 2).sum() + EPS)


def _knn(x: torch.Tensor, i: int, k: int) -> set[int]:
    others = [(_d(x[i], x[j]).item(), j) for j in range(x.shape[0]) if j != i]
    return {j for _, j in sorted(others)[:k]}


def oracle_neighbourhoods(a, p, k):
    return [_knn(a, i, k) | _knn(p, i, k) for i in range(a.shape[0])]


def oracle(a, p, k=8):
    """Brute force: R = mean_i sqrt(sum_{j in kNN_A(i) ∪ kNN_P(i)} (d(a_i,a_j) - d(p_i,p_j))²)."""
    terms = []
    for i, hood in enumerate(oracle_neighbourhoods(a, p, k)):
        sq = sum(((_d(a[i], a[j]) - _d(p[i], p[j])) ** 2 for j in sorted(hood)), torch.zeros(()))
        terms.append(torch.sqrt(sq))
    return torch.stack(terms).mean()


def _value_and_grads(fn, a, p):
    a = a.detach().clone().requires_grad_(True)
    p = p.detach().clone().requires_grad_(True)
    value = fn(a, p)
    ga, gp = torch.autograd.grad(value, (a, p))
    return value.detach(), ga, gp


@pytest.mark.parametrize(("n", "k"), [(14, 8), (12, 1), (12, 3), (5, 8)])
def test_matches_loop_oracle(n, k, device, dtype):
    a, p = _pair(n, 6, seed=n + k)
    ref = _value_and_grads(lambda x, y: oracle(x, y, k), a, p)
    ours = _value_and_grads(
        lambda x, y: sos_regularizer(x, y, k=k), a.to(device, dtype), p.to(device, dtype)
    )
    assert ours[0].dtype == dtype and ours[0].shape == ()
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for x, y in zip(ours, ref):
        assert_close(x.cpu().double(), y, dtype=dtype, **tol)


@pytest.mark.parametrize(("n", "k"), [(14, 8), (12, 2), (4, 8)])
def test_neighbourhoods_are_the_union_of_both_knn_sets(n, k):
    a, p = _pair(n, 5, seed=k)
    mask = knn_union_mask(a, p, k=k)
    assert mask.shape == (n, n) and mask.dtype == torch.bool
    assert not mask.diagonal().any()
    got = [set(torch.nonzero(row).flatten().tolist()) for row in mask]
    assert got == oracle_neighbourhoods(a, p, k)
    sizes = mask.sum(1)
    assert bool((sizes >= min(k, n - 1)).all() and (sizes <= min(2 * k, n - 1)).all())


def test_equal_geometry_is_zero_with_finite_gradients():
    a, _ = _pair(10, 8)
    a = a.requires_grad_(True)
    p = a.detach().clone().requires_grad_(True)
    loss = sos_regularizer(a, p)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(p.grad).all()


def test_invariant_to_an_isometry_of_one_space():
    a, p = _pair(12, 6, seed=3)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    base = sos_regularizer(a, p)
    assert base > 0
    assert_close(sos_regularizer(a @ q + 0.3, p), base, rtol=1e-7, atol=1e-9)
    assert_close(sos_regularizer(a, p), sos_regularizer(p, a))  # symmetric in the two spaces


def test_batch_of_one_is_zero_with_warning():
    a, p = _pair(1, 8)
    a.requires_grad_(True)
    with pytest.warns(DegenerateBatchWarning):
        loss = sos_regularizer(a, p)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(a.grad) == 0


def test_batch_of_two_uses_the_only_neighbour():
    a, p = _pair(2, 4, seed=4)
    expected = (_d(a[0], a[1]) - _d(p[0], p[1])).abs()  # both rows see the same single pair
    assert_close(sos_regularizer(a, p), expected)


def test_bad_inputs_raise_typed_errors():
    a, p = _pair(4, 8)
    with pytest.raises(EmptyInputError):
        sos_regularizer(a[:0], p[:0])
    bad = p.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueRangeError, match="positives"):
        sos_regularizer(a, bad)
    with pytest.raises(ShapeError, match="positives"):
        sos_regularizer(a, p[:3])
    with pytest.raises(ShapeError):
        sos_regularizer(a[0], p[0])
    for k in (0, -2, 1.5, True):
        with pytest.raises(OptionError, match="k"):
            sos_regularizer(a, p, k=k)
    with pytest.raises(OptionError, match="eps"):
        sos_regularizer(a, p, eps=-1.0)
    with pytest.raises(OptionError):
        knn_union_mask(a, p, k=0)


def test_gradcheck_float64():
    a, p = _pair(7, 4, seed=5)
    assert gradcheck(lambda x, y: sos_regularizer(x, y, k=3), a, p)


def test_module_is_registered_and_matches_function():
    reg = lookalike.create("loss", "sos", k=3)
    assert isinstance(reg, SOSRegularizer)
    a, p = _pair(9, 4, seed=6)
    assert_close(reg(a, p), sos_regularizer(a, p, k=3))
    assert "k=3" in repr(reg)
    with pytest.raises(OptionError):
        SOSRegularizer(k=0)
    with pytest.raises(TypeError):
        SOSRegularizer(8)  # keyword-only


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 10), k=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_property_nonnegative_and_permutation_invariant(n, k, seed):
    a, p = _pair(n, 3, seed=seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        loss = sos_regularizer(a, p, k=k)
        permuted = sos_regularizer(a[perm], p[perm], k=k)
    assert loss >= 0
    assert_close(permuted, loss)
