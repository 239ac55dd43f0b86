"""Multi-scale fusion layers: ASFF, the multi-scale fusion residual block, ASPConv, FMF, cat/add fusion.

Oracles: the published formulas written out with ``torch.nn.functional`` on the modules' own weights
(a second, independent wiring), explicit loops for pixel shuffle and resizing, hand cases.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_close, randomize_
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers.asff import ASFF, resize_to
from lookalike.layers.atrous import ASPConv, FastMultiScaleFusion
from lookalike.layers.fusion import AddFusion, CatFusion
from lookalike.layers.msffrb import MultiScaleFusionBlock


def _conv(seq: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """conv (+ eval BatchNorm) (+ ReLU) written out with F.conv2d / F.batch_norm."""
    conv, rest = seq[0], list(seq)[1:]
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    for m in rest:
        if isinstance(m, nn.BatchNorm2d):
            y = F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
        elif isinstance(m, nn.ReLU):
            y = y.clamp(min=0)
        else:
            raise AssertionError(f"unexpected {m}")
    return y


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    return randomize_(module, seed).eval()


def _resize_loop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling by an integer factor or max pooling over integer blocks, by loops."""
    b, c, h, w = x.shape
    out = torch.empty(b, c, *size, dtype=x.dtype)
    for i in range(size[0]):
        for j in range(size[1]):
            if size[0] >= h:
                out[:, :, i, j] = x[:, :, i * h // size[0], j * w // size[1]]
            else:
                fi, fj = h // size[0], w // size[1]
                out[:, :, i, j] = x[:, :, i * fi : (i + 1) * fi, j * fj : (j + 1) * fj].amax((2, 3))
    return out


def test_resize_to_matches_loops():
    x = torch.randn(2, 3, 8, 8)
    for size in [(2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]:
        assert_close(resize_to(x, size), _resize_loop(x, size))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_asff_equals_the_published_formula(level):
    asff = _randomize(ASFF((4, 8, 16), level=level, compress_channels=3), seed=level)
    gen = torch.Generator().manual_seed(10)
    xs = [torch.randn(2, c, s, s, generator=gen) for c, s in ((4, 8), (8, 4), (16, 2))]
    size = xs[level].shape[2:]
    resized = []
    for i, x in enumerate(xs):
        adapt = asff.adapt[i]
        y = x if isinstance(adapt, nn.Identity) else _conv(adapt, x)
        resized.append(_resize_loop(y, tuple(size)))
    logits = F.conv2d(
        torch.cat([_conv(asff.compress[i], r) for i, r in enumerate(resized)], 1),
        asff.weight.weight,
        asff.weight.bias,
    )
    w = logits.exp() / logits.exp().sum(1, keepdim=True)
    fused = w[:, 0:1] * resized[0] + w[:, 1:2] * resized[1] + w[:, 2:3] * resized[2]
    assert_close(asff(*xs), _conv(asff.expand, fused))
    assert_close(asff.fusion_weights(*xs).sum(1), torch.ones(2, *size))


def test_asff_errors():
    asff = ASFF((4, 8, 16))
    with pytest.raises(ShapeError):
        asff(torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4))
    with pytest.raises(ShapeError):
        asff(torch.rand(2, 4, 8, 8), torch.rand(3, 8, 4, 4), torch.rand(2, 16, 2, 2))
    with pytest.raises(OptionError):
        ASFF((4, 8, 16), level=3)


def test_msffrb_equals_msrn_formula():
    block = _randomize(MultiScaleFusionBlock(4, kernel_sizes=(3, 5)))
    x = torch.randn(2, 4, 9, 9)
    s1, p1 = _conv(block.stage1[0], x), _conv(block.stage1[1], x)
    s2 = _conv(block.stage2[0], torch.cat([s1, p1], 1))
    p2 = _conv(block.stage2[1], torch.cat([s1, p1], 1))
    expected = x + F.conv2d(torch.cat([s2, p2], 1), block.fuse.weight, block.fuse.bias)
    assert_close(block(x), expected)
    assert block.stage1[1][0].kernel_size == (5, 5)


def test_msffrb_with_zero_fusion_is_the_identity_and_dilations():
    block = MultiScaleFusionBlock(6, kernel_sizes=(3, 3, 3), dilations=(1, 2, 4))
    nn.init.zeros_(block.fuse.weight)
    nn.init.zeros_(block.fuse.bias)
    x = torch.randn(2, 6, 11, 11)
    assert torch.equal(block(x), x)
    assert [p[0].dilation for p in block.stage1] == [(1, 1), (2, 2), (4, 4)]
    with pytest.raises(OptionError):
        MultiScaleFusionBlock(4, kernel_sizes=(3, 4))
    with pytest.raises(OptionError):
        MultiScaleFusionBlock(4, kernel_sizes=(3, 5), dilations=(1,))


def test_aspconv_equals_cascade_formula():
    block = _randomize(ASPConv(8, dilations=(1, 2, 3, 4)), seed=3)
    x = torch.randn(2, 8, 12, 12)
    parts = [x[:, 2 * i : 2 * i + 2] for i in range(4)]
    ys = [_conv(block.branches[0], parts[0])]
    for i in range(1, 4):
        ys.append(_conv(block.branches[i], parts[i] + ys[-1]))
    expected = x + _conv(block.fuse, torch.cat(ys, 1))
    assert_close(block(x), expected)
    assert [b[0].dilation for b in block.branches] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    with pytest.raises(OptionError):
        ASPConv(10, dilations=(1, 2, 3))


def _pixel_shuffle_loop(x: torch.Tensor, r: int) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.empty(b, c // (r * r), h * r, w * r, dtype=x.dtype)
    for ch in range(c // (r * r)):
        for i in range(h * r):
            for j in range(w * r):
                out[:, ch, i, j] = x[:, ch * r * r + (i % r) * r + (j % r), i // r, j // r]
    return out


def test_fmf_equals_its_formula_with_explicit_pixel_shuffle():
    fmf = _randomize(FastMultiScaleFusion((4, 6), channels=5), seed=5)
    high, low = torch.randn(2, 4, 8, 6), torch.randn(2, 6, 4, 3)
    up_n = _resize_loop(_conv(fmf.nearest, low), (8, 6))
    up_s = _pixel_shuffle_loop(_conv(fmf.subpixel, low), 2)
    expected = _conv(fmf.fuse, torch.cat([_conv(fmf.high, high), up_n, up_s], 1))
    assert_close(fmf(high, low), expected)
    with pytest.raises(ShapeError):
        fmf(high, torch.randn(2, 6, 4, 4))
    with pytest.raises(ShapeError):
        fmf(high, torch.randn(3, 6, 4, 3))


def test_cat_and_add_fusion_hand_cases():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)
    assert torch.equal(CatFusion((3, 2))(a, b), torch.cat([a, b], 1))
    cat = _randomize(CatFusion((3, 2), out_channels=4), seed=6)
    assert_close(cat(a, b), _conv(cat.proj, torch.cat([a, b], 1)))
    add = _randomize(AddFusion((3, 2), act_layer=None), seed=7)
    assert isinstance(add.proj[0], nn.Identity)
    assert_close(add(a, b), a + _conv(add.proj[1], b))
    relu = AddFusion((3, 3))
    assert torch.equal(relu(a, a), (2 * a).clamp(min=0))
    with pytest.raises(ShapeError):
        add(a)
    with pytest.raises(ShapeError):
        add(a, torch.randn(2, 2, 4, 5))
    with pytest.raises(ShapeError):
        cat(a, torch.randn(2, 3, 4, 4))
