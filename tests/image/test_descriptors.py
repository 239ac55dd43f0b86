"""Global image descriptors: pooling against formulas, fusion maths, shapes, weights files, ensembles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lookalike
from conftest import gradcheck
from lookalike.core.errors import LookalikeError, OptionError, ShapeError
from lookalike.descriptors.image._backbone import create_backbone
from lookalike.descriptors.image.color_hist import (
    color_histogram,
    rgb_to_hsv,
    transformed_color_histogram,
)
from lookalike.descriptors.image.dolg import DOLGDescriptor, orthogonal_fusion
from lookalike.descriptors.image.ensemble import EnsembleDescriptor, load_ensemble
from lookalike.descriptors.image.gem import GeMDescriptor, power_mean
from lookalike.descriptors.image.hybrid_swin import HybridSwinDescriptor
from lookalike.layers.gem import GeM, SPoC, gem, mac, spoc

TINY_SWIN = {"depths": (1, 1, 1, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}


def _images(n=2, h=48, w=48, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ pooling
def test_gem_mac_spoc_against_loops():
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64) + 0.01
    for p in (1.0, 2.5, 7.0):
        loop = torch.tensor(
            [
                [(x[b, c].flatten() ** p).mean().item() ** (1 / p) for c in range(3)]
                for b in range(2)
            ],
            dtype=torch.float64,
        )
        torch.testing.assert_close(gem(x, p), loop)
    per_channel = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    expected = torch.stack(
        [gem(x[:, c : c + 1], float(per_channel[c]))[:, 0] for c in range(3)], dim=1
    )
    torch.testing.assert_close(gem(x, per_channel), expected)
    torch.testing.assert_close(mac(x), x.flatten(2).max(dim=2).values)
    torch.testing.assert_close(spoc(x), x.flatten(2).mean(dim=2))
    assert gem(x, 300.0).sub(mac(x)).abs().max() < 0.02  # p -> inf tends to max pooling
    with pytest.raises(ShapeError):
        gem(x, torch.ones(2, dtype=torch.float64))
    with pytest.raises(LookalikeError):
        gem(x[0])


def test_gem_gradcheck_in_p_and_input():
    x = (torch.rand(2, 3, 3, 3, dtype=torch.float64) + 0.1).requires_grad_(True)
    p = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a, b: gem(a, b), x, p)
    layer = GeM(p=3.0, channels=3)
    assert layer.p.shape == (3,) and layer.p.requires_grad
    assert "p" in dict(GeM(learn_p=False).named_buffers())


def test_power_mean():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 2.0])
    torch.testing.assert_close(power_mean([a, b], 1.0), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(power_mean([a, b], 3.0)[0], torch.tensor(14.0 ** (1 / 3)))


# ------------------------------------------------------------------ gem descriptor
def test_gem_descriptor_equals_pooling_of_the_backbone_map():
    torch.manual_seed(0)
    net = GeMDescriptor(backbone="resnet18", pooling="mac").eval()
    x = _images()
    with torch.no_grad():
        fmap = net.backbone((x - net.mean) / net.std)[-1]
        torch.testing.assert_close(
            net(x), F.normalize(fmap.amax(dim=(2, 3)), dim=1), rtol=1e-4, atol=1e-5
        )
        # multi-scale: power mean of the pooled features of each scale (same weights, SPoC)
        ms = net
        ms.pool, ms.scales, ms.scale_power = SPoC(), (0.5, 1.0), 2.0
        rows = []
        for s in (0.5, 1.0):
            xs = F.interpolate(x, scale_factor=s, mode="bilinear", antialias=s < 1) if s != 1 else x
            rows.append(ms.backbone((xs - net.mean) / net.std)[-1].mean(dim=(2, 3)))
        expected = F.normalize(((rows[0] ** 2 + rows[1] ** 2) / 2).sqrt(), dim=1)
        torch.testing.assert_close(ms(x), expected, rtol=1e-4, atol=1e-5)


def test_gem_descriptor_whitening():
    torch.manual_seed(0)
    pca = GeMDescriptor(backbone="resnet18", whitening="pca", dim=8).eval()
    with pytest.raises(LookalikeError, match="not fitted"):
        pca(_images())
    feats = pca.pooled_features(_images(12, 32, 32, seed=1))
    assert feats.shape == (12, 512)
    pca.fit_whitening(feats)
    out = pca(_images())
    assert out.shape == (2, 8) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert "whiten.components" in pca.state_dict()
    fc = GeMDescriptor(backbone="resnet18", whitening="fc", dim=16)
    assert fc.dim == 16 and fc(_images()).shape == (2, 16)
    with pytest.raises(OptionError, match="needs whitening"):
        GeMDescriptor(backbone="resnet18", dim=16)
    with pytest.raises(OptionError, match="pca"):
        fc.fit_whitening(feats)
    with pytest.raises(OptionError, match="timm model name"):
        GeMDescriptor(backbone="no-such-net")


def test_backbone_weights_from_a_local_timm_checkpoint(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    full = timm.create_model("resnet18", pretrained=False)
    save_file(
        {k: v.contiguous() for k, v in full.state_dict().items()}, str(tmp_path / "r18.safetensors")
    )
    torch.save(full.state_dict(), tmp_path / "r18.pth")
    for name in ("r18.safetensors", "r18.pth"):
        net = GeMDescriptor(backbone="resnet18", backbone_weights=str(tmp_path / name)).eval()
        torch.testing.assert_close(net.backbone.layer4[0].conv1.weight, full.layer4[0].conv1.weight)
    broken = {k: v for k, v in full.state_dict().items() if not k.startswith("layer4")}
    save_file({k: v.contiguous() for k, v in broken.items()}, str(tmp_path / "broken.safetensors"))
    with pytest.raises(LookalikeError, match="missing keys"):
        GeMDescriptor(backbone="resnet18", backbone_weights=str(tmp_path / "broken.safetensors"))
    with pytest.raises(OptionError, match="at most one"):
        create_backbone("resnet18", out_indices=(4,), pretrained=True, backbone_weights="x")


def test_backbone_weights_from_a_shipped_descriptor_spec():
    """``backbone_weights="gem:bundled"`` starts a network from that descriptor's trunk (re-ID recipe)."""
    from lookalike.core.weights import WeightsError
    from lookalike.descriptors.image._backbone import backbone_state
    from lookalike.descriptors.reid.relation_net import RelationNet

    shipped = lookalike.create("descriptor", "gem:bundled")
    net = RelationNet(
        backbone="resnet18",
        input_size=(128, 48),
        parts=4,
        part_dim=8,
        backbone_weights="gem:bundled",
    )
    trunk = dict(net.trunk_net.named_parameters())
    # trunk_net = Sequential(stem (conv1, bn1, act1, maxpool), layer1..layer4)
    torch.testing.assert_close(trunk["0.0.weight"], shipped.backbone.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        trunk["4.1.conv2.weight"], shipped.backbone.layer4[1].conv2.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(
        net.trunk_net[1][0].bn1.running_var, shipped.backbone.layer1[0].bn1.running_var
    )
    assert next(net.parameters()).dtype == torch.float32
    for bad, match in (
        ("no-such-file.safetensors", "descriptor spec"),
        ("hardnet:bundled", "no backbone"),
        ("gem:no-such-weights", "neither a file nor a known name"),
    ):
        with pytest.raises(WeightsError, match=match):
            backbone_state(bad)
    with pytest.raises(LookalikeError, match=r"shape mismatch|missing keys"):
        GeMDescriptor(backbone="resnet34", backbone_weights="gem:bundled")


def test_a_network_saved_after_a_start_from_a_file_loads_without_that_file(tmp_path):
    """``backbone_weights`` / ``pretrained`` only choose the start: the saved file loads on its own."""
    from safetensors.torch import save_file

    from lookalike._registry import START_ONLY_KEYWORDS
    from lookalike.core.weights import read_metadata, save_weights
    from lookalike.descriptors.image._backbone import backbone_state

    start = tmp_path / "start.safetensors"
    state, _ = backbone_state("gem:bundled")
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(start))
    kwargs = {"backbone": "resnet18", "input_size": [64, 32], "parts": 2, "part_dim": 8}
    net = lookalike.create("descriptor", "relation_net", backbone_weights=str(start), **kwargs)
    with torch.no_grad():
        net.trunk_net[4][1].conv2.weight.add_(0.5)  # "training" moved the trunk off its start
    saved = save_weights(net, tmp_path / "net.safetensors")
    assert read_metadata(saved)["kwargs"]["backbone_weights"] == str(start)
    start.unlink()
    loaded = lookalike.create("descriptor", f"relation_net:{saved}")
    x = torch.rand(3, 3, 64, 32)
    torch.testing.assert_close(loaded(x), net.eval()(x), rtol=0, atol=0)
    assert {"backbone_weights", "pretrained"} <= set(START_ONLY_KEYWORDS)


