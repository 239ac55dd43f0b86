"""Contract tests run over every registered descriptor: a new registration is tested at once."""

from __future__ import annotations

import pytest
import torch

import lookalike
from lookalike.core.errors import ShapeError

NAMES = lookalike.list_registered("descriptor")


def _example_input(model, batch: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    channels = getattr(model, "in_channels", 1)
    if hasattr(model, "patch_size"):
        size = (model.patch_size, model.patch_size)
    else:
        size = tuple(getattr(model, "input_size", (64, 64)))
    return torch.rand(batch, channels, *size, generator=gen, dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_output_is_l2_normalised_rows(name):
    model = lookalike.create("descriptor", name).eval()
    x = _example_input(model, 5)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (5, model.dim)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_constant_input_is_defined(name):
    model = lookalike.create("descriptor", name).eval()
    x = torch.full_like(_example_input(model, 2), 0.5)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, model.dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_parameter_gets_a_gradient(name):
    model = lookalike.create("descriptor", name).train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    x = _example_input(model, 6).requires_grad_(True)
    out = model(x)
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"
    # every descriptor is differentiable with respect to its input (parameter-free ones included)
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shape_raises_shape_error(name):
    model = lookalike.create("descriptor", name)
    x = _example_input(model, 2)
    with pytest.raises(ShapeError):
        model(x[:, :, :-1])
    with pytest.raises(ShapeError):
        model(x[0])


@pytest.mark.parametrize("name", NAMES)
def test_has_dim_attribute(name):
    model = lookalike.create("descriptor", name)
    assert isinstance(model.dim, int) and model.dim > 0
