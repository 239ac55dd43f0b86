"""``ReidNetwork.stage_strips``: the trunk's strip features, against a hand-built oracle from hooks."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import adaptive_max_pool2d

import lookalike
from lookalike.core.errors import LookalikeError, OptionError

TINY = {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32)}


def _oracle(net, x: torch.Tensor, max_strips: int) -> torch.Tensor:
    """Each stage's map caught by forward hooks while the descriptor runs its own trunk, pooled
    with ``adaptive_max_pool2d``, by hand."""
    maps: list[torch.Tensor] = []
    # the modules whose outputs are the stages' maps: relation_net's stages, rga's attention
    outputs = list(net.attention) if hasattr(net, "attention") else list(net.trunk_net)[1:]
    hooks = [m.register_forward_hook(lambda m, i, out: maps.append(out)) for m in outputs]
    views = [x, x.flip(-1)] if net.flip_average else [x]
    rows = []
    try:
        for view in views:
            maps.clear()
            with torch.no_grad():
                net.trunk(net.normalize_input(view))
            pieces = []
            for k, fmap in enumerate(maps):
                n = min(fmap.shape[2], max_strips)
                pieces.append(adaptive_max_pool2d(fmap, (n, 1)).flatten(1))
                if k >= len(maps) - 2:
                    pieces.append(adaptive_max_pool2d(fmap, 1).flatten(1))
            v = torch.cat(pieces, 1)
            rows.append(v.sign() * v.abs().sqrt())
    finally:
        for h in hooks:
            h.remove()
    return sum(rows) / len(rows)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("max_strips", [3, 12])
def test_relation_net_strips_match_the_hooked_maps(flip, max_strips):
    torch.manual_seed(0)
    net = lookalike.create(
        "descriptor", "relation_net", **TINY, stages=3, parts=4, flip_average=flip
    ).eval()
    x = torch.rand(3, 3, 64, 32)
    ours = net.stage_strips(x, max_strips=max_strips)
    torch.testing.assert_close(ours, _oracle(net, x, max_strips))
    # width 0.25: 16, 32, 64 channels on maps 16, 8 and 4 rows high (stride 4, 8, 16)
    n = [min(r, max_strips) for r in (16, 8, 4)]
    assert ours.shape == (3, 16 * n[0] + 32 * n[1] + 64 * n[2] + 32 + 64)
    assert ours.dtype == torch.float32 and not ours.requires_grad


def test_flip_averaged_strips_are_mirror_invariant_and_any_crop_size_is_resized():
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "relation_net", **TINY, parts=4, flip_average=True).eval()
    x = torch.rand(2, 3, 64, 32)
    assert torch.equal(net.stage_strips(x.flip(-1)), net.stage_strips(x))
    assert net.stage_strips(torch.rand(2, 3, 96, 40)).shape == net.stage_strips(x).shape


def test_rga_net_strips_cover_its_four_stages_with_attention():
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "rga", **TINY).eval()
    x = torch.rand(2, 3, 64, 32)
    torch.testing.assert_close(net.stage_strips(x), _oracle(net, x, 12))


def test_bad_strip_options_and_inputs_are_refused():
    net = lookalike.create("descriptor", "relation_net", **TINY, parts=4).eval()
    for bad in (0, -1, 2.5, True, "6"):
        with pytest.raises(OptionError, match="max_strips"):
            net.stage_strips(torch.rand(1, 3, 64, 32), max_strips=bad)
    with pytest.raises(LookalikeError):
        net.stage_strips(torch.rand(1, 1, 64, 32))  # one channel
    with pytest.raises(LookalikeError):
        net.stage_strips(torch.full((1, 3, 64, 32), float("nan")))
