"""Re-ID recipes (``configs/rga_market.yaml``, ``configs/reid_viper.yaml``) and their augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lookalike
from lookalike._registry import build_component, is_shipped
from lookalike.core.config import load_config
from lookalike.core.errors import LookalikeError, OptionError
from lookalike.data.reid.augment import ERASE_FILL, augment_crops, random_erasing
from lookalike.data.reid.readers import viper_split
from lookalike.train.recipe import TrainRecipe
from lookalike.train.tasks import build_loss
from reid.formats import write_market_style, write_viper

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_NET = ["model.kwargs.backbone=resnet18", "model.kwargs.width=0.25"]


def _train_two_steps(recipe: TrainRecipe):
    from lookalike.train.engine import train

    result = train(recipe, progress=False)
    assert result.weights is not None and result.weights.is_file()
    assert np.isfinite(result.metrics["final_loss"])
    return result


# ------------------------------------------------------------------ rga_market
def test_rga_market_recipe_holds_the_paper_settings():
    recipe = load_config(TrainRecipe, CONFIGS / "rga_market.yaml")
    model = recipe.model.kwargs
    assert recipe.model.name == "rga" and model["backbone"] == "resnet50"
    assert model["last_stride"] == 1 and list(model["input_size"]) == [256, 128]
    assert recipe.task.name == "pk" and recipe.task.kwargs["k"] == 4 and recipe.batch_size == 64
    assert recipe.loss.name == "batch_hard_triplet" and recipe.loss.kwargs["margin"] == 0.3
    assert recipe.regularizer.kwargs["label_smoothing"] == 0.1
    assert (recipe.optim.name, recipe.optim.lr, recipe.optim.weight_decay) == ("adam", 8e-4, 5e-4)
    assert recipe.data.name == "reid_augmented" and recipe.data.kwargs["dataset"] == "market1501"


@pytest.mark.slow
def test_rga_market_recipe_two_steps_on_the_market_fixture(tmp_path, device):
    write_market_style(tmp_path / "Market-1501-v15.09.15")
    recipe = load_config(
        TrainRecipe,
        CONFIGS / "rga_market.yaml",
        [
            *TINY_NET,
            "model.kwargs.input_size=[64, 32]",
            f"data.kwargs.root={tmp_path}",
            "data.kwargs.size=[64, 32]",
            "steps=2",
            "batch_size=8",
            "optim.warmup_steps=0",
            f"device={device.type}",
            f"out_dir={tmp_path / 'runs'}",
        ],
    )
    result = _train_two_steps(recipe)
    net = lookalike.create("descriptor", f"rga:{result.weights}")
    out = net(torch.rand(2, 3, 64, 32))
    assert tuple(out.shape) == (2, 128)  # ResNet-18 at width 0.25: 128 channels, BNNeck alone


# ------------------------------------------------------------------ reid_viper
def _viper_recipe(tmp_path: Path, *extra: str) -> TrainRecipe:
    write_viper(tmp_path / "viper", n_ids=8)
    return load_config(
        TrainRecipe,
        CONFIGS / "reid_viper.yaml",
        [f"data.kwargs.root={tmp_path}", f"out_dir={tmp_path / 'runs'}", *extra],
    )


@pytest.mark.parametrize("split", [0, 3])
def test_reid_viper_split_override_trains_on_that_split_s_training_ids_only(tmp_path, split):
    recipe = _viper_recipe(tmp_path, f"data.kwargs.split={split}")
    data = build_component(recipe.data, "dataset", seed=recipe.seed)
    train_ids, test_ids = viper_split(8, split)
    assert set(np.unique(data.ids).tolist()) == set(train_ids.tolist())  # the reader's 0-based ids
    assert not set(np.unique(data.ids).tolist()) & set(test_ids.tolist())
    assert data.num_classes == 4 and len(data) == 8  # both cameras of every training id


def test_reid_viper_recipe_fits_a_cpu(tmp_path):
    recipe = _viper_recipe(tmp_path)
    assert recipe.device == "cpu" and recipe.threads == 2
    assert list(recipe.model.kwargs["input_size"]) == [128, 48]
    # the trunk starts from a shipped descriptor trained on the bundled photos only, never a download
    assert is_shipped("descriptor", recipe.model.kwargs["backbone_weights"])
    model = build_component(recipe.model, "descriptor")
    names = dict(model.named_modules())
    assert recipe.freeze and all(n in names for n in recipe.freeze)
    data = recipe.data.kwargs
    assert data["flip"] > 0 and data["pad"] > 0 and data["erase"] > 0
    # the triplet keeps a cross-batch memory; the engine passes the model's width to build it
    loss = build_loss(recipe.loss, {"embedding_dim": model.dim})
    assert loss.bank is not None and loss.bank.dim == model.dim and loss.bank.size >= 256


@pytest.mark.slow
def test_reid_viper_recipe_two_steps(tmp_path):
    recipe = _viper_recipe(tmp_path, "data.kwargs.split=1", "steps=2", "batch_size=8")
    result = _train_two_steps(recipe)
    net = lookalike.create("descriptor", f"{recipe.model.name}:{result.weights}")
    assert net(torch.rand(2, 3, 128, 48)).shape[1] == net.dim


# ------------------------------------------------------------------ augmentations
def test_flip_only_is_a_mirror():
    x = torch.rand(3, 3, 16, 8)
    torch.testing.assert_close(augment_crops(x, flip=1.0, pad=0, erase=0.0), x.flip(-1))
    assert augment_crops(x, flip=0.0, pad=0, erase=0.0).equal(x)


def test_padding_crop_is_a_window_of_the_zero_padded_crop():
    torch.manual_seed(3)
    x = torch.rand(6, 3, 12, 8) + 0.1  # no zeros inside the crops
    out = augment_crops(x, flip=0.0, pad=3, erase=0.0)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for b in range(6):
        windows = [
            (dy, dx)
            for dy in range(7)
            for dx in range(7)
            if torch.equal(out[b], padded[b, :, dy : dy + 12, dx : dx + 8])
        ]
        assert windows, f"crop {b} is no window of the padded crop"


def test_random_erasing_fills_one_rectangle_within_the_area_bounds():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 64, 32) * 0.1 + 0.9  # far from the fill colour
    out = random_erasing(x, p=1.0, area=(0.05, 0.3), generator=gen)
    fill = torch.tensor(ERASE_FILL).view(3, 1, 1)
    for b in range(20):
        mask = (out[b] == fill).all(dim=0)
        rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mask.sum()) == h * w  # one solid rectangle
        assert 0.05 * 64 * 32 * 0.5 <= h * w <= 0.3 * 64 * 32 * 1.5  # rounding of the sides
        assert torch.equal(out[b][:, ~mask], x[b][:, ~mask])  # the rest untouched


def test_random_erasing_probability_zero_is_identity():
    x = torch.rand(4, 3, 16, 8)
    assert random_erasing(x, p=0.0).equal(x)


def test_random_erasing_rate_and_areas_follow_the_options():
    # 4000 crops, p = 0.3: the erased share is binomial (std 0.007); areas uniform in the bounds
    # (mean 0.2 of the crop, up to the rounding of the sides and the draws that do not fit).
    x = torch.ones(4000, 3, 40, 40)
    out = random_erasing(x, p=0.3, area=(0.1, 0.3), generator=torch.Generator().manual_seed(1))
    erased = (out[:, 0] != 1).flatten(1).sum(dim=1).float() / (40 * 40)
    hit = erased > 0
    assert abs(float(hit.float().mean()) - 0.3) < 0.03
    assert 0.17 < float(erased[hit].mean()) < 0.23
    assert float(erased[hit].min()) > 0.08 and float(erased[hit].max()) < 0.33


def test_random_erasing_leaves_crops_no_rectangle_fits():
    x = torch.rand(5, 3, 1, 1)  # no side 0 < h < 1
    assert random_erasing(x, p=1.0).equal(x)
    assert random_erasing(torch.rand(0, 3, 8, 8), p=1.0).shape == (0, 3, 8, 8)


def test_augmented_set_fetches_a_batch_with_one_augmentation_call(tmp_path, monkeypatch):
    from lookalike.data.reid import augment
    from lookalike.train.tasks.labelled import LabelledStream

    write_viper(tmp_path / "viper", n_ids=8)
    kw = {"dataset": "viper", "root": tmp_path, "split": 2, "size": (64, 32), "cache": True}
    plain = lookalike.create("dataset", "reid_augmented", flip=0.0, pad=0, erase=0.0, **kw)
    items = plain.__getitems__([3, 1, 3])
    assert [label for _, label in items] == [int(plain.labels[i]) for i in (3, 1, 3)]
    for (crop, _), i in zip(items, (3, 1, 3), strict=True):
        assert crop.equal(plain._cache[i])  # no augmentation: the cached crops themselves
    data = lookalike.create("dataset", "reid_augmented", **kw)
    calls = []
    real = augment.augment_crops
    monkeypatch.setattr(
        augment, "augment_crops", lambda x, **a: calls.append(len(x)) or real(x, **a)
    )
    stream = LabelledStream(data, iter([[0, 1, 2, 3], [4, 5]]))
    inputs, labels = next(stream)
    assert calls == [4] and tuple(inputs.shape) == (4, 3, 64, 32)
    assert labels.tolist() == [int(data.labels[i]) for i in range(4)]


@pytest.mark.parametrize(
    "kwargs", [{"flip": 1.5}, {"pad": -1}, {"erase": -0.1}, {"flip": True}, {"pad": 2.5}]
)
def test_bad_augmentation_options_raise(kwargs):
    with pytest.raises(OptionError):
        augment_crops(torch.rand(1, 3, 8, 8), **kwargs)


def test_augmented_set_passes_labels_through_and_checks_its_data(tmp_path):
    write_viper(tmp_path / "viper", n_ids=8)
    data = lookalike.create(
        "dataset",
        "reid_augmented",
        dataset="viper",
        root=tmp_path,
        split=2,
        size=(64, 32),
        cache=True,
    )
    plain = lookalike.create("dataset", "viper", root=tmp_path, split=2, size=(64, 32))
    assert np.array_equal(data.labels, plain.labels) and data.num_classes == plain.num_classes
    crop, label = data[3]
    assert tuple(crop.shape) == (3, 64, 32) and label == int(plain.labels[3])
    with pytest.raises(LookalikeError):
        lookalike.create("dataset", "reid_augmented", dataset="viper", root=tmp_path / "none")
