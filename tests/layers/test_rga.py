"""RGA-S / RGA-C: the authors' forward restated as an oracle, parameter counts, a toy distractor task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lookalike
from conftest import assert_close, randomize_
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers.rga import RGAChannel, RGAModule, RGASpatial


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    return randomize_(module, seed).eval()


def _rga_s_reference(m: RGASpatial, x: torch.Tensor) -> torch.Tensor:
    """RGA-S as the paper's equations: relation r_ij = θ(x_i)·φ(x_j), y_i = [pool_c(ψ(x_i)), ϕ([r_i,:, r_:,i])]."""
    g = m.relation
    b, _, h, w = x.shape
    n = h * w
    theta = g.theta(x).flatten(2)  # (B, c', N)
    phi = g.phi(x).flatten(2)
    rel = torch.zeros(b, n, n)
    for i in range(n):
        for j in range(n):
            rel[:, i, j] = (theta[:, :, i] * phi[:, :, j]).sum(1)
    vec = torch.zeros(b, 2 * n, h, w)
    for i in range(n):
        vec[:, :n, i // w, i % w] = rel[:, i, :]  # outgoing relations of node i
        vec[:, n:, i // w, i % w] = rel[:, :, i]  # incoming relations of node i
    own = g.node(x).mean(1, keepdim=True)
    y = torch.cat([own, g.relation(vec)], 1)
    return x * g.gate(y)


def _rga_c_reference(m: RGAChannel, x: torch.Tensor) -> torch.Tensor:
    """RGA-C: the same with channels as nodes (node features are the H·W maps)."""
    g = m.relation
    b, c, h, w = x.shape
    nodes = x.reshape(b, c, h * w).permute(0, 2, 1).unsqueeze(-1)  # (B, HW, C, 1)
    theta = g.theta(nodes)[..., 0]  # (B, hw', C)
    phi = g.phi(nodes)[..., 0]
    rel = torch.zeros(b, c, c)
    for i in range(c):
        for j in range(c):
            rel[:, i, j] = (theta[:, :, i] * phi[:, :, j]).sum(1)
    vec = torch.zeros(b, 2 * c, c, 1)
    for i in range(c):
        vec[:, :c, i, 0] = rel[:, i, :]  # outgoing relations of channel i
        vec[:, c:, i, 0] = rel[:, :, i]  # incoming relations of channel i
    own = g.node(nodes).mean(1, keepdim=True)
    gate = g.gate(torch.cat([own, g.relation(vec)], 1))  # (B, 1, C, 1)
    return x * gate.reshape(b, c, 1, 1)


def test_rga_s_equals_the_equations():
    m = _randomize(RGASpatial(16, feat_size=(8, 8)), seed=1)
    x = torch.randn(2, 16, 8, 8)
    assert_close(m(x), _rga_s_reference(m, x), atol=1e-5, rtol=1e-4)


def test_rga_c_equals_the_equations():
    m = _randomize(RGAChannel(64, feat_size=(4, 4)), seed=2)
    x = torch.randn(2, 64, 4, 4)
    assert_close(m(x), _rga_c_reference(m, x), atol=1e-5, rtol=1e-4)


def _expected_params(nodes: int, feat: int, s: int = 8, d: int = 8) -> int:
    """Parameters from the paper's description (1×1 convs without bias, each followed by BatchNorm)."""
    fe, no = feat // s, nodes // s
    embeds = 3 * (feat * fe + 2 * fe)  # θ, φ and the node embedding ψ
    relation = 2 * nodes * no + 2 * no  # relation vector (2·nodes) → nodes/s
    hidden = (1 + no) // d
    gate = (1 + no) * hidden + 2 * hidden + hidden * 1 + 2
    return embeds + relation + gate


@pytest.mark.parametrize(
    "channels, size",
    [
        (256, (64, 32)),
        (512, (32, 16)),
        (1024, (16, 8)),
        (2048, (16, 8)),
    ],  # ResNet-50, 256×128, last stride 1
)
def test_parameter_counts_match_the_paper_description(channels, size):
    n = size[0] * size[1]
    spatial = RGASpatial(channels, feat_size=size)
    channel = RGAChannel(channels, feat_size=size)
    assert sum(p.numel() for p in spatial.parameters()) == _expected_params(n, channels)
    assert sum(p.numel() for p in channel.parameters()) == _expected_params(channels, n)
    # relation embeddings: RGA-S sees 2·H·W relations per position, RGA-C 2·C per channel
    assert spatial.relation.relation[0].in_channels == 2 * n
    assert channel.relation.relation[0].in_channels == 2 * channels


def test_shapes_gates_and_errors():
    x = torch.randn(3, 64, 16, 8)
    sc = RGAModule(64, feat_size=(16, 8)).eval()
    assert sc(x).shape == x.shape and list(dict(sc.named_children())) == ["spatial", "channel"]
    a = sc.spatial.attention(x)
    assert a.shape == (3, 1, 16, 8) and bool(((a > 0) & (a < 1)).all())
    assert sc.channel.attention(x).shape == (3, 64, 1, 1)
    with pytest.raises(ShapeError):
        sc(torch.randn(3, 64, 8, 16))
    with pytest.raises(OptionError):
        RGASpatial(16, feat_size=(4, 4))  # 16 positions // 8 = 2, (1 + 2) // 8 = 0 gate channels
    with pytest.raises(OptionError):
        RGAModule(64, feat_size=(16, 8), spatial=False, channel=False)
    assert isinstance(lookalike.create("layer", "rga_s", channels=64), RGASpatial)
    assert isinstance(lookalike.create("layer", "rga_c", channels=64), RGAChannel)


def _distractor_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features with a 3×3 distractor patch (a fixed strong pattern) at a random place."""
    x = torch.randn(n, 16, 8, 8, generator=gen) * 0.5
    mask = torch.zeros(n, 1, 8, 8)
    pattern = torch.linspace(-2.0, 2.0, 16).view(16, 1, 1)
    for b in range(n):
        i, j = torch.randint(0, 6, (2,), generator=gen).tolist()
        x[b, :, i : i + 3, j : j + 3] = pattern + 0.1 * torch.randn(16, 3, 3, generator=gen)
        mask[b, :, i : i + 3, j : j + 3] = 1.0
    return x, mask


@pytest.mark.slow
def test_rga_s_gate_learns_to_suppress_a_distractor_region():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    m = RGASpatial(16, feat_size=(8, 8))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(120):
        x, mask = _distractor_batch(16, gen)
        loss = F.mse_loss(m(x), x * (1 - mask))  # keep everything but the distractor
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    x, mask = _distractor_batch(32, torch.Generator().manual_seed(99))
    with torch.no_grad():
        gate = m.attention(x)
    inside = gate[mask.bool()].mean()
    outside = gate[~mask.bool()].mean()
    assert inside < 0.2 and outside > 0.8, (float(inside), float(outside))


def test_rga_halves_share_one_base_with_nodes_on_the_right_axis():
    """RGA-S: H·W position nodes with C-d features; RGA-C: C channel nodes with H·W-d features."""
    from lookalike.layers._common import GatedAttention

    kw = {"feat_size": (4, 2), "reduction": 2, "gate_reduction": 2}
    s, c = RGASpatial(16, **kw), RGAChannel(16, **kw)
    assert isinstance(s, GatedAttention) and isinstance(c, GatedAttention)
    # relation embedding input: 2 * nodes; node embedding input: the node feature size
    assert s.relation.relation[0].in_channels == 2 * 8 and s.relation.node[0].in_channels == 16
    assert c.relation.relation[0].in_channels == 2 * 16 and c.relation.node[0].in_channels == 8
    x = torch.rand(2, 16, 4, 2)
    for m in (_randomize(s), _randomize(c)):
        assert_close(m(x), x * m.attention(x))
        with pytest.raises(ShapeError):
            m(torch.rand(2, 16, 2, 4))


def test_gated_attention_base_multiplies_by_the_gate():
    from lookalike.layers._common import GatedAttention
    from lookalike.layers.cbam import ChannelAttention, SpatialAttention

    class Ramp(GatedAttention):
        def attention(self, x):
            return torch.arange(x.shape[1], dtype=x.dtype).view(1, -1, 1, 1)

    x = torch.ones(1, 3, 2, 2)
    assert Ramp()(x)[0, :, 0, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(NotImplementedError):
        GatedAttention()(x)
    y = torch.rand(2, 8, 5, 5)
    for m in (ChannelAttention(8, rd_channels=2), SpatialAttention(kernel_size=3)):
        m = _randomize(m)
        assert isinstance(m, GatedAttention)
        assert_close(m(y), y * m.attention(y))
