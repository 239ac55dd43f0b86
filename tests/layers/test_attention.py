"""SE, CBAM, attention placement and attention pooling: timm oracles, hand cases, brute-force loops."""

from __future__ import annotations

import functools

import pytest
import timm.layers as timm_layers
import torch
from torch import nn

import lookalike
from conftest import assert_close, gradcheck, randomize_
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers.attention_pool import AttentionPool, attention_pool
from lookalike.layers.cbam import CBAM, AttentionConv
from lookalike.layers.se import SqueezeExcite, make_divisible


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    return randomize_(module, seed, scale=0.5)


@pytest.mark.parametrize("channels, rd_ratio", [(32, 1 / 16), (64, 0.25), (24, 1 / 8)])
def test_se_equals_timm_semodule_with_the_same_weights(channels, rd_ratio):
    ref = _randomize(timm_layers.SEModule(channels, rd_ratio=rd_ratio)).eval()
    ours = SqueezeExcite(channels, rd_ratio=rd_ratio).eval()
    ours.load_state_dict(ref.state_dict())  # strict: same keys and shapes
    x = torch.randn(3, channels, 7, 5)
    assert_close(ours(x), ref(x))


def test_se_with_norm_and_hard_sigmoid_equals_timm():
    ref = timm_layers.SEModule(
        32, rd_channels=8, norm_layer=nn.BatchNorm2d, gate_layer="hard_sigmoid"
    )
    ref = _randomize(ref, seed=1).eval()
    ours = SqueezeExcite(32, rd_channels=8, norm_layer=nn.BatchNorm2d, gate_layer="hard_sigmoid")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 32, 3, 3)
    assert_close(ours.eval()(x), ref(x))


def test_se_hand_computed_gate():
    se = SqueezeExcite(2, rd_channels=1, act_layer=nn.Identity)
    with torch.no_grad():
        se.fc1.weight.fill_(1.0)
        se.fc1.bias.zero_()
        se.fc2.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        se.fc2.bias.zero_()
    x = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0)])[None]  # channel means 1, 2
    gate = torch.sigmoid(torch.tensor([3.0, -3.0]))  # s = 1 + 2 = 3
    assert_close(se(x), x * gate.view(1, 2, 1, 1))


def test_make_divisible_matches_timm():
    from timm.layers import make_divisible as timm_make_divisible

    for v in [0.5, 1.0, 3.9, 4.0, 12.3, 20.0, 37.5, 100.0]:
        for d in (1, 4, 8):
            assert make_divisible(v, d) == timm_make_divisible(v, d, round_limit=0.0)


def test_cbam_equals_timm_cbam_module_with_the_same_weights():
    ref = _randomize(
        timm_layers.cbam.CbamModule(32, rd_ratio=1 / 8, spatial_kernel_size=5), seed=2
    ).eval()
    ours = CBAM(32, rd_ratio=1 / 8, spatial_kernel_size=5).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 32, 9, 6)
    assert_close(ours(x), ref(x))


def test_mbconv_from_timm_takes_our_se_and_matches_timms_se():
    from timm.models._efficientnet_blocks import InvertedResidual
    from timm.models._efficientnet_blocks import SqueezeExcite as TimmSE

    ours_se = functools.partial(SqueezeExcite, rd_ratio=0.25, rd_divisor=1)
    timm_se = functools.partial(TimmSE, rd_ratio=0.25)
    ours = InvertedResidual(16, 16, exp_ratio=4.0, se_layer=ours_se).eval()
    ref = _randomize(InvertedResidual(16, 16, exp_ratio=4.0, se_layer=timm_se), seed=3).eval()
    state = {
        k.replace("se.conv_reduce", "se.fc1").replace("se.conv_expand", "se.fc2"): v
        for k, v in ref.state_dict().items()
    }
    ours.load_state_dict(state)
    x = torch.randn(2, 16, 8, 8)
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("placement", ["before", "after", "both"])
@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_attention_conv_placements(attention, placement):
    block = _randomize(
        AttentionConv(16, 32, attention=attention, placement=placement), seed=4
    ).eval()
    x = torch.randn(2, 16, 8, 8)
    conv = block.conv
    attn_type = SqueezeExcite if attention == "se" else CBAM
    expected = {
        "before": lambda: conv(block.attn_in(x)),
        "after": lambda: block.attn_out(conv(x)),
        "both": lambda: block.attn_out(conv(block.attn_in(x))),
    }[placement]()
    assert_close(block(x), expected)
    assert isinstance(block.attn_in, attn_type) == (placement != "after")
    assert isinstance(block.attn_out, attn_type) == (placement != "before")
    assert (block(x) - conv(x)).abs().max() > 1e-3  # the attention changes the output


