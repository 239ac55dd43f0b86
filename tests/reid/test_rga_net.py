"""``rga``: shapes, parameter counts against the paper's description, options, weights files."""

from __future__ import annotations

import pytest
import torch

import lookalike
from lookalike.core.errors import OptionError
from lookalike.descriptors.reid._backbone import resnet_stages
from lookalike.descriptors.reid.rga_net import RGANet

#: Parameters of torchvision's / the ResNet paper's ResNet-50 (25,557,032) minus its 1000-way
#: classifier (2048 x 1000 weights + 1000 biases): the backbone of the RGA paper.
RESNET50_WITHOUT_FC = 25_557_032 - (2048 * 1000 + 1000)


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gate_params(nodes: int, feat: int, s: int = 8, g: int = 8) -> int:
    """Parameters of one relation-aware gate from the paper's Sec. 3 (bias-free 1x1 convs + BN).

    Embeddings theta, phi (relations) and psi (the node's own feature): ``feat -> feat/s`` each; the
    relation vector (``2 nodes`` values) embedded to ``nodes/s``; the gate MLP
    ``1 + nodes/s -> (1 + nodes/s)/g -> 1``. Every conv is followed by BatchNorm (2 per channel).
    """
    f, n = feat // s, nodes // s
    hidden = (1 + n) // g
    weights = 3 * feat * f + 2 * nodes * n + (1 + n) * hidden + hidden
    return weights + 2 * (3 * f + n + hidden + 1)


def _rga_sc_params(channels: int, h: int, w: int) -> int:
    """RGA-S (nodes: the ``h w`` positions, ``C``-d) plus RGA-C (nodes: the ``C`` channels, ``hw``-d)."""
    return _gate_params(h * w, channels) + _gate_params(channels, h * w)


@pytest.fixture(scope="module")
def rga50() -> RGANet:
    return RGANet()


def test_resnet50_rga_sc_parameter_count_matches_the_paper(rga50):
    # Paper settings: 256 x 128 input, last stride 1, RGA-SC after stages 1-4 with s = 8.
    assert _n(rga50.stem) + sum(_n(s) for s in rga50.stages) == RESNET50_WITHOUT_FC
    sizes = [(64, 32), (32, 16), (16, 8), (16, 8)]
    for module, c, (h, w) in zip(rga50.attention, (256, 512, 1024, 2048), sizes, strict=True):
        assert _n(module) == _rga_sc_params(c, h, w), (c, h, w)
    expected = RESNET50_WITHOUT_FC + sum(
        _rga_sc_params(c, h, w) for c, (h, w) in zip((256, 512, 1024, 2048), sizes, strict=True)
    )
    assert _n(rga50) == expected + 2 * 2048  # + the BNNeck
    assert rga50.dim == 2048


@pytest.mark.slow
def test_resnet50_rga_feature_maps_and_output(rga50):
    x = torch.rand(2, 3, 256, 128)
    with torch.no_grad():
        fmap = rga50.eval().feature_map(rga50.normalize_input(x))
        out = rga50(x)
    assert tuple(fmap.shape) == (2, 2048, 16, 8)  # last stride 1: stride 16
    assert tuple(out.shape) == (2, 2048)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("last_stride, rows", [(1, 8), (2, 4)])
def test_last_stride_sets_the_last_feature_map(last_stride, rows):
    net = RGANet(backbone="resnet18", width=0.25, input_size=(128, 64), last_stride=last_stride)
    with torch.no_grad():
        fmap = net.eval().feature_map(torch.rand(1, 3, 128, 64))
    assert tuple(fmap.shape[2:]) == (rows, rows // 2)


def test_any_size_is_resized_to_the_input_size():
    net = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32), dim=32).eval()
    x = torch.rand(3, 3, 128, 48)
    resized = torch.nn.functional.interpolate(x, size=(64, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(resized), atol=1e-5, rtol=0)


def test_512_d_output_projects_before_the_bnneck():
    net = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32), dim=512)
    assert net.dim == 512 and net.project is not None
    assert tuple(net.project.weight.shape) == (512, 128)
    assert not net.neck.bias.requires_grad  # BNNeck bias frozen
    out = net.train()(torch.rand(4, 3, 64, 32))
    assert tuple(out.shape) == (4, 512)


def test_plain_baseline_has_no_attention():
    net = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32), stages=())
    assert all(isinstance(m, torch.nn.Identity) for m in net.attention)
    spatial_only = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32), channel=False)
    assert all(not hasattr(m, "channel") and hasattr(m, "spatial") for m in spatial_only.attention)


def _gates(net):
    from lookalike.layers.rga import _RelationGate

    return [m for m in net.modules() if isinstance(m, _RelationGate)]


def test_gates_start_at_one_half_and_attention_changes_the_descriptor_once_trained():
    torch.manual_seed(0)
    net = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32)).eval()
    x = torch.rand(2, 3, 64, 32)
    gates = _gates(net)
    assert len(gates) == 8  # RGA-S and RGA-C after each of the four stages
    with torch.no_grad():
        # a fresh gate is one scale (0.5) for every node: the descriptor equals the plain trunk's
        # (the first RGA-S gate: 16 channels at 16 x 8 positions = 128 nodes)
        assert torch.all(gates[0](torch.rand(2, 16, 128, 1)) == 0.5)
        with_rga = net(x)
        plain = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32)).eval()
        plain.load_state_dict(net.state_dict())
        plain.attention = torch.nn.ModuleList(torch.nn.Identity() for _ in range(4))
        torch.testing.assert_close(with_rga, plain(x), atol=1e-5, rtol=1e-4)
        for gate in gates:  # gates that learned something (a random scale per node)
            torch.nn.init.normal_(gate.gate[1][1].weight)
        assert (net(x) - plain(x)).abs().max() > 1e-3


def test_backbone_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet18")  # a full checkpoint: its classifier is skipped
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    net = RGANet(backbone="resnet18", input_size=(64, 32), backbone_weights=path)
    torch.testing.assert_close(net.stem[0].weight, source.conv1.weight)
    torch.testing.assert_close(net.stages[3][1].conv2.weight, source.layer4[1].conv2.weight)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backbone": "no-such-net"},
        {"backbone": "efficientnet_b0"},  # not a ResNet
        {"backbone": "resnet18", "last_stride": 3},
        {"backbone": "resnet18", "stages": (0, 5)},
        {"backbone": "resnet18", "spatial": False, "channel": False},
        {"backbone": "resnet18", "dim": 0},
        {"backbone": "resnet18", "input_size": (16, 8)},
        {"backbone": "resnet18", "width": 0.5, "pretrained": True},
        {"backbone": "resnet18", "reduction": 0},
    ],
)
def test_bad_options_raise_option_error(kwargs):
    with pytest.raises(OptionError):
        RGANet(**{"input_size": (64, 32), **kwargs})


def test_width_multiplier_and_stage_sizes():
    net = resnet_stages("resnet18", width=0.25, last_stride=1)
    assert net.channels == [16, 32, 64, 128]
    assert net.feature_sizes((128, 48)) == [(32, 12), (16, 6), (8, 3), (8, 3)]


def test_registered_and_trains_one_step():
    net = lookalike.create(
        "descriptor", "rga", backbone="resnet18", width=0.25, input_size=(64, 32), dim=64
    ).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.rand(4, 3, 64, 32)).sum().backward()
    opt.step()
    changed = sum(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))
    assert changed > 0
