from __future__ import annotations

import os
import stat

import pytest
import torch
from torch import nn

from lookalike.core.weights import WeightsError, save_weights
from lookalike.train.checkpoint import (
    CheckpointNotFoundError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)


def _model_and_opt(seed=0, name="sgd"):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    if name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, opt


def _steps(model, opt, n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 4, generator=gen)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_resume_continues_exactly(tmp_path, opt_name):
    # reference: 6 uninterrupted steps
    ref, ref_opt = _model_and_opt(name=opt_name)
    _steps(ref, ref_opt, 3, seed=1)
    _steps(ref, ref_opt, 3, seed=2)
    # interrupted: 3 steps, checkpoint, restore into fresh objects, 3 more
    model, opt = _model_and_opt(name=opt_name)
    _steps(model, opt, 3, seed=1)
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        model,
        opt,
        step=3,
        history={"loss": [1.0, 0.5, 0.25]},
        training={"recipe": {"x": 1}},
    )
    fresh, fresh_opt = _model_and_opt(seed=99, name=opt_name)
    step, history, state = load_checkpoint(path, fresh, fresh_opt)
    assert step == 3 and history == {"loss": [1.0, 0.5, 0.25]} and state == {}
    _steps(fresh, fresh_opt, 3, seed=2)
    for (k, a), b in zip(ref.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def _conv_steps(model, opt, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(4, 3, 6, 5, generator=gen).contiguous(memory_format=torch.channels_last)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_fused_resume_of_a_channels_last_network_is_bit_exact(tmp_path, opt_name):
    """The file holds the state contiguous; the fused CPU step walks parameter and state as flat
    memory, so a restored moment must take its channels-last weight's strides (without that, the
    weights ended up to 0.03 (SGD) and 0.34 (Adam) away from the uninterrupted run's)."""

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
        model = model.to(memory_format=torch.channels_last)
        kw = {"lr": 0.1, "fused": True}
        if opt_name == "sgd":
            return model, torch.optim.SGD(model.parameters(), momentum=0.9, **kw)
        return model, torch.optim.Adam(model.parameters(), **kw)

    ref, ref_opt = make()
    _conv_steps(ref, ref_opt, 2, seed=1)
    _conv_steps(ref, ref_opt, 3, seed=2)
    model, opt = make()
    _conv_steps(model, opt, 2, seed=1)
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, step=2, history={}, training={})
    fresh, fresh_opt = make()
    load_checkpoint(path, fresh, fresh_opt)
    weight = fresh[0].weight
    moment = fresh_opt.state[weight]["exp_avg" if opt_name == "adam" else "momentum_buffer"]
    assert moment.stride() == weight.stride()
    _conv_steps(fresh, fresh_opt, 3, seed=2)
    for (k, a), b in zip(ref.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)


def test_plain_weights_are_not_a_checkpoint(tmp_path):
    model, opt = _model_and_opt()
    path = save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match="not a training checkpoint"):
        load_checkpoint(path, model, opt)


def test_checkpoint_for_other_model_is_refused(tmp_path):
    model, opt = _model_and_opt()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, step=1, history={}, training={})
    other = nn.Linear(3, 3)
    with pytest.raises(WeightsError, match="does not fit Linear"):
        load_checkpoint(path, other, torch.optim.SGD(other.parameters(), lr=0.1))


def test_extra_modules_and_state_round_trip(tmp_path):
    model, opt = _model_and_opt()
    head = nn.Linear(2, 3)
    stream_state = {
        "rng": {"state": {"state": 2**100 + 7, "inc": 3}, "bit_generator": "PCG64"},
        "labels": [1, 2, 3],
        "patches": torch.rand(3, 2, 1, 4, 4),
    }
    rng = torch.get_rng_state()
    path = save_checkpoint(
        tmp_path / "c.safetensors", model, opt, step=2, history={}, training={},
        modules={"loss": head, "regularizer": None},
        state={"stream": stream_state, "torch_rng": rng},
    )  # fmt: skip
    fresh, fresh_opt = _model_and_opt(seed=5)
    other = nn.Linear(2, 3)
    ckpt = load_checkpoint(path, fresh, fresh_opt, modules={"loss": other})
    torch.testing.assert_close(other.weight, head.weight, rtol=0, atol=0)
    assert ckpt.state["stream"]["rng"] == stream_state["rng"]
    assert ckpt.state["stream"]["labels"] == [1, 2, 3]
    assert torch.equal(ckpt.state["stream"]["patches"], stream_state["patches"])
    assert torch.equal(ckpt.state["torch_rng"], rng)
    with pytest.raises(WeightsError, match="module 'loss' does not fit"):
        load_checkpoint(path, fresh, fresh_opt, modules={"loss": nn.Linear(3, 3)})


def test_checkpoint_is_readable_whatever_the_umask(tmp_path):
    model, opt = _model_and_opt()
    old = os.umask(0o077)  # a temp file would be 0600: chmod 0644 before the rename
    try:
        path = save_checkpoint(
            tmp_path / "c.safetensors", model, opt, step=1, history={}, training={}
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_resolve_checkpoint(tmp_path):
    model, opt = _model_and_opt()
    with pytest.raises(CheckpointNotFoundError, match=f"no checkpoint at {tmp_path / 'nope'}"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointNotFoundError, match=r"holds no checkpoint\.safetensors"):
        resolve_checkpoint(tmp_path)
    weights = save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match="not a training checkpoint"):
        resolve_checkpoint(weights)
    path = save_checkpoint(
        tmp_path / "checkpoint.safetensors", model, opt, step=1, history={}, training={}
    )
    assert resolve_checkpoint(tmp_path) == path == resolve_checkpoint(path)
