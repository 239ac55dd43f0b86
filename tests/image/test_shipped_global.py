"""The shipped global descriptors ``gem:bundled`` and ``dolg:bundled``: files, metadata, loading, rows."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch

import lookalike
from lookalike._registry import is_shipped
from lookalike.core.config import load_config, to_dict
from lookalike.core.weights import load_weights, read_metadata, sha256_file
from lookalike.data.bundled import bundled_photos
from lookalike.descriptors.image.dolg import DOLG_WEIGHTS
from lookalike.descriptors.image.gem import GEM_WEIGHTS
from lookalike.train.recipe import TrainRecipe

ROOT = Path(__file__).parents[2]
SHIPPED = {"gem": GEM_WEIGHTS["bundled"], "dolg": DOLG_WEIGHTS["bundled"]}
#: Recipe keys a run may set on the command line without changing what is trained.
#: Where and how a run was executed, not what it trains: the shipped files were trained on a lent GPU
#: (``device=cuda``, ``threads``, run ``name`` and no checkpoints: benchmarks/cuda_check.sh).
RUN_ONLY = ("out_dir", "device", "threads", "name", "checkpoint_every")


def _path(name: str) -> Path:
    return Path(str(resources.files("lookalike") / "weights" / SHIPPED[name].file))


def _photo(name: str) -> torch.Tensor:
    rgb = bundled_photos([name])[0].rgb
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_is_installed_with_its_checksum(name):
    path = _path(name)
    assert path.is_file()
    assert sha256_file(path) == SHIPPED[name].sha256
    assert is_shipped("descriptor", f"{name}:bundled")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_metadata_holds_the_recipe_seed_and_validation_numbers(name):
    meta = read_metadata(_path(name))
    assert meta["kind"] == "descriptor" and meta["name"] == name
    training = meta["training"]
    recipe = training["recipe"]
    expected = to_dict(load_config(TrainRecipe, ROOT / "configs" / f"{name}_bundled.yaml"))
    for key in RUN_ONLY:
        recipe.pop(key, None)
        expected.pop(key, None)
    # recipe fields added after the weights were trained count when they hold their default
    defaults = to_dict(TrainRecipe())
    for key in set(expected) - set(recipe):
        assert expected[key] == defaults[key], f"{key}: the config departs from the shipped recipe"
        expected.pop(key)
    assert recipe == expected  # the config in the repository reproduces the shipped weights
    assert recipe["seed"] == 0 and recipe["data"]["name"] == "bundled_instances"
    metrics = training["metrics"]
    assert metrics["steps"] == recipe["steps"]
    assert 0 < metrics["train_seconds"] <= 1800  # the 30-minute CPU budget
    assert 0 <= metrics["val_fpr95"] <= 1
    assert 0 < metrics["val_map"] <= 1 and 0 <= metrics["val_recall_at_1"] <= 1


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_load_strictly(name):
    meta = read_metadata(_path(name))
    model = lookalike.create("descriptor", name, **meta["kwargs"])
    load_weights(model, _path(name), strict=True)  # raises on any missing or unexpected key
    named = lookalike.create("descriptor", f"{name}:bundled")
    assert not named.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(named.state_dict()[key], value)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_descriptor_gives_unit_rows_on_a_bundled_photo(name):
    model = lookalike.create("descriptor", f"{name}:bundled")
    chelsea = _photo("chelsea")  # held out: never trained on
    with torch.no_grad():
        rows = model(torch.cat([chelsea[..., :288, :288], chelsea[..., 12:300, 60:348]]))
        other = model(_photo("camera")[..., :288, :288])
    assert rows.shape == (2, model.dim) and torch.isfinite(rows).all()
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(2))
    # two overlapping crops of the cat are closer to each other than to the cameraman
    assert float(rows[0] @ rows[1]) > float(rows[0] @ other[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_held_out_numbers_in_the_metadata_are_reproduced(name):
    from lookalike.data.bundled_instances import retrieval_scores
    from lookalike.descriptors.describe import describe_patches

    meta = read_metadata(_path(name))
    data_kwargs = dict(meta["training"]["recipe"]["data"]["kwargs"])
    # cheap training part: only the validation set (fixed, held-out photos) matters here
    data_kwargs.update(photos=["camera"], scales=[1.0], procedural=0)
    val = lookalike.create("dataset", "bundled_instances", **data_kwargs).validation_set()
    model = lookalike.create("descriptor", f"{name}:bundled")
    scores = retrieval_scores(describe_patches(model, val.patches, batch_size=64), val.labels)
    metrics = meta["training"]["metrics"]
    assert scores["map"] == pytest.approx(metrics["val_map"], abs=2e-3)
    assert scores["recall_at_1"] == pytest.approx(metrics["val_recall_at_1"], abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_bundled_recipe_runs_two_steps(name, tmp_path):
    from lookalike.train.engine import train

    overrides = [
        "data.kwargs={image_size: 32, photos: [camera], scales: [1.0, 0.5], "
        "samples_per_class: 2, procedural: 1}",
        "steps=2",
        "batch_size=4",
        "val_every=2",
        "checkpoint_every=0",
        f"out_dir={tmp_path / 'runs'}",
    ]
    recipe = load_config(TrainRecipe, ROOT / "configs" / f"{name}_bundled.yaml", overrides)
    result = train(recipe, progress=False)
    assert all(torch.isfinite(torch.tensor(result.history["loss"])))
    assert result.metrics["val_fpr95"] is not None
    assert (result.run_dir / "weights.safetensors").is_file()


def test_the_default_global_descriptor_is_the_first_installed_candidate():
    from lookalike._registry import is_shipped
    from lookalike.descriptors.image.shipped import (
        GLOBAL_SHIPPED_CANDIDATES,
        best_shipped_global_descriptor,
    )

    assert GLOBAL_SHIPPED_CANDIDATES
    assert all(is_shipped("descriptor", spec) for spec in GLOBAL_SHIPPED_CANDIDATES)
    assert best_shipped_global_descriptor() == GLOBAL_SHIPPED_CANDIDATES[0] == "gem-color"
    # a composite counts only through its members; a plain weightless name never does
    assert not is_shipped("descriptor", "ensemble") and not is_shipped("descriptor", "no-such-name")
    assert not is_shipped("descriptor", "gem-tch:bundled")
    assert is_shipped("descriptor", "gem-tch")  # registered beside the default, not a candidate


def test_a_composite_is_shipped_only_when_every_member_with_weights_is(monkeypatch):
    import lookalike._registry as registry

    real = registry.is_shipped
    monkeypatch.setattr(
        registry, "is_shipped", lambda kind, spec: spec != "gem:bundled" and real(kind, spec)
    )
    from lookalike.descriptors.image.shipped import best_shipped_global_descriptor

    assert not real("descriptor", "gem-color")  # gem:bundled reported missing -> gem-color is too
    assert not real("descriptor", "gem-tch")
    assert real("descriptor", "transformed-color-hist") is False  # weightless, not a composite
    assert best_shipped_global_descriptor() == "dolg:bundled"


@pytest.mark.parametrize(
    ("name", "file", "histogram"),
    [("gem-color", "gem_color", "color-hist"), ("gem-tch", "gem_tch", "transformed-color-hist")],
)
def test_each_composite_is_its_ensemble_file(name, file, histogram):
    from lookalike.descriptors.image.ensemble import load_ensemble

    ens = load_ensemble(ROOT / "configs" / "ensembles" / f"{file}.yaml").eval()
    composite = lookalike.create("descriptor", name).eval()
    assert ens.specs == composite.specs == ["gem:bundled", histogram]
    assert composite.family_weights == [1.0, 1.0]
    x = torch.nn.functional.interpolate(_photo("coffee"), size=(96, 128), mode="area")
    gem = lookalike.create("descriptor", "gem:bundled")
    hist = lookalike.create("descriptor", histogram)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(torch.cat([gem(x), hist(x)], dim=1), dim=1)
        torch.testing.assert_close(composite(x), expected)
        torch.testing.assert_close(ens(x), expected)
    assert composite.weights_files() == [_path("gem")]


def test_the_leave_out_recipe_is_the_shipped_recipe_on_fewer_photos():
    """configs/gem_bundled_leave_out.yaml trains what gem:bundled trains, minus the proxy's photos."""
    from conftest import load_benchmark
    from lookalike.data.bundled import HELD_OUT_PHOTOS

    module = load_benchmark("held_out_retrieval")
    shipped = to_dict(load_config(TrainRecipe, ROOT / "configs" / "gem_bundled.yaml", []))
    leave_out = to_dict(
        load_config(TrainRecipe, ROOT / "configs" / "gem_bundled_leave_out.yaml", [])
    )
    photos = set(leave_out["data"]["kwargs"].pop("photos"))
    default = set(lookalike.create("dataset", "bundled_instances", photos=None).photos)
    assert photos == default - set(module.LEAVE_OUT) and not photos & set(HELD_OUT_PHOTOS)
    # a shorter CPU budget (1200 steps, float32 where bf16 is slower) is all that differs
    for key in ("name", "steps", "bf16", "val_every"):
        shipped.pop(key), leave_out.pop(key)
    assert leave_out == shipped
