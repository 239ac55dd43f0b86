from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

import lookalike
from lookalike.core.config import ConfigError, load_config
from lookalike.core.weights import read_metadata
from lookalike.train.engine import _lr_factor, train_patches
from lookalike.train.recipe import PatchTrainRecipe

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
TINY = [
    "steps=3",
    "batch_size=8",
    "val_every=2",
    "val_points=30",
    "checkpoint_every=2",
    "bf16=false",
    "data.kwargs.photos=[camera]",
    "data.kwargs.val_photos=[coins]",
    "data.kwargs.keypoint_budget=200",
]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads_and_names_registered_parts(path):
    recipe = load_config(PatchTrainRecipe, path)
    assert recipe.model.name in lookalike.list_registered("descriptor")
    assert recipe.loss.name in lookalike.list_registered("loss")
    assert recipe.data.name in lookalike.list_registered("dataset")


def test_recipe_rejects_unknown_key():
    with pytest.raises(ConfigError, match=r"unknown key optim\.learning_rate"):
        load_config(PatchTrainRecipe, None, ["optim.learning_rate=1"])


def test_linear_schedule_with_warmup():
    recipe = load_config(PatchTrainRecipe, None, ["steps=10", "optim.warmup_steps=2"])
    factors = [_lr_factor(recipe, s) for s in range(10)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0) and factors[-1] == pytest.approx(1 - 7 / 8)
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))


def test_tiny_run_writes_weights_metrics_curves_and_resumes(tmp_path):
    config = Path(__file__).parents[2] / "configs" / "hardnet_bundled.yaml"
    recipe = load_config(PatchTrainRecipe, config, [*TINY, f"out_dir={tmp_path}"])
    result = train_patches(recipe, progress=False)
    run = result.run_dir
    for name in ("config.yaml", "version.json", "metrics.json", "run.log", "curves.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0.0 <= metrics["val_fpr95"] <= 1.0
    meta = read_metadata(result.weights)
    assert meta["name"] == "hardnet" and meta["training"]["recipe"]["seed"] == 0
    # the weights load by path through the registry
    model = lookalike.create("descriptor", "hardnet", weights=str(result.weights)).eval()
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 128)
    # resume from the run directory: continue to 5 steps from the step-3 checkpoint
    longer = load_config(PatchTrainRecipe, config, [*TINY, "steps=5", f"out_dir={tmp_path}"])
    resumed = train_patches(longer, resume=run, progress=False)
    history = json.loads((resumed.run_dir / "metrics.json").read_text())
    assert history["steps"] == 5


def test_pca_head_is_fitted_on_training_patches(tmp_path):
    config = Path(__file__).parents[2] / "configs" / "hardnet8_pca_bundled.yaml"
    recipe = load_config(
        PatchTrainRecipe,
        config,
        [
            *TINY,
            "steps=1",
            "pca.samples=200",
            "pca.dim=16",
            "model.kwargs.dim=16",
            f"out_dir={tmp_path}",
        ],
    )
    result = train_patches(recipe, progress=False)
    model = lookalike.create("descriptor", "hardnet8", weights=str(result.weights)).eval()
    components = model.components
    # fitted, not the identity initialisation: orthonormal columns (no whitening)
    torch.testing.assert_close(components.T @ components, torch.eye(16), atol=1e-4, rtol=0)
    assert not torch.equal(components, torch.eye(512, 16))
    assert "val_fpr95_pca" in result.metrics
