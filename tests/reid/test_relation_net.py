"""``relation_net``: one-vs-rest and GCP against loops and a hand-computed case, shapes, parameters."""

from __future__ import annotations

import pytest
import torch

import lookalike
from lookalike.core.errors import OptionError, ShapeError
from lookalike.descriptors.reid.relation_net import (
    RelationNet,
    global_contrastive_pool,
    one_vs_rest,
)


def _n(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def test_toy_case_by_hand():
    # One channel, parts 1, 2, 6: the rest of each part is the mean of the other two;
    # p_max = 6 and p_cont = ((1 - 6) + (2 - 6) + (6 - 6)) / (3 - 1) = -4.5.
    parts = torch.tensor([[[1.0, 2.0, 6.0]]])
    torch.testing.assert_close(one_vs_rest(parts), torch.tensor([[[4.0, 3.5, 1.5]]]))
    p_max, p_cont = global_contrastive_pool(parts)
    torch.testing.assert_close(p_max, torch.tensor([[6.0]]))
    torch.testing.assert_close(p_cont, torch.tensor([[-4.5]]))


def test_one_vs_rest_and_gcp_against_loops():
    gen = torch.Generator().manual_seed(0)
    parts = torch.randn(3, 5, 6, generator=gen, dtype=torch.float64)
    b, c, n = parts.shape
    rest = torch.empty_like(parts)
    p_max = torch.empty(b, c, dtype=torch.float64)
    p_cont = torch.empty(b, c, dtype=torch.float64)
    for i in range(b):
        for ch in range(c):
            values = [float(parts[i, ch, k]) for k in range(n)]
            for k in range(n):
                rest[i, ch, k] = sum(values[:k] + values[k + 1 :]) / (n - 1)
            top = max(values)
            p_max[i, ch] = top
            p_cont[i, ch] = sum(v - top for v in values) / (n - 1)
    torch.testing.assert_close(one_vs_rest(parts), rest)
    got_max, got_cont = global_contrastive_pool(parts)
    torch.testing.assert_close(got_max, p_max)
    torch.testing.assert_close(got_cont, p_cont)
    # "average minus max": p_cont = n / (n - 1) (p_avg - p_max)
    torch.testing.assert_close(got_cont, n / (n - 1) * (parts.mean(-1) - p_max))


def test_gcp_contrast_is_zero_for_equal_parts():
    parts = torch.full((2, 4, 3), 0.7)
    _, p_cont = global_contrastive_pool(parts)
    assert p_cont.abs().max() < 1e-6


@pytest.mark.parametrize("shape", [(2, 4, 1), (2, 4), (2, 4, 3, 1)])
def test_bad_part_tensors_raise_shape_error(shape):
    with pytest.raises(ShapeError):
        one_vs_rest(torch.zeros(shape))
    with pytest.raises(ShapeError):
        global_contrastive_pool(torch.zeros(shape))


def test_shapes_and_unit_rows():
    net = RelationNet(backbone="resnet18", width=0.25, input_size=(96, 32), parts=6, part_dim=16)
    assert net.dim == 7 * 16
    out = net.train()(torch.rand(3, 3, 128, 48))
    assert tuple(out.shape) == (3, 7 * 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    with torch.no_grad():
        parts = net.eval().part_features(torch.rand(2, 3, 96, 32))
    assert tuple(parts.shape) == (2, 128, 6)  # 6 strips of the stride-16 map (6 x 2)


def test_parts_are_the_strip_maxima():
    net = RelationNet(backbone="resnet18", width=0.25, input_size=(128, 64), parts=4, part_dim=8)
    x = torch.rand(2, 3, 128, 64)
    with torch.no_grad():
        fmap = net.eval().trunk_net(x)  # (2, 128, 8, 4): strips of 2 rows
        parts = net.part_features(x)
    for k in range(4):
        strip = fmap[:, :, 2 * k : 2 * k + 2].amax(dim=(2, 3))
        torch.testing.assert_close(parts[:, :, k], strip)


def test_three_stages_take_the_parts_from_stage_3_of_the_same_resnet():
    # Oracle: timm's own feature extractor of the same ResNet-18, cut after layer3 (stride 16).
    import timm

    torch.manual_seed(0)
    net = RelationNet(backbone="resnet18", input_size=(128, 48), stages=3, parts=4, part_dim=8)
    assert net.stages == 3 and len(net.trunk_net) == 4  # stem, layer1..layer3
    ref = timm.create_model("resnet18", features_only=True, out_indices=(3,)).eval()
    state = dict(net.trunk_net.state_dict())
    names = ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3"]
    stem = {f"{names[int(k[2])]}{k[3:]}": v for k, v in state.items() if k.startswith("0.")}
    rest = {f"{names[3 + int(k[0])]}{k[1:]}": v for k, v in state.items() if not k.startswith("0.")}
    assert not ref.load_state_dict({**stem, **rest}, strict=True).missing_keys
    x = torch.rand(2, 3, 128, 48)
    with torch.no_grad():
        fmap = ref(net.normalize_input(x).float().contiguous())[0]  # (2, 256, 8, 3)
        parts = net.eval().part_features(net.normalize_input(x))
    assert tuple(fmap.shape) == (2, 256, 8, 3)
    for k in range(4):
        torch.testing.assert_close(parts[:, :, k], fmap[:, :, 2 * k : 2 * k + 2].amax(dim=(2, 3)))
    full = RelationNet(backbone="resnet18", input_size=(128, 48), parts=4, part_dim=8)
    assert _n(full.trunk_net) - _n(net.trunk_net) == _n(full.trunk_net[4])  # layer4 dropped
    assert net.dim == full.dim == 5 * 8

    def head(m):  # the 1x1 reductions read 256 channels instead of 512
        return _n(m) - _n(m.trunk_net)

    assert head(full) - head(net) == 4 * (512 - 256) * 8


def test_head_parameter_count():
    # Paper head: 1x1 reductions C -> D for p_i, r_i, p_max, p_cont and the two relation convs
    # 2D -> D, each followed by BN (2 per channel); plus the BN neck over (n + 1) D values.
    c, d, n = 128, 16, 4
    net = RelationNet(backbone="resnet18", width=0.25, input_size=(64, 32), parts=n, part_dim=d)
    backbone = _n(net.trunk_net)
    expected = 4 * (c * d + 2 * d) + 2 * (2 * d * d + 2 * d) + 2 * (n + 1) * d
    assert _n(net) - backbone == expected
    plain = RelationNet(
        backbone="resnet18",
        width=0.25,
        input_size=(64, 32),
        parts=n,
        part_dim=d,
        relation=False,
        gcp=False,
    )
    assert _n(plain) - backbone == 2 * (c * d + 2 * d) + 2 * (n + 1) * d
    assert plain.dim == net.dim


def test_resnet50_paper_configuration():
    net = RelationNet()  # ResNet-50, last stride 1, 384 x 128, 6 parts of 256
    assert net.dim == 7 * 256
    assert _n(net.trunk_net) == 25_557_032 - (2048 * 1000 + 1000)


def test_relation_and_gcp_change_the_descriptor():
    torch.manual_seed(0)
    kw = {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), "parts": 3, "part_dim": 8}
    full = RelationNet(**kw).eval()
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        a = full(x)
        full.relation = False
        b = full(x)
    assert (a - b).abs().max() > 1e-4


def test_mid_parts_are_reduced_strip_maxima_of_the_previous_stage():
    # Oracle: the descriptor rebuilt by hand from the blocks' maps, adaptive_max_pool2d's strips
    # and the modules' own reductions (eval mode: the BatchNorms are fixed affine maps).
    from torch.nn.functional import adaptive_max_pool2d

    torch.manual_seed(0)
    kw = {"backbone": "resnet18", "width": 0.25, "input_size": (128, 48), "stages": 3}
    net = RelationNet(**kw, parts=4, part_dim=8, mid_parts=5).eval()
    assert net.dim == (4 + 1 + 5) * 8
    x = net.normalize_input(torch.rand(2, 3, 128, 48))
    with torch.no_grad():
        mid = net.trunk_net[:3](x)  # stage 2: (2, 32, 16, 6) at width 0.25
        last = net.trunk_net[3](mid)
        ours = net.trunk(x)
        plain = net.head(last, mid)[:, : 5 * 8]  # q_0..q_4 do not read the stage-2 map
        strips = adaptive_max_pool2d(mid, (5, 1)).squeeze(-1)  # (2, 32, 5)
        q_mid = net.reduce_mid(strips).transpose(1, 2).flatten(1)  # (2, 40)
        neck = net.neck
        scale = neck.weight / (neck.running_var + neck.eps).sqrt()
        expected = (q_mid - neck.running_mean[40:]) * scale[40:] + neck.bias[40:]
    assert tuple(mid.shape) == (2, 32, 16, 6)
    torch.testing.assert_close(ours[:, 40:], expected)
    torch.testing.assert_close(ours[:, :40], plain)
    # the training engine's cached path (the stem and layer1 run once) gives the same rows
    with torch.no_grad():
        torch.testing.assert_close(net.embed_after(net.trunk_net[:2](x), 2), ours)
    out = net.train()(torch.rand(3, 3, 128, 48))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    # one 1x1 reduction (C2 -> D, BN) more, and the neck covers the extra values
    base = RelationNet(**kw, parts=4, part_dim=8)
    assert _n(net) - _n(base) == (32 * 8 + 2 * 8) + 2 * 5 * 8


def test_mid_parts_need_the_previous_stage_map():
    torch.manual_seed(0)
    net = RelationNet(backbone="resnet18", width=0.25, input_size=(128, 48), stages=3, mid_parts=2)
    x = torch.rand(1, 3, 128, 48)
    with torch.no_grad():
        ours = net.eval().trunk(x)
        mid = net.trunk_net[:3](x)  # stage 2's map: starting from it (a cache up to stage 2) works
        torch.testing.assert_close(net.embed_after(mid, 3), ours)
        last = net.trunk_net[3](mid)
        with pytest.raises(OptionError, match="start"):
            net.embed_after(last, 4)  # nothing left to run: stage 2's map is not there
        with pytest.raises(OptionError, match="mid"):
            net.head(last)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"parts": 1},
        {"parts": 9},  # a 64 x 32 input leaves 4 rows at stride 16
        {"part_dim": 0},
        {"stages": 2},
        {"stages": 5},
        {"stages": True},
        {"stages": 3.0},
        {"stages": 3, "parts": 5},  # stage 3 of a 64 x 32 input is 4 rows high too
        {"mid_parts": -1},
        {"mid_parts": True},
        {"mid_parts": 2.0},
        {"mid_parts": 5},  # stage 3 (the map before stage 4) of a 64 x 32 input is 4 rows high
        {"stages": 3, "mid_parts": 9},  # stage 2 of a 64 x 32 input is 8 rows high
        {"backbone": "vit_tiny_patch16_224"},
    ],
)
def test_bad_options_raise_option_error(kwargs):
    with pytest.raises(OptionError):
        RelationNet(**{"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), **kwargs})


def test_registered():
    net = lookalike.create(
        "descriptor", "relation_net", backbone="resnet18", input_size=(64, 32), parts=4
    )
    assert isinstance(net, RelationNet)
