"""The generic descriptor base: InputSpec checks and the forward contract, on a toy image descriptor."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lookalike
from lookalike.core.errors import DTypeError, OptionError, ShapeError, ValueRangeError
from lookalike.descriptors._base import Descriptor, InputSpec
from lookalike.descriptors._functional import flat_rows
from lookalike.descriptors.patch._base import PatchNet


class ToyImageNet(Descriptor):
    """An image descriptor as later families will write one: 3 channels, a size range, GeM-free pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.dim = 8
        self.input_spec = InputSpec(
            channels=3, size=(16, 64), normalization=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        )
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, features):
        return F.normalize(features.mean(dim=(2, 3)), dim=1)


def test_input_spec_validates_its_fields():
    with pytest.raises(OptionError):
        InputSpec(channels=0)
    with pytest.raises(OptionError):
        InputSpec(size=(64, 16))
    with pytest.raises(OptionError):
        InputSpec(value_range=(1.0, 0.0))
    with pytest.raises(OptionError):
        InputSpec(channels=3, normalization=((0.5,), (0.2,)))
    spec = InputSpec(channels=3, size=[16, 64])
    assert spec.size == (16, 64) and spec.size_range == (16, 64) and spec.shape(2) == (2, 3, 16, 16)
    assert "H and W in [16, 64]" in str(spec) and "size=(16, 64)" in repr(spec)


def test_toy_image_descriptor_follows_the_contract():
    net = ToyImageNet().eval()
    x = torch.rand(3, 3, 20, 40)
    x[1] = 0.25
    with torch.no_grad():
        out = net(x)
    assert out.shape == (3, 8)
    assert out[1].eq(0).all()  # flat image: all-zero row, applied by the base
    torch.testing.assert_close(out[[0, 2]].norm(dim=1), torch.ones(2))
    assert net(torch.rand(0, 3, 16, 16)).shape == (0, 8)
    with pytest.raises(ShapeError, match=r"height and width in \[16, 64\]"):
        net(torch.rand(1, 3, 8, 20))
    with pytest.raises(ShapeError):
        net(torch.rand(1, 1, 20, 20))
    with pytest.raises(DTypeError):
        net(torch.zeros(1, 3, 20, 20, dtype=torch.uint8))
    bad = torch.rand(1, 3, 20, 20)
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueRangeError, match="1 NaN"):
        net(bad)
    net.validate = False  # the finite check can be switched off (one device sync on GPUs)
    assert torch.isnan(net(bad)).any()


def test_flat_rows_is_exact():
    x = torch.full((3, 1, 4, 4), 0.5)
    x[1, 0, 2, 2] += 1e-7
    x[2] = torch.rand(1, 4, 4)
    assert flat_rows(x).tolist() == [True, False, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool])
def test_flat_rows_equals_the_all_equal_oracle(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 5, 5, generator=g) * 3).floor()
    x[::3] = x[::3, :, :1, :1]  # every third sample constant
    x = x.to(dtype)
    if dtype.is_floating_point:
        x[1, 0, 0, 0] = float("nan")  # a NaN makes a sample non-flat
        x[4] = 0.0
        x[4, 0, 1, 1] = -0.0  # -0.0 == 0.0: still flat
    rows = x.reshape(64, -1)
    assert torch.equal(flat_rows(x), (rows == rows[:, :1]).all(dim=1))
    assert flat_rows(x[:0]).shape == (0,)
    assert flat_rows(torch.zeros(3, 0)).tolist() == [True, True, True]


def test_patch_nets_split_into_features_and_head():
    net = lookalike.create("descriptor", "hardnet8").eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        feats = net.forward_features(x)
        assert feats.shape == (4, 512)  # the trunk output a PCA is fitted on
        torch.testing.assert_close(net.forward_head(feats), net(x))
    assert not hasattr(PatchNet, "_head")  # the trainer no longer monkeypatches a private hook
    with pytest.raises(ShapeError):
        net.forward_features(torch.rand(4, 1, 31, 31))


@pytest.mark.parametrize(
    ("name", "extent", "needs_weights"),
    [("hardnet", 6.0, True), ("tfeat", 6.0, True), ("sift", 7.5, False), ("rootsift", 7.5, False)],
)
def test_patch_attributes(name, extent, needs_weights):
    net = lookalike.create("descriptor", name)
    assert isinstance(net, Descriptor)
    assert net.patch_extent == extent and type(net).needs_weights is needs_weights
    assert net.input_spec.size == net.patch_size and net.input_spec.channels == 1


def test_sift_features_and_head_compose_to_forward():
    sift = lookalike.create("descriptor", "rootsift", patch_size=32)
    x = torch.rand(3, 1, 32, 32, dtype=torch.float64)
    hist = sift.forward_features(x)
    assert hist.shape == (3, 128) and bool((hist >= 0).all())
    torch.testing.assert_close(sift.forward_head(hist), sift(x))
    from lookalike.descriptors.patch.sift import sift_describe

    torch.testing.assert_close(sift(x), sift_describe(x, rootsift=True))
