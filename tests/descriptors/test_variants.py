"""HardNet variants of the patch ablation: block placement, HardNet as oracle, attention pooling by hand."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lookalike
from conftest import randomize_
from lookalike.core.config import load_config, to_dict
from lookalike.core.errors import OptionError
from lookalike.core.weights import save_weights
from lookalike.descriptors.patch.hardnet import HardNet
from lookalike.descriptors.patch.variants import STAGES, count_parameters
from lookalike.layers.atrous import ASPConv
from lookalike.layers.cbam import CBAM
from lookalike.layers.se import SqueezeExcite
from lookalike.train.recipe import TrainRecipe

BLOCKED = {"hardnet_se": SqueezeExcite, "hardnet_cbam": CBAM, "hardnet_ms": ASPConv}
DEFAULT_STAGES = {"hardnet_se": ("32", "16", "8"), "hardnet_cbam": ("32", "16", "8")}
DEFAULT_STAGES["hardnet_ms"] = ("16", "8")
VARIANTS = (*BLOCKED, "hardnet_attnpool")


def _patches(batch: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


@functools.cache
def _built(name: str, seed: int, kwargs: tuple) -> torch.nn.Module:
    torch.manual_seed(seed)
    return lookalike.create("descriptor", name, **dict(kwargs))


def _make(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A fresh copy of a registered network built with ``seed`` (each construction runs once)."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    return copy.deepcopy(_built(name, seed, frozen))


def _hardnet_with_trunk_of(model: torch.nn.Module) -> HardNet:
    """A plain HardNet holding every HardNet-named weight of ``model`` (strict on HardNet's side)."""
    ref = _make("hardnet").eval()
    state = model.state_dict()
    ref.load_state_dict({k: state[k] for k in ref.state_dict()})
    return ref


@pytest.mark.parametrize("name", VARIANTS)
def test_trunk_initialised_exactly_like_hardnet(name):
    ref, net = _make("hardnet").state_dict(), _make(name).state_dict()
    trunk = [k for k in ref if not k.startswith("features.19.")]  # all but the final k×k conv
    assert len(trunk) > 0
    for key in trunk:
        torch.testing.assert_close(net[key], ref[key], rtol=0, atol=0, msg=key)
    if name != "hardnet_attnpool":
        torch.testing.assert_close(net["features.19.weight"], ref["features.19.weight"])


@pytest.mark.parametrize("name", list(BLOCKED))
def test_blocks_sit_after_the_stated_stages_and_count_their_parameters(name):
    net = _make(name)
    stages = DEFAULT_STAGES[name]
    assert net.stages == stages
    extra = 0
    for stage in ("32", "16", "8"):
        index, channels = STAGES[stage]
        mod = net.features[index]
        if stage in stages:
            assert isinstance(mod[0], torch.nn.ReLU) and isinstance(mod[1], BLOCKED[name])
            assert mod[1].channels == channels
            extra += count_parameters(mod[1])
        else:
            assert isinstance(mod, torch.nn.ReLU)
    assert (
        count_parameters(net)
        == count_parameters(_make("hardnet")) + extra
        > count_parameters(_make("hardnet"))
    )


@pytest.mark.parametrize("name", list(BLOCKED))
def test_forward_equals_a_hand_written_trunk_with_the_blocks(name):
    """Oracle: HardNet's modules applied one by one, the block applied after each stated stage's ReLU."""
    net = randomize_(_make(name), seed=1).eval()
    ref = _hardnet_with_trunk_of(net)
    blocks = dict(zip(sorted(net.stages, key=lambda s: STAGES[s][0]), net.blocks()))
    after = {{"32": 5, "16": 11, "8": 17}[stage]: block for stage, block in blocks.items()}
    x = _patches()
    with torch.no_grad():
        z = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-6)
        for i, mod in enumerate(ref.features):
            z = mod(z)
            if i in after:
                z = after[i](z)
        expected = F.normalize(z.flatten(1), dim=1)
        got = net(x)
        plain = ref(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3, "the block must change the descriptor"


def test_se_with_open_gates_is_hardnet():
    """Oracle: HardNet itself; SE gates of exactly 1 (sigmoid(40) == 1 in float32) leave the trunk alone."""
    net = randomize_(_make("hardnet_se"), seed=2).eval()
    with torch.no_grad():
        for se in net.blocks():
            se.fc2.weight.zero_()
            se.fc2.bias.fill_(40.0)
    x = _patches(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _hardnet_with_trunk_of(net)(x), rtol=0, atol=0)


def test_aspconv_with_a_zero_fusion_is_hardnet():
    """ASPConv is a residual block: a zero fusion (BN scale and shift 0, then ReLU) is the identity."""
    net = randomize_(_make("hardnet_ms"), seed=4).eval()
    with torch.no_grad():
        for block in net.blocks():
            block.fuse[1].weight.zero_()
            block.fuse[1].bias.zero_()
    x = _patches(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _hardnet_with_trunk_of(net)(x), rtol=0, atol=0)


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - bn.running_mean.view(shape)) / (bn.running_var.view(shape) + bn.eps).sqrt()