def test_attention_conv_bad_options():
    with pytest.raises(OptionError):
        AttentionConv(8, 8, placement="inside")
    with pytest.raises(OptionError):
        AttentionConv(8, 8, attention="eca")
    with pytest.raises(ShapeError):
        AttentionConv(8, 8)(torch.rand(2, 4, 5, 5))


def _attention_pool_loop(x, keys, query):
    """Brute force: per sample, head and position, with explicit exp sums."""
    b, c, h, w = x.shape
    heads, d = query.shape
    out = torch.zeros(b, c, dtype=x.dtype)
    for n in range(b):
        for hd in range(heads):
            logits = []
            for i in range(h):
                for j in range(w):
                    k = keys[n, hd * d : (hd + 1) * d, i, j]
                    logits.append(float((query[hd] * k).sum()) / d**0.5)
            m = max(logits)
            e = [pow(2.718281828459045, v - m) for v in logits]
            z = sum(e)
            cs = c // heads
            for ch in range(hd * cs, (hd + 1) * cs):
                vals = x[n, ch].flatten().tolist()
                out[n, ch] = sum(wi / z * v for wi, v in zip(e, vals))
    return out


def test_attention_pool_matches_brute_force_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, 4, generator=gen, dtype=torch.float64)
    keys = torch.randn(2, 2 * 3, 3, 4, generator=gen, dtype=torch.float64)
    query = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    assert_close(attention_pool(x, keys, query, num_heads=2), _attention_pool_loop(x, keys, query))


def test_attention_pool_zero_query_is_average_and_sharp_query_is_max():
    pool = AttentionPool(4, key_dim=1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, 5, 5, generator=gen)
    # channel 0 takes the values 0, 1/25, ..., 24/25 in random order: a clear maximum per sample
    x[:, 0] = torch.stack([torch.randperm(25, generator=gen) / 25 for _ in range(3)]).view(3, 5, 5)
    assert_close(pool(x), x.mean((2, 3)))
    # keys = channel 0; a large query selects the position where channel 0 is largest
    with torch.no_grad():
        pool.key.weight.zero_()
        pool.key.weight[0, 0] = 1.0
        pool.key.bias.zero_()
        pool.query.fill_(1e4)
    flat = x.flatten(2)
    best = flat[:, 0].argmax(dim=1)
    expected = flat[torch.arange(3), :, best]
    assert_close(pool(x), expected)


def test_attention_pool_gradcheck_and_errors():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 3, generator=gen)
    keys = torch.randn(2, 4, 3, 3, generator=gen)
    query = torch.randn(2, 2, generator=gen)
    assert gradcheck(lambda a, k, q: attention_pool(a, k, q, num_heads=2), x, keys, query)
    with pytest.raises(OptionError):
        attention_pool(x, keys, torch.zeros(3, 2), num_heads=2)
    with pytest.raises(ShapeError):
        attention_pool(x, keys[:, :, :2], query, num_heads=2)
    with pytest.raises(OptionError):
        AttentionPool(6, num_heads=4)


def test_registered_names_build_the_classes():
    assert isinstance(lookalike.create("layer", "se", channels=8), SqueezeExcite)
    assert isinstance(lookalike.create("layer", "cbam", channels=16), CBAM)
    assert isinstance(lookalike.create("layer", "attention_pool", channels=8), AttentionPool)
