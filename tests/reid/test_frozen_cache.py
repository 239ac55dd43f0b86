"""The frozen-prefix cache (recipe key ``cache_frozen``): feature-space augmentation, the cached maps
against the network's own inference, the re-estimated BatchNorm statistics and the engine's use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike._registry import build_component
from lookalike.core.config import load_config
from lookalike.core.errors import OptionError, ShapeError
from lookalike.core.weights import read_weights
from lookalike.data.reid.augment import AugmentedReidSet, random_erasing, random_windows
from lookalike.data.reid.feature_cache import FeatureCacheSet
from lookalike.descriptors.reid.rga_net import RGANet
from lookalike.train.frozen_cache import AfterPrefix, build_feature_cache, frozen_prefix_length
from lookalike.train.optim import resolve_bf16, seed_everything
from lookalike.train.recipe import TrainRecipe
from reid.formats import write_viper
from reid.test_recipes import CONFIGS


class _Crops(torch.utils.data.Dataset):
    def __init__(self, crops: torch.Tensor, labels: list[int]) -> None:
        self.crops, self.labels, self.num_classes = crops, np.asarray(labels), len(set(labels))

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int):
        return self.crops[index], int(self.labels[index])


def _net(**kw):
    kw = {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), "stages": 3, **kw}
    return lookalike.create("descriptor", "relation_net", parts=2, part_dim=8, **kw)


def _freeze_first(net, count: int):
    for block in net.blocks()[:count]:
        block.requires_grad_(False)
    return net


# ------------------------------------------------------------------ feature-space augmentation
def test_random_windows_are_windows_and_reach_every_offset():
    maps = torch.randn(400, 2, 5, 4)
    out = random_windows(maps, (3, 2), generator=torch.Generator().manual_seed(0))
    seen = set()
    for x, y in zip(maps, out, strict=True):  # brute force: the offset whose window it is
        hits = [
            (r, c) for r in range(3) for c in range(3) if torch.equal(x[:, r : r + 3, c : c + 2], y)
        ]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) == 9
    with pytest.raises(ShapeError, match="window within"):
        random_windows(maps, (6, 2))


def test_random_erasing_of_feature_maps_fills_the_given_vector():
    maps = torch.zeros(64, 5, 12, 8)
    fill = torch.arange(1.0, 6.0)
    out = random_erasing(maps, p=1.0, fill=fill, generator=torch.Generator().manual_seed(0))
    for x in out:
        inside = (x != 0).any(dim=0)
        rows, cols = inside.any(dim=1).nonzero(), inside.any(dim=0).nonzero()
        assert inside.sum() == len(rows) * len(cols) > 0  # one solid rectangle
        assert torch.equal(x[:, inside], fill[:, None].expand(5, int(inside.sum())))
    with pytest.raises(ShapeError, match=r"fill: expected a tensor of shape \(5,\)"):
        random_erasing(maps, fill=torch.zeros(3))
    with pytest.raises(ShapeError):
        random_erasing(maps)  # 5 channels need a fill


def test_feature_cache_set_reads_the_plain_or_mirrored_map_in_a_window():
    maps = torch.randn(6, 2, 3, 6, 5)  # 4 x 3 maps padded by one cell
    data = FeatureCacheSet(
        maps, size=(4, 3), labels=[0, 0, 1, 1, 2, 2], num_classes=3, fill=torch.zeros(3), erase=0
    )
    assert data.pad_cells == 1 and len(data) == 6
    torch.manual_seed(0)
    sides = []
    for _ in range(50):
        for i, (x, label) in enumerate(data.__getitems__(range(6))):
            assert label == i // 2
            hits = [
                s
                for s in (0, 1)
                for r in range(3)
                for c in range(3)
                if torch.equal(maps[i, s, :, r : r + 4, c : c + 3], x)
            ]
            assert len(hits) == 1
            sides.append(hits[0])
    assert 0.4 < np.mean(sides) < 0.6  # flip 0.5


def test_feature_cache_set_checks_its_inputs():
    maps = torch.zeros(2, 2, 3, 6, 5)
    ok = {"size": (4, 3), "labels": [0, 1], "num_classes": 2, "fill": torch.zeros(3)}
    with pytest.raises(ShapeError, match="maps"):
        FeatureCacheSet(torch.zeros(2, 3, 6, 5), **ok)
    with pytest.raises(ShapeError, match="same padding"):
        FeatureCacheSet(maps, **{**ok, "size": (3, 3)})
    with pytest.raises(ShapeError, match="labels"):
        FeatureCacheSet(maps, **{**ok, "labels": [0]})
    with pytest.raises(ShapeError, match="fill"):
        FeatureCacheSet(maps, **{**ok, "fill": torch.zeros(4)})
    with pytest.raises(OptionError, match="flip"):
        FeatureCacheSet(maps, **ok, flip=2)


# ------------------------------------------------------------------ the cache against inference
def test_cached_maps_continued_by_the_network_equal_its_inference():
    torch.manual_seed(0)
    net = _freeze_first(_net(), 2)
    crops = torch.rand(6, 3, 64, 32)
    data = AugmentedReidSet(_Crops(crops, [0, 0, 1, 1, 2, 2]), flip=0, pad=0, erase=0, cache=True)
    cached, start = build_feature_cache(net, data, device=torch.device("cpu"), batch_size=4)
    assert start == 2 and cached.maps.shape == (6, 2, 16, 16, 8)  # stride 4: 16 x 8 maps
    runner = AfterPrefix(net, start).eval()
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(runner(cached.maps[:, 0]), net(crops), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            runner(cached.maps[:, 1]), net(crops.flip(-1)), atol=1e-5, rtol=1e-4
        )


def test_frozen_batchnorm_statistics_are_the_averages_over_the_crops_and_mirrors():
    torch.manual_seed(0)
    net = _freeze_first(_net(), 1)
    crops = torch.rand(10, 3, 64, 32)
    data = AugmentedReidSet(_Crops(crops, [0, 1] * 5), pad=4, cache=True)
    build_feature_cache(net, data, device=torch.device("cpu"), batch_size=3)
    stem = net.blocks()[0]
    conv, bn = stem[0], stem[1]
    with torch.no_grad():  # hand-computed: conv1 outputs of every crop and mirror, pooled
        x = net.normalize_input(torch.cat([crops, crops.flip(-1)]))
        out = conv(x)
    torch.testing.assert_close(bn.running_mean, out.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert not stem.training and bn.momentum == 0.1  # eval mode, the momentum restored


def test_padded_cache_window_at_the_centre_matches_the_crop_away_from_its_border():
    torch.manual_seed(0)
    net = _freeze_first(_net(input_size=(256, 128)), 2)
    crops = torch.rand(2, 3, 256, 128)
    data = AugmentedReidSet(_Crops(crops, [0, 1]), pad=10, erase=0, cache=True)
    cached, start = build_feature_cache(net, data, device=torch.device("cpu"))
    assert cached.pad_cells == 2  # 10 px at stride 4: 2 cells (8 px)
    prefix = torch.nn.Sequential(*net.blocks()[:start])
    with torch.no_grad():
        plain = prefix(net.normalize_input(crops))  # (2, C, 64, 32)
    centre = cached.maps[:, 0, :, 2:-2, 2:-2]
    # the stem's receptive field reaches about 6 cells: the interior is the same map
    torch.testing.assert_close(centre[..., 8:-8, 8:-8], plain[..., 8:-8, 8:-8])
    assert not torch.allclose(centre[..., :1, :], plain[..., :1, :])  # the border differs


def test_fill_is_the_prefix_response_to_the_erasing_colour():
    net = _freeze_first(_net(), 2)
    data = AugmentedReidSet(_Crops(torch.rand(2, 3, 64, 32), [0, 1]), cache=True)
    cached, start = build_feature_cache(net, data, device=torch.device("cpu"))
    colour = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 64, 32)
    with torch.no_grad():
        out = torch.nn.Sequential(*net.blocks()[:start])(net.normalize_input(colour))
    torch.testing.assert_close(cached.fill, out[0, :, 8, 4])


def test_cache_errors_name_what_is_wrong():
    data = AugmentedReidSet(_Crops(torch.rand(2, 3, 64, 32), [0, 1]), cache=True)
    cpu = torch.device("cpu")
    with pytest.raises(OptionError, match="no frozen leading block"):
        build_feature_cache(_net(), data, device=cpu)
    with pytest.raises(OptionError, match="augmented re-ID training set"):
        build_feature_cache(_freeze_first(_net(), 1), data.data, device=cpu)
    with pytest.raises(ShapeError, match=r"input size \(96, 32\)"):
        build_feature_cache(_freeze_first(_net(input_size=(96, 32)), 1), data, device=cpu)
    with pytest.raises(OptionError, match="lists its blocks"):
        frozen_prefix_length(torch.nn.Linear(2, 2))
    assert frozen_prefix_length(_freeze_first(_net(), 3)) == 3


def test_rga_network_blocks_continue_to_its_inference():
    torch.manual_seed(0)
    net = RGANet(backbone="resnet18", width=0.25, input_size=(64, 32), dim=16)
    net = _freeze_first(net, 2).eval()
    x = torch.rand(3, 3, 64, 32)
    with torch.no_grad():
        fmap = torch.nn.Sequential(*net.blocks()[:2])(net.normalize_input(x))
        torch.testing.assert_close(AfterPrefix(net, 2)(fmap), net(x), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ the engine
def _cached_recipe(tmp_path, *extra: str) -> TrainRecipe:
    if not (tmp_path / "viper").exists():
        write_viper(tmp_path / "viper", n_ids=8)
    return load_config(
        TrainRecipe,
        CONFIGS / "reid_viper.yaml",
        [
            f"data.kwargs.root={tmp_path}",
            "model.kwargs.backbone_weights=null",
            "model.kwargs.width=0.25",
            "cache_frozen=true",
            "steps=3",
            "batch_size=8",
            "max_minutes=null",
            *extra,
        ],
    )


def test_viper_recipe_trains_from_the_cache_and_keeps_the_frozen_blocks(tmp_path):
    from lookalike.train.engine import train

    recipe = _cached_recipe(tmp_path, f"out_dir={tmp_path / 'runs'}")
    assert load_config(TrainRecipe, CONFIGS / "reid_viper.yaml").cache_frozen  # the shipped recipe
    seed_everything(recipe.seed)  # as the engine does before it builds the model
    before = build_component(recipe.model, "descriptor")
    result = train(recipe, progress=False)
    assert np.isfinite(result.metrics["final_loss"]) and result.metrics["cache_seconds"] >= 0
    assert result.metrics["bf16"] is resolve_bf16(recipe.bf16, torch.device("cpu"))
    weights, _ = read_weights(result.weights)
    conv = "trunk_net.1.0.conv1.weight"  # layer1: frozen, cached, saved with the weights
    torch.testing.assert_close(weights[conv], before.state_dict()[conv])
    trained = "trunk_net.2.0.conv1.weight"
    assert not torch.equal(weights[trained], before.state_dict()[trained])
    net = lookalike.create("descriptor", f"relation_net:{result.weights}")
    assert net(torch.rand(2, 3, 128, 48)).shape == (2, net.dim)


def test_cache_frozen_refuses_a_pca_head(tmp_path):
    from lookalike.train.engine import train

    write_viper(tmp_path / "viper", n_ids=8)
    recipe = load_config(
        TrainRecipe,
        CONFIGS / "reid_viper.yaml",
        [f"data.kwargs.root={tmp_path}", "cache_frozen=true", "pca.dim=8", "model.kwargs.width=0.25",
         "model.kwargs.backbone_weights=null", f"out_dir={tmp_path / 'runs'}"],
    )  # fmt: skip
    with pytest.raises(OptionError, match="PCA"):
        train(recipe, progress=False)


@pytest.mark.slow
def test_stop_after_then_resume_from_the_cache_equals_an_uninterrupted_run(tmp_path):
    """The cache is rebuilt on resume (the same maps, the same BatchNorm statistics) and the
    stream's state and the RNG come back from the checkpoint: 2 + 2 steps equal 4, exactly, with
    the engine's fused Adam step on the channels-last network."""
    from lookalike.train.engine import train

    whole = train(_cached_recipe(tmp_path, "steps=4", f"out_dir={tmp_path / 'a'}"), progress=False)
    recipe = _cached_recipe(tmp_path, "steps=4", f"out_dir={tmp_path / 'b'}")
    first = train(recipe, progress=False, stop_after=2)
    rest = train(recipe, resume=first.run_dir, progress=False)
    assert rest.history["loss"] == whole.history["loss"]
    ours, _ = read_weights(rest.weights)
    ref, _ = read_weights(whole.weights)
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=0, atol=0, msg=key)
