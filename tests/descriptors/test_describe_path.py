"""The one batched describe path: modes restored per submodule, resize rule, empty input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lookalike
from lookalike.descriptors.describe import area_resize, describe_patches


class _Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.patch_size = inner.patch_size

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("inner_training", [False, True])
def test_modes_are_restored_per_submodule(inner_training):
    net = lookalike.create("descriptor", "hardnet").train(inner_training)
    wrapper = _Wrapper(net)
    wrapper.training = True  # a fresh wrapper is in train mode whatever its child is
    describe_patches(wrapper, torch.rand(3, 1, 32, 32))
    assert wrapper.training is True
    assert all(m.training is inner_training for m in net.modules())


def test_mode_restored_on_error():
    class Failing(nn.Module):
        patch_size = 32

        def forward(self, x):
            assert not self.training
            raise RuntimeError("boom")

    model = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        describe_patches(model, torch.rand(2, 1, 32, 32))
    assert model.training


def test_uint8_and_resize_follow_the_one_rule():
    sift = lookalike.create("descriptor", "sift", patch_size=32)
    patches = torch.randint(0, 256, (4, 65, 65), dtype=torch.uint8)
    expected = sift(area_resize(patches[:, None].float() / 255.0, 32))
    torch.testing.assert_close(describe_patches(sift, patches.numpy()), expected)
