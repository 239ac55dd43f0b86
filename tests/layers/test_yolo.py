"""YOLOv4-style neck/head: shapes, level layout, SPP by hand, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_close
from lookalike.core.errors import ShapeError
from lookalike.layers.yolo import SPP, YOLOv4Head


@pytest.mark.parametrize("size, anchors, classes", [(16, 3, 4), (20, 1, 1), (13, 2, 3)])
def test_head_shapes_per_level_and_flattened(size, anchors, classes):
    head = YOLOv4Head((8, 16, 32), num_classes=classes, num_anchors=anchors, head_width=8).eval()
    s4, s5 = (size + 1) // 2, ((size + 1) // 2 + 1) // 2
    c3, c4, c5 = torch.rand(2, 8, size, size), torch.rand(2, 16, s4, s4), torch.rand(2, 32, s5, s5)
    levels = head.forward_levels(c3, c4, c5)
    assert [tuple(lv.shape) for lv in levels] == [
        (2, anchors, s, s, 5 + classes) for s in (size, s4, s5)
    ]
    flat = head(c3, c4, c5)
    assert flat.shape == (2, anchors * (size**2 + s4**2 + s5**2), 5 + classes)
    # level by level, each in (anchor, row, column) order
    assert_close(flat[:, : anchors * size * size], levels[0].reshape(2, -1, 5 + classes))
    assert_close(flat[:, -anchors * s5 * s5 :], levels[2].reshape(2, -1, 5 + classes))


def test_decoupled_outputs_come_from_separate_branches():
    head = YOLOv4Head((8, 16, 32), num_classes=3, num_anchors=2, head_width=8).eval()
    c3, c4, c5 = torch.rand(1, 8, 8, 8), torch.rand(1, 16, 4, 4), torch.rand(1, 32, 2, 2)
    before = head.forward_levels(c3, c4, c5)[0]
    with torch.no_grad():
        head.heads[0].cls.weight.add_(1.0)  # only the classification branch changes
    after = head.forward_levels(c3, c4, c5)[0]
    assert torch.equal(before[..., :5], after[..., :5])
    assert not torch.allclose(before[..., 5:], after[..., 5:])
    # objectness and class biases start at the prior 0.01
    assert_close(torch.sigmoid(head.heads[1].obj.bias), torch.full((2,), 0.01))


def test_spp_equals_hand_written_pooling():
    spp = SPP(4, pool_sizes=(3, 5), act_layer=nn.Identity, norm_layer=None).eval()
    x = torch.randn(2, 4, 6, 6)
    y = spp.reduce(x)
    pooled = [y]
    for k in (3, 5):
        pad = F.pad(y, (k // 2,) * 4, value=-float("inf"))
        pooled.append(pad.unfold(2, k, 1).unfold(3, k, 1).amax((-1, -2)))
    assert_close(spp(x), spp.expand(torch.cat(pooled, 1)))


def test_head_errors():
    head = YOLOv4Head((8, 16, 32), num_classes=2, head_width=8)
    c3, c4, c5 = torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8), torch.rand(2, 32, 4, 4)
    with pytest.raises(ShapeError):
        head(c3, torch.rand(2, 16, 7, 7), c5)
    with pytest.raises(ShapeError):
        head(c3, c4, torch.rand(2, 16, 4, 4))
    with pytest.raises(ShapeError):
        head(c3, torch.rand(3, 16, 8, 8), c5)
