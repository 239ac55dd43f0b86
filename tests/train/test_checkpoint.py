from __future__ import annotations

import pytest
import torch
from torch import nn

from lookalike.core.weights import WeightsError, save_weights
from lookalike.train.checkpoint import load_checkpoint, save_checkpoint


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
    step, history = load_checkpoint(path, fresh, fresh_opt)
    assert step == 3 and history == {"loss": [1.0, 0.5, 0.25]}
    _steps(fresh, fresh_opt, 3, seed=2)
    for (k, a), b in zip(ref.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


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
