"""Subnormal floats set to zero (core.subnormal), in the weights reader and in the training loop."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lookalike.core.errors import DTypeError
from lookalike.core.subnormal import flush_subnormal_
from lookalike.core.weights import read_weights


def _subnormal_mask(values: np.ndarray) -> np.ndarray:
    # oracle: numpy's own float description of the dtype
    return (values != 0) & (np.abs(values) < np.finfo(values.dtype).tiny)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_flush_equals_numpy_oracle_on_random_magnitudes(dtype):
    gen = torch.Generator().manual_seed(0)
    info = torch.finfo(dtype)
    exponents = torch.empty(4000, dtype=torch.float64).uniform_(
        np.log10(info.tiny) - 8, np.log10(info.tiny) + 3, generator=gen
    )
    signs = torch.randint(0, 2, (4000,), generator=gen) * 2 - 1
    t = (signs * torch.pow(10.0, exponents)).to(dtype)
    t[:3] = torch.tensor([float("inf"), float("nan"), 0.0], dtype=dtype)
    before = t.numpy().copy()
    expected = np.where(_subnormal_mask(before), 0, before)
    assert _subnormal_mask(before).sum() > 100  # the test draws many subnormals
    assert flush_subnormal_([t]) == int(_subnormal_mask(before).sum())
    np.testing.assert_array_equal(t.numpy(), expected)
    assert not _subnormal_mask(t.numpy()).any()


def test_flush_leaves_integer_tensors_and_normal_values_alone():
    ints = torch.tensor([0, 1, -3])
    normal = torch.tensor([1.0, -2.5e-38, 1.2e-38, 3.0])  # all at or above finfo(float32).tiny
    assert flush_subnormal_([ints, normal, torch.tensor(True)]) == 0
    assert ints.tolist() == [0, 1, -3]
    assert normal.tolist() == torch.tensor([1.0, -2.5e-38, 1.2e-38, 3.0]).tolist()
    assert flush_subnormal_([]) == 0
    with pytest.raises(DTypeError, match=r"expected torch\.Tensor items, got float"):
        flush_subnormal_([torch.zeros(2), 1e-40])


def test_read_weights_flushes_float32_and_bfloat16_but_keeps_float16(tmp_path):
    path = tmp_path / "w.safetensors"
    f32 = torch.tensor([1e-40, 0.5, -3e-42])
    bf16 = torch.tensor([1e-40, 0.5]).to(torch.bfloat16)
    f16 = torch.tensor([1e-6, 0.5], dtype=torch.float16)  # a float16 subnormal: normal in float32
    save_file({"a": f32, "b": bf16, "c": f16}, str(path))
    state, _ = read_weights(path)
    assert state["a"].tolist() == [0.0, 0.5, 0.0]
    assert state["b"].float().tolist() == [0.0, 0.5]
    assert torch.equal(state["c"], f16) and state["c"][0] != 0
    pt = tmp_path / "w.pt"
    torch.save({"state_dict": {"a": f32.clone()}}, pt)
    assert read_weights(pt)[0]["a"].tolist() == [0.0, 0.5, 0.0]


def test_engine_flush_reaches_weights_buffers_and_optimizer_state():
    from lookalike.train.engine import _flush_subnormal

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    model(torch.rand(4, 3)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        model[0].weight[0, 0] = 1e-40
        model[1].running_var[1] = -2e-41
    state = optimizer.state[model[0].weight]
    state["exp_avg_sq"][1, 2] = 5e-42
    _flush_subnormal(SimpleNamespace(model=model, optimizer=optimizer))
    tensors = [
        *model.state_dict().values(),
        *(t for s in optimizer.state.values() for t in s.values()),
    ]
    floats = [t.detach().numpy() for t in tensors if t.is_floating_point()]
    assert floats and not any(_subnormal_mask(t).any() for t in floats)
    assert model[0].weight[0, 0] == 0 and model[1].running_var[1] == 0
    assert state["exp_avg_sq"][1, 2] == 0
