"""Folding BatchNorm through traced timm graphs (fused BatchNormAct2d included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lookalike
from lookalike.descriptors.fold import fold_graph_batchnorm


def _random_stats(net: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return net.eval()


class _ConvBnTwice(nn.Module):
    """A conv whose output feeds a BatchNorm AND a skip: that pair must not be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


@pytest.mark.parametrize("name", ["efficientnet_b0", "resnet18", "mobilenetv3_small_100"])
def test_timm_backbones_fold_every_batchnorm_and_keep_outputs(name):
    timm = pytest.importorskip("timm")
    net = _random_stats(timm.create_model(name, features_only=True, pretrained=False))
    folded = fold_graph_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        for a, b in zip(folded(x), net(x), strict=True):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    # the original is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_a_shared_conv_output_is_not_folded():
    net = _random_stats(_ConvBnTwice())
    folded = fold_graph_batchnorm(net)
    kinds = [type(m).__name__ for _, m in folded.named_children()]
    assert kinds.count("BatchNorm2d") == 1  # bn (input shared with the skip) stays; bn2 folds
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_gem_with_an_efficientnet_backbone_fuses_to_the_same_rows():
    model = lookalike.create("descriptor", "gem", backbone="efficientnet_b0")
    _random_stats(model)
    fused = model.fuse_for_inference()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
