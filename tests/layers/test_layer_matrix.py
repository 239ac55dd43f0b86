"""The same matrix for every layer of this area: dtype and device follow the input, parameter gradients,
float64 gradcheck on a small case, eval-mode determinism. Driven by the contract examples."""

from __future__ import annotations

import pytest
import torch

import lookalike
from conftest import DEVICES
from contract_examples.layers import EXAMPLES

LAYERS = sorted(EXAMPLES["layer"])


def _build(name: str, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    example = EXAMPLES["layer"][name]
    layer = lookalike.create("layer", name, **example.kwargs).to(device=device, dtype=dtype)
    inputs = [
        a.to(device=device, dtype=dtype) if torch.is_tensor(a) and a.is_floating_point() else a
        for a in example.inputs(None)
    ]
    return layer, inputs, example


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", LAYERS)
def test_dtype_and_device_follow_the_input(name, device):
    layer, inputs, example = _build(name, device, torch.float64)
    out = layer.eval()(*inputs)
    assert out.dtype == torch.float64 and out.device.type == device
    if example.out_shape is not None:
        assert tuple(out.shape) == example.out_shape
    assert torch.equal(out, layer(*inputs))  # eval mode is deterministic


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "atss_assigner"])  # no parameters
def test_every_parameter_gets_a_finite_gradient(name):
    layer, inputs, _ = _build(name, "cpu", torch.float32)
    out = layer.train()(*inputs)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    missing = [
        n for n, p in layer.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, missing


#: Tiny configurations for the float64 gradient check (numerical Jacobians cost one forward per input value).
GRADCHECK = {
    "se": ({"channels": 4, "rd_channels": 2}, [(2, 4, 3, 3)]),
    "cbam": ({"channels": 4, "rd_channels": 2, "spatial_kernel_size": 3}, [(2, 4, 3, 3)]),
    "attention_pool": ({"channels": 4, "num_heads": 2, "key_dim": 2}, [(2, 4, 3, 3)]),
    "stn": (
        {"in_channels": 1, "loc_channels": (2,), "loc_kernel_size": 3, "hidden": 4},
        [(2, 1, 6, 6)],
    ),
    "msffrb": ({"channels": 2}, [(2, 2, 4, 4)]),
    "aspconv": ({"channels": 2, "dilations": (1, 2)}, [(2, 2, 4, 4)]),
    "asff": (
        {"in_channels": (2, 2, 2), "level": 1, "compress_channels": 2},
        [(2, 2, 4, 4), (2, 2, 2, 2), (2, 2, 1, 1)],
    ),
    "fmf": ({"in_channels": (2, 2)}, [(2, 2, 4, 4), (2, 2, 2, 2)]),
    "rga_s": (
        {"channels": 4, "feat_size": (2, 2), "reduction": 2, "gate_reduction": 1},
        [(2, 4, 2, 2)],
    ),
    "rga_c": (
        {"channels": 4, "feat_size": (2, 2), "reduction": 2, "gate_reduction": 1},
        [(2, 4, 2, 2)],
    ),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_gradcheck_float64(name):
    kwargs, shapes = GRADCHECK[name]
    torch.manual_seed(0)
    layer = lookalike.create("layer", name, **kwargs).double().eval()
    if name == "stn":  # move the transform off the identity so the localisation path is exercised
        with torch.no_grad():
            layer.head.weight.normal_(0.0, 0.1)
    gen = torch.Generator().manual_seed(2)
    inputs = [
        torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes
    ]
    assert torch.autograd.gradcheck(layer, tuple(inputs), eps=1e-6, atol=1e-5)