def test_attention_pooling_by_hand():
    """Untrained (zero queries) it averages; with queries, per-head softmax weights over the 8×8 positions."""
    net = randomize_(_make("hardnet_attnpool"), seed=6).eval()
    heads, key_dim = net.attention.num_heads, net.attention.key_dim
    x = _patches(seed=7)
    ref = _make("hardnet").eval()
    ours = net.state_dict()
    head = (
        "features.19.",
        "features.20.",
    )  # HardNet's final conv and BN: replaced by the pooling head
    ref.load_state_dict(
        {k: v if k.startswith(head) else ours[k] for k, v in ref.state_dict().items()}
    )
    conv, bn1, bn2 = net.features[19], net.features[20], net.features[23]
    with torch.no_grad():
        z = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-6)
        trunk = ref.features[:18](z)  # through the last ReLU (dropout is off in eval)
        v = torch.relu(_bn(F.conv2d(trunk, conv.weight), bn1)).flatten(2)  # (B, D, 64)
        k = F.conv2d(v.view(-1, net.dim, 8, 8), net.attention.key.weight, net.attention.key.bias)
        k = k.flatten(2).view(len(x), heads, key_dim, 64)
        pooled = []
        for b in range(len(x)):
            rows = []
            for h in range(heads):
                logits = torch.stack([net.attention.query[h] @ k[b, h, :, p] for p in range(64)])
                w = torch.softmax(logits / key_dim**0.5, dim=0)
                group = v[b, h * net.dim // heads : (h + 1) * net.dim // heads]
                rows.append((group * w).sum(1))
            pooled.append(torch.cat(rows))
        expected = F.normalize(_bn(torch.stack(pooled), bn2), dim=1)
        torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)
        net.attention.query.zero_()
        average = F.normalize(_bn(v.mean(2), bn2), dim=1)
        torch.testing.assert_close(net(x), average, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_inference_copy_matches(name):
    net = randomize_(_make(name), seed=8).eval()
    x = _patches(16, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(net.fuse_for_inference()(x), net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", [48, 64])
def test_larger_patches(name, size):
    net = _make(name, patch_size=size).eval()
    with torch.no_grad():
        out = net(_patches(3, size=size))
    assert out.shape == (3, 128)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("hardnet_cbam", {"stages": ["8"], "spatial_kernel_size": 3}),
        ("hardnet_ms", {"stages": ["32"], "dilations": [1, 2]}),
        ("hardnet_attnpool", {"num_heads": 4, "key_dim": 8, "dim": 64}),
    ],
)
def test_weights_round_trip_restores_the_options(tmp_path, name, kwargs):
    net = randomize_(_make(name, **kwargs), seed=10).eval()
    path = save_weights(net, tmp_path / "w.safetensors")
    again = lookalike.create("descriptor", name, weights=str(path))
    x = _patches(seed=11)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("hardnet_se", {"stages": "8"}),
        ("hardnet_se", {"stages": ["4"]}),
        ("hardnet_se", {"stages": []}),
        ("hardnet_cbam", {"stages": ["8", "8"]}),
        ("hardnet_cbam", {"spatial_kernel_size": 4}),
        ("hardnet_ms", {"dilations": [1, 2, 3]}),  # 3 groups do not divide 64 channels
        ("hardnet_attnpool", {"num_heads": 3}),
        ("hardnet_se", {"patch_size": 40}),
        ("hardnet_se", {"width": 3}),
    ],
)
def test_bad_options_raise_option_error(name, kwargs):
    with pytest.raises(OptionError):
        lookalike.create("descriptor", name, **kwargs)


def test_ablation_configs_share_one_recipe_and_budget():
    """Every row of configs/ablation differs from the reference row by its model (and name) only."""
    folder = Path(__file__).resolve().parents[2] / "configs" / "ablation"
    recipes = {p.stem: load_config(TrainRecipe, p, []) for p in sorted(folder.glob("*.yaml"))}
    assert {"hardnet", *VARIANTS, "stn_hardnet"} <= set(recipes)
    reference = to_dict(recipes["hardnet"])
    shipped = to_dict(load_config(TrainRecipe, folder.parent / "hardnet_bundled.yaml", []))
    for key in ("task", "loss", "data", "optim", "seed", "bf16"):
        assert reference[key] == shipped[key], key  # the bundled recipe, shorter
    registered = set(lookalike.list_registered("descriptor"))
    for stem, recipe in recipes.items():
        row = to_dict(recipe)
        assert row.pop("model") == {"name": stem, "kwargs": {}} and stem in registered
        assert row.pop("name") == f"ablation_{stem}"
        assert row == {k: v for k, v in reference.items() if k not in ("model", "name")}
