"""DenseNet dense block and transition against torchvision's ``_DenseBlock`` / ``_Transition``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.densenet import _DenseBlock, _Transition

import lookalike
from conftest import assert_close, randomize_
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers.dense import DenseBlock, Transition


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    return randomize_(module, seed)


@pytest.mark.parametrize("num_layers, growth, bn_size", [(3, 8, 4), (2, 12, 2), (4, 4, 4)])
@pytest.mark.parametrize("train", [False, True])
def test_dense_block_equals_torchvision_with_the_same_weights(num_layers, growth, bn_size, train):
    ref = _randomize(_DenseBlock(num_layers, 16, bn_size, growth, drop_rate=0.0), seed=num_layers)
    ours = DenseBlock(16, num_layers=num_layers, growth_rate=growth, bn_size=bn_size)
    ours.load_state_dict(ref.state_dict())  # strict: same keys and shapes
    ref.train(train)
    ours.train(train)
    x = torch.randn(3, 16, 7, 9)
    out = ours(x)
    assert_close(out, ref(x))
    assert out.shape == (3, 16 + num_layers * growth, 7, 9)
    assert torch.equal(out[:, :16], x)  # the input passes through unchanged


@pytest.mark.parametrize("c_in, c_out", [(40, 20), (33, 16), (10, 10)])
def test_transition_equals_torchvision_with_the_same_weights(c_in, c_out):
    ref = _randomize(_Transition(c_in, c_out), seed=c_in).eval()
    ours = Transition(c_in, out_channels=c_out).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, c_in, 9, 8)
    assert_close(ours(x), ref(x))


def test_transition_compression_and_densenet_without_bottleneck():
    assert Transition(40, compression=0.5).out_channels == 20
    assert Transition(33, compression=0.5).out_channels == 16
    assert Transition(10, compression=1.0).out_channels == 10
    block = DenseBlock(8, num_layers=2, growth_rate=4, bn_size=None).eval()
    assert not hasattr(block.denselayer1, "conv1")
    assert block.denselayer2.conv2.in_channels == 12
    # hand check of the plain dense layer: out = conv3x3(relu(bn(x)))
    x = torch.randn(2, 8, 5, 5)
    layer = block.denselayer1
    expected = layer.conv2(torch.relu(layer.norm2(x)))
    assert_close(block(x)[:, 8:12], expected)


def test_dense_errors():
    with pytest.raises(OptionError):
        Transition(10, compression=1.5)
    with pytest.raises(OptionError):
        DenseBlock(8, drop_rate=1.0)
    with pytest.raises(ShapeError):
        DenseBlock(8, num_layers=1, growth_rate=2)(torch.rand(2, 7, 4, 4))
    assert isinstance(lookalike.create("layer", "dense_block", in_channels=4), DenseBlock)
    assert isinstance(lookalike.create("layer", "transition", in_channels=4), Transition)
