"""DOLG's local branch choices (the issue-14 ablation): multi-atrous, multi-scale fusion block, ASFF."""

from __future__ import annotations

import pytest
import torch

import lookalike
from lookalike.core.errors import OptionError

SMALL = {
    "backbone": "resnet18",
    "local_dim": 32,
    "atrous_hidden": 8,
    "dim": 16,
    "dilations": (1, 2),
}


@pytest.mark.parametrize("block", ["multi_atrous", "msffrb", "asff"])
def test_each_local_block_gives_unit_rows_and_trains(block):
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "dolg", local_block=block, **SMALL)
    x = torch.rand(2, 3, 96, 96, requires_grad=True)
    rows = net(x)
    assert rows.shape == (2, 16)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(2))
    rows.sum().backward()
    grads = [p.grad for p in net.local_branch.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_asff_fuses_three_backbone_stages_and_msffrb_keeps_the_paper_stage():
    asff = lookalike.create("descriptor", "dolg", local_block="asff", **SMALL)
    msff = lookalike.create("descriptor", "dolg", local_block="msffrb", **SMALL)
    paper = lookalike.create("descriptor", "dolg", **SMALL)
    # resnet18 stages 2, 3, 4 have 128, 256, 512 channels; the paper's DOLG reads stages 3 and 4
    assert asff.backbone.feature_info.channels() == [128, 256, 512]
    assert (
        msff.backbone.feature_info.channels()
        == paper.backbone.feature_info.channels()
        == [256, 512]
    )
    assert asff.local_branch.block.in_channels == (128, 256, 512)
    assert msff.local_branch.block.channels == 256


def test_bad_local_block_options_are_clear_errors():
    with pytest.raises(OptionError, match="local_block"):
        lookalike.create("descriptor", "dolg", local_block="aspp", **SMALL)
    with pytest.raises(OptionError, match="local_stage >= 2"):
        lookalike.create("descriptor", "dolg", local_block="asff", local_stage=1, global_stage=4)
