"""PCA compression: against numpy SVD, sign convention, whitening, state-dict round trip, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lookalike
from conftest import assert_close, gradcheck
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError
from lookalike.layers.pca import NotFittedError, PCAProjection, fit_pca, pca_project


def _data(n: int = 300, d: int = 12, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Correlated, off-centre data with well separated variances."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3.0, 0.2, d, dtype=torch.float64)
    mix, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * scales @ mix + 1.5
    return x.to(dtype)


def _numpy_pca(x: np.ndarray, dim: int, center: bool = True):
    mean = x.mean(axis=0) if center else np.zeros(x.shape[1])
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    evals = s**2 / (x.shape[0] - 1 if center else x.shape[0])
    return mean, vt[:dim], evals


@pytest.mark.parametrize("center", [True, False])
def test_matches_numpy_svd(center):
    x = _data()
    dim = 5
    pca = fit_pca(x, dim, center=center, normalize=False)
    mean, vt, evals = _numpy_pca(x.numpy(), dim, center)
    assert_close(pca.mean, mean)
    # components up to sign: |<ours_k, numpy_k>| = 1 and ours = sign * numpy
    signs = np.sign((pca.components.numpy() * vt).sum(axis=1))
    assert_close(pca.components, vt * signs[:, None])
    assert_close(pca.eigenvalues, evals[:dim])
    assert_close(pca.explained_variance_ratio, evals[:dim] / evals.sum())
    projected = (x.numpy() - mean) @ vt.T * signs
    assert_close(pca(x), projected)


def test_sign_convention_largest_magnitude_entry_positive_and_deterministic():
    x = _data(seed=1)
    pca = fit_pca(x, 6)
    comps = pca.components
    idx = comps.abs().argmax(dim=1)
    assert bool((comps.gather(1, idx[:, None]) > 0).all())
    # the sign does not depend on the data's orientation or on repeated fits
    assert torch.equal(fit_pca(x, 6).components, comps)
    assert_close(fit_pca(-x, 6).components, comps)
    assert_close(fit_pca(x + 10.0, 6).components, comps)


def test_components_are_orthonormal():
    pca = fit_pca(_data(seed=2), 7)
    assert_close(pca.components @ pca.components.T, torch.eye(7, dtype=torch.float64))


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_whitening_power_scales_the_training_covariance(power):
    x = _data(seed=3)
    pca = fit_pca(x, 4, whiten_power=power, normalize=False, eps=0.0)
    cov = torch.cov(pca(x).T)
    expected = torch.diag(pca.eigenvalues ** (1.0 - power))
    assert_close(cov, expected, rtol=1e-7, atol=1e-9)
    if power == 1.0:
        assert_close(cov, torch.eye(4, dtype=torch.float64), rtol=1e-7, atol=1e-9)


def test_default_output_rows_are_unit_norm_and_mean_row_is_zero():
    x = _data(seed=4)
    pca = fit_pca(x, 3, whiten_power=0.5)
    y = pca(x)
    assert_close(y.norm(dim=1), torch.ones(len(x), dtype=torch.float64))
    at_mean = pca(pca.mean[None].clone())
    assert torch.count_nonzero(at_mean) == 0


def test_output_dtype_and_device_follow_the_input(device, dtype):
    x = _data(seed=5)
    pca = fit_pca(x.to(device, torch.float32), 4).to(device)
    assert pca.components.dtype == torch.float64  # fitted in float64
    y = pca(x.to(device, dtype))
    assert y.dtype == dtype and y.device.type == device.type
    assert_close(y.cpu(), fit_pca(x, 4)(x), dtype=dtype, rtol=1e-5, atol=1e-5)


def test_fit_on_float32_agrees_with_float64():
    x = _data(seed=6)
    assert_close(fit_pca(x.float(), 4).components, fit_pca(x, 4).components, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_state_dict_round_trip_into_a_fresh_module(power):
    x = _data(seed=7)
    pca = fit_pca(x, 4, whiten_power=power)
    assert set(pca.state_dict()) >= {"mean", "components", "eigenvalues", "whiten_power"}
    fresh = PCAProjection(dim_in=12, dim_out=4)
    with pytest.raises(NotFittedError):
        fresh(x)
    fresh.load_state_dict(pca.state_dict())
    assert float(fresh.whiten_power) == power
    assert torch.equal(fresh(x), pca(x))
    assert torch.equal(fresh.explained_variance_ratio, pca.explained_variance_ratio)
    # also as a submodule of a bigger model
    nested = torch.nn.Sequential(PCAProjection(dim_in=12, dim_out=4))
    nested.load_state_dict(torch.nn.Sequential(pca).state_dict())
    assert torch.equal(nested(x), pca(x))


def test_safetensors_round_trip_through_the_registry(tmp_path):
    from lookalike.core.weights import save_weights

    x = _data(seed=8)
    pca = fit_pca(x, 3, whiten_power=0.5, normalize=False)
    path = save_weights(pca, tmp_path / "pca.safetensors")
    loaded = lookalike.create("layer", "pca", weights=str(path))
    assert isinstance(loaded, PCAProjection) and loaded.normalize is False
    assert torch.equal(loaded(x), pca(x))


def test_registry_builds_an_empty_projection():
    pca = lookalike.create("layer", "pca", dim_in=8, dim_out=2)
    assert isinstance(pca, PCAProjection) and pca.dim == 2
    with pytest.raises(NotFittedError):
        pca(torch.zeros(3, 8))
    with pytest.raises(NotFittedError):
        pca.explained_variance_ratio  # noqa: B018


def test_fit_refuses_bad_inputs():
    x = _data(n=20, d=6)
    with pytest.raises(ShapeError, match="at least 5 rows"):
        fit_pca(x[:4], 4)
    fit_pca(x[:5], 4)  # dim + 1 rows are enough
    with pytest.raises(ShapeError, match="at least 4 rows"):
        fit_pca(x[:3], 4, center=False)
    with pytest.raises(OptionError, match="dim"):
        fit_pca(x, 7)
    for dim in (0, -1, 2.0, True):
        with pytest.raises(OptionError, match="dim"):
            fit_pca(x, dim)
    with pytest.raises(EmptyInputError):
        fit_pca(x[:0], 2)
    with pytest.raises(EmptyInputError):
        fit_pca(x[:, :0], 1)
    with pytest.raises(ShapeError):
        fit_pca(x[0], 1)
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueRangeError, match="descriptors"):
        fit_pca(bad, 2)
    with pytest.raises(OptionError, match="whiten_power"):
        fit_pca(x, 2, whiten_power=float("nan"))
    with pytest.raises(OptionError, match="eps"):
        fit_pca(x, 2, eps=-1.0)


def test_forward_and_constructor_checks():
    x = _data(n=30, d=6)
    pca = fit_pca(x, 2)
    with pytest.raises(ShapeError, match="x"):
        pca(x[:, :5])
    with pytest.raises(ShapeError):
        pca(x[0])
    bad = x.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueRangeError):
        pca(bad)
    with pytest.raises(OptionError, match="dim_out"):
        PCAProjection(dim_in=4, dim_out=5)
    with pytest.raises(TypeError):
        PCAProjection(4, 2)  # keyword-only


def test_rank_deficient_data_is_logged(caplog):
    gen = torch.Generator().manual_seed(9)
    x = (
        torch.randn(50, 2, generator=gen, dtype=torch.float64)
        @ torch.randn(2, 6, generator=gen).double()
    )
    with caplog.at_level(logging.WARNING, logger="lookalike.layers.pca"):
        pca = fit_pca(x, 4)
    assert "zero variance" in caplog.text
    assert torch.isfinite(pca(x)).all()


def test_pca_project_pure_function():
    x = _data(n=40, d=5, seed=10)
    pca = fit_pca(x, 3, whiten_power=1.0)
    y = pca_project(x, pca.mean, pca.components, pca.eigenvalues, whiten_power=1.0, eps=1e-8)
    assert torch.equal(y, pca(x))
    with pytest.raises(ShapeError, match="components"):
        pca_project(x, pca.mean, pca.components[:, :4], pca.eigenvalues)


@pytest.mark.parametrize("power", [0.0, 0.5])
def test_gradcheck_float64(power):
    x = _data(n=40, d=5, seed=11)
    pca = fit_pca(x, 3, whiten_power=power)
    assert gradcheck(pca, x[:6])


@settings(max_examples=20, deadline=None)
@given(d=st.integers(1, 6), extra=st.integers(1, 20), seed=st.integers(0, 10_000), data=st.data())
def test_property_unit_rows_and_orthonormal_components(d, extra, seed, data):
    dim = data.draw(st.integers(1, d))
    x = torch.randn(
        dim + extra, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    pca = fit_pca(x, dim)
    assert_close(pca.components @ pca.components.T, torch.eye(dim, dtype=torch.float64))
    assert bool((pca.eigenvalues[:-1] >= pca.eigenvalues[1:]).all())
    norms = pca(x).norm(dim=1)
    assert bool(((norms - 1).abs() < 1e-9).all())