def test_image_side_resizes_the_shorter_side_before_the_scales():
    torch.manual_seed(0)
    net = GeMDescriptor(backbone="resnet18", image_side=40).eval()
    plain = GeMDescriptor(backbone="resnet18").eval()
    plain.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 80, 120)
    by_hand = F.interpolate(x, size=(40, 60), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(by_hand), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(net(x), plain(x), atol=1e-3)
    multi = GeMDescriptor(backbone="resnet18", image_side=40, scales=(1.0, 0.5)).eval()
    seen = []
    multi.backbone.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        multi(torch.rand(1, 3, 120, 80))  # portrait: the shorter side is the width
    assert seen == [(60, 40), (30, 20)]
    for bad in (0, 1.5, True, "112"):
        with pytest.raises(OptionError, match="image_side"):
            GeMDescriptor(backbone="resnet18", image_side=bad)


def test_gem_bundled_describes_at_the_size_given_unless_told_otherwise():
    assert lookalike.create("descriptor", "gem:bundled").image_side is None
    assert lookalike.create("descriptor", "gem:bundled", image_side=112).image_side == 112


def test_no_download_by_default(monkeypatch):
    import timm.models._builder as builder

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(builder, "load_pretrained", refuse)
    monkeypatch.setattr(builder, "load_state_dict_from_hf", refuse, raising=False)
    GeMDescriptor(backbone="resnet18")
    DOLGDescriptor(backbone="resnet18", local_dim=32, atrous_hidden=8, dim=16)
    HybridSwinDescriptor(swin_kwargs=TINY_SWIN, dim=16)


def test_efficientnet_blocks_after_the_last_stage_are_dropped():
    net = create_backbone("efficientnet_b0", out_indices=(2,))
    assert len(net.blocks) == 3
    out = net(torch.rand(1, 3, 64, 64))
    assert out[-1].shape == (1, 40, 8, 8)


# ------------------------------------------------------------------ DOLG
def test_orthogonal_fusion_maths():
    gen = torch.Generator().manual_seed(0)
    local = torch.randn(2, 6, 3, 4, generator=gen, dtype=torch.float64)
    glob = torch.randn(2, 6, generator=gen, dtype=torch.float64) * 3
    fused = orthogonal_fusion(local, glob)
    orth = fused[:, :6]
    assert torch.einsum("bchw,bc->bhw", orth, glob).abs().max() < 1e-10
    torch.testing.assert_close(fused[:, 6:], glob[:, :, None, None].expand(-1, -1, 3, 4))
    # the winners' variant: projection divided by |f_g| only
    winners = orthogonal_fusion(local, glob, norm="norm")[:, :6]
    for b in range(2):
        g = glob[b]
        for i in range(3):
            for j in range(4):
                v = local[b, :, i, j]
                torch.testing.assert_close(winners[b, :, i, j], v - (v @ g) / g.norm() * g)
    with pytest.raises(OptionError):
        orthogonal_fusion(local, glob, norm="cube")
    with pytest.raises(ShapeError):
        orthogonal_fusion(local, glob[:, :5])


def test_dolg_shapes_options_and_gradients():
    torch.manual_seed(0)
    net = DOLGDescriptor(
        backbone="resnet18", local_dim=32, atrous_hidden=8, dim=16, dilations=(6, 12, 18)
    )
    assert [b.dilation for b in net.local_branch.branches] == [(6, 6), (12, 12), (18, 18)]
    out = net(_images(3, 48, 64))
    assert out.shape == (3, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    with torch.no_grad():
        paper = net(_images())
        net.fusion_norm = "norm"  # the winners' variant changes the descriptor
        assert not torch.allclose(paper, net(_images()))
    with pytest.raises(OptionError):
        DOLGDescriptor(backbone="resnet18", local_stage=4, global_stage=3)


def test_dolg_resnet50_parameter_count_of_the_paper_setting():
    # ResNet-50 trunk (23.5 M without fc) + DOLG heads at C = 1024, dilations 3/6/9, 512-d output.
    net = DOLGDescriptor()
    trunk = sum(p.numel() for p in net.backbone.parameters())
    assert trunk == 23_508_032
    heads = sum(p.numel() for p in net.parameters()) - trunk
    atrous = 3 * (1024 * 512 * 9 + 512) + (1024 * 512 + 512) + (4 * 512 * 1024 + 1024)
    attention = (1024 * 1024 + 1024) + 2 * 1024 + (1024 + 1)
    glob = 2048 * 1024 + 2 * 1024 + 1 + (1024 * 1024 + 1024)
    neck = 2048 * 512 + 512 + 2 * 512 + 1
    assert heads == atrous + attention + glob + neck


# ------------------------------------------------------------------ hybrid Swin
def test_hybrid_swin_sizes_and_position_embedding():
    torch.manual_seed(0)
    net = HybridSwinDescriptor(swin_kwargs=TINY_SWIN, dim=24, pos_grid=8).eval()
    with torch.no_grad():
        for h, w in ((48, 48), (64, 112)):
            assert net(_images(2, h, w)).shape == (2, 24)
    assert net.pos_embed.shape == (1, 32, 8, 8)
    assert net._position(8, 8) is net.pos_embed
    assert net._position(12, 20).shape == (1, 32, 12, 20)
    net.train()
    out = net(_images(3))
    out.sum().backward()
    assert net.pos_embed.grad is not None and net.token.grad is not None
    with pytest.raises(OptionError, match="Swin"):
        HybridSwinDescriptor(swin="resnet18")


# ------------------------------------------------------------------ colour histogram
def test_rgb_to_hsv_equals_opencv():
    import cv2

    rgb = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    rgb[0, 0] = 0.0
    rgb[0, 1] = 0.5
    ours = rgb_to_hsv(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    ref[..., 0] /= 360.0
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_color_histogram_counts_like_a_loop():
    x = _images(1, 16, 16)
    out = color_histogram(x, bins=4, size=16)
    hsv = rgb_to_hsv(x)[0].reshape(3, -1).T.numpy()
    counts = np.zeros(64)
    for h, s, v in hsv:
        idx = [min(int(c * 4), 3) for c in (h, s, v)]
        counts[(idx[0] * 4 + idx[1]) * 4 + idx[2]] += 1
    expected = np.sqrt(counts / 256)
    np.testing.assert_allclose(out[0].numpy(), expected / np.linalg.norm(expected), atol=1e-6)


def test_transformed_color_histogram_counts_like_a_loop():
    x = _images(1, 16, 16)
    out = transformed_color_histogram(x, bins=4, size=16, clip=1.5)
    pix = x[0].reshape(3, -1).double().numpy()
    z = (pix - pix.mean(axis=1, keepdims=True)) / pix.std(axis=1, keepdims=True)  # population std
    counts = np.zeros(64)
    for r, g, b in np.clip(z, -1.5, 1.5).T:
        idx = [min(int((c + 1.5) / 3.0 * 4), 3) for c in (r, g, b)]
        counts[(idx[0] * 4 + idx[1]) * 4 + idx[2]] += 1
    expected = np.sqrt(counts / 256)
    np.testing.assert_allclose(out[0].numpy(), expected / np.linalg.norm(expected), atol=1e-6)


def test_transformed_color_histogram_ignores_gain_and_offset_per_channel_unlike_hsv():
    x = _images(2, 32, 24) * 0.6 + 0.1
    gain = torch.tensor([0.7, 1.3, 1.1]).view(1, 3, 1, 1)
    offset = torch.tensor([0.05, -0.08, 0.1]).view(1, 3, 1, 1)
    lit = x * gain + offset  # stays inside [0, 1]: a light colour and intensity change
    desc = lookalike.create("descriptor", "transformed-color-hist")
    torch.testing.assert_close(desc(lit), desc(x), atol=1e-6, rtol=0)
    hsv = lookalike.create("descriptor", "color-hist")
    assert (hsv(lit) - hsv(x)).abs().max() > 0.1


def test_transformed_color_histogram_flat_channel_and_bad_clip():
    x = _images(1, 16, 16)
    x[:, 1] = 0.4  # one flat channel: standardised to 0, the middle bins (not noise)
    out = transformed_color_histogram(x, bins=4, size=16)
    used = out[0].nonzero().flatten()
    assert torch.all((used // 4) % 4 == 2)  # green index: bin of 0 in [-2, 2] with 4 bins
    for bad in (0, -1.0, math.inf, math.nan, True, "2"):
        with pytest.raises(OptionError, match="clip"):
            lookalike.create("descriptor", "transformed-color-hist", clip=bad)


# ------------------------------------------------------------------ ensemble
def test_ensemble_averages_families_and_concatenates(tmp_path):
    torch.manual_seed(0)
    a = lookalike.create("descriptor", "color-hist")
    b = lookalike.create("descriptor", "color-hist", bins=4)
    x = _images()
    ens = EnsembleDescriptor(members=["color-hist", "color-hist"])
    torch.testing.assert_close(ens(x), a(x))
    from lookalike.core.weights import save_weights

    torch.manual_seed(1)
    small = lookalike.create("descriptor", "gem", backbone="resnet18")
    path = save_weights(small, tmp_path / "gem18.safetensors")  # kwargs recorded in the metadata
    mixed = EnsembleDescriptor(members=["color-hist", f"gem:{path}"]).eval()
    with torch.no_grad():
        expected = F.normalize(torch.cat([a(x), mixed.members[1](x)], dim=1), dim=1)
        torch.testing.assert_close(mixed(x), expected)
    assert mixed.dim == 512 + 512 and list(mixed.families) == ["color-hist", "gem"]
    torch.testing.assert_close(mixed.members[1].backbone.conv1.weight, small.backbone.conv1.weight)
    with pytest.raises(OptionError, match="learned network without weights"):
        EnsembleDescriptor(members=["gem"])
    assert b.dim == 64
    (tmp_path / "e.yaml").write_text("members: [color-hist, color-hist]\n")
    assert load_ensemble(tmp_path / "e.yaml").specs == ["color-hist", "color-hist"]
    (tmp_path / "bad.yaml").write_text("members: 3\n")
    with pytest.raises(OptionError):
        load_ensemble(tmp_path / "bad.yaml")


def test_ensemble_family_weights_give_a_weighted_score_fusion(tmp_path):
    x, y = _images(3, seed=0), _images(3, seed=1)
    hist, stripes = (lookalike.create("descriptor", n) for n in ("color-hist", "stripe-hsv"))
    ens = EnsembleDescriptor(members=["color-hist", "stripe-hsv"], family_weights=[1.0, 0.25])
    # unit member rows: cos(ens) = (cos_hist + 0.25 cos_stripes) / 1.25, computed by hand
    expected = (hist(x) @ hist(y).T + 0.25 * stripes(x) @ stripes(y).T) / 1.25
    torch.testing.assert_close(ens(x) @ ens(y).T, expected)
    assert ens.dim == hist.dim + stripes.dim and ens.fitted and ens.crop_size == (128, 48)
    (tmp_path / "w.yaml").write_text(
        "members: [color-hist, stripe-hsv]\nfamily_weights: [1, 0.25]\n"
    )
    torch.testing.assert_close(load_ensemble(tmp_path / "w.yaml")(x), ens(x))
    for bad in ([1.0], [1.0, 0.0], [1.0, -2.0], [True, 1.0], [1.0, float("nan")], "1,2"):
        with pytest.raises(OptionError, match="family_weights: expected 2 positive numbers"):
            EnsembleDescriptor(members=["color-hist", "stripe-hsv"], family_weights=bad)


@pytest.mark.parametrize("name", ["gem", "dolg", "hybrid_swin"])
def test_learned_image_descriptors_need_weights_and_go_channels_last(name):
    from lookalike._registry import get_entry

    assert get_entry("descriptor", name).factory.needs_weights is True
    assert get_entry("descriptor", "color-hist").factory.needs_weights is False
    kwargs = {
        "gem": {"backbone": "resnet18"},
        "dolg": {"backbone": "resnet18", "local_dim": 16, "atrous_hidden": 8},
        "hybrid_swin": {"swin_kwargs": TINY_SWIN},
    }[name]
    net = lookalike.create("descriptor", name, **kwargs)
    conv = next(
        m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert net.input_spec.channels == 3 and isinstance(net.input_spec.normalization, tuple)
    assert math.isclose(net.input_spec.normalization[0][0], 0.485)
