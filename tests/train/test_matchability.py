"""lookalike.train.matchability: labels, AUC and the logistic head against oracles; the shipped file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError
from lookalike.train.matchability import (
    TRAIN_DRAW0,
    fit_gated_weights,
    fit_logistic,
    partner_labels,
    roc_auc,
    training_photos,
)

ROOT = Path(__file__).parents[2]


def test_partner_labels_equal_a_brute_force_loop():
    rng = np.random.default_rng(1)
    xy_a = rng.uniform(0, 100, size=(40, 2))
    xy_b = rng.uniform(0, 100, size=(30, 2))
    H = np.array([[1.1, 0.05, 3.0], [-0.02, 0.95, -2.0], [1e-4, 2e-4, 1.0]])
    got = partner_labels(xy_a, xy_b, H, 6.0)
    want = []
    for x, y in xy_a:
        u, v, w = H @ [x, y, 1.0]
        want.append(any(np.hypot(u / w - bx, v / w - by) <= 6.0 for bx, by in xy_b))
    assert got.tolist() == want
    assert 0 < got.sum() < len(got)  # both outcomes occur, so the check can fail
    assert partner_labels(xy_a, xy_b[:0], H, 6.0).tolist() == [False] * 40
    with pytest.raises(OptionError):
        partner_labels(xy_a, xy_b, H, 0.0)


def test_roc_auc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, size=200).astype(float)  # many ties
    labels = rng.uniform(size=200) < 0.3 + 0.1 * scores
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(EmptyInputError):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ShapeError):
        roc_auc([0.1, 0.2], [1, 0, 1])


def test_fit_logistic_equals_scikit_learn():
    """The folded (w, b) on raw rows gives scikit-learn's scaled-pipeline decision values."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(400, 6)) * [1, 2, 3, 0.5, 1, 4] + [0, 1, -1, 2, 0, 3]
    labels = rows[:, 0] + 0.5 * rows[:, 2] + rng.normal(scale=0.5, size=400) > 0
    fit = fit_logistic(rows, labels, C=0.1)
    oracle = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, tol=1e-10))
    oracle.fit(rows, labels)
    np.testing.assert_allclose(rows @ fit.w + fit.b, oracle.decision_function(rows), atol=1e-3)
    assert 0.8 < fit.auc <= 1.0 and fit.samples == 400
    assert fit.positive_rate == pytest.approx(labels.mean())


def test_fit_logistic_checks_its_inputs():
    rows = np.zeros((4, 2))
    with pytest.raises(EmptyInputError):
        fit_logistic(rows, [1, 1, 1, 1])
    with pytest.raises(ShapeError):
        fit_logistic(rows, [1, 0, 1])
    with pytest.raises(OptionError):
        fit_logistic(rows, [1, 0, 1, 0], holdout=1.0)


def test_fit_gated_weights_refuses_held_out_photos_and_other_networks(tmp_path):
    with pytest.raises(OptionError, match="held-out"):
        fit_gated_weights(tmp_path / "g.safetensors", photos=["camera", "chelsea"])
    with pytest.raises(OptionError, match="HardNet"):
        fit_gated_weights(tmp_path / "g.safetensors", base="l2net")
    with pytest.raises(OptionError, match="gamma"):
        fit_gated_weights(tmp_path / "g.safetensors", gamma=0.0)
    with pytest.raises(OptionError, match="validate_seeds"):
        fit_gated_weights(tmp_path / "g.safetensors", validate_seeds=-1)
    assert not (tmp_path / "g.safetensors").exists()


def test_the_shipped_gate_was_fitted_on_training_photos_only():
    from lookalike._registry import get_entry, resolve_weights
    from lookalike.core.weights import read_metadata

    meta = read_metadata(resolve_weights(get_entry("descriptor", "hardnet_gated"), "bundled"))
    gate = meta["training"]["gate"]
    assert gate["photos"] == training_photos() and gate["draws"][0] == TRAIN_DRAW0
    # the trunk: configs/hardnet_dog_bundled.yaml, fine-tuned from hardnet:bundled
    recipe = meta["training"]["base_training"]["recipe"]
    assert recipe["name"] == "hardnet_dog_bundled" and recipe["model"]["name"] == "hardnet:bundled"
    # ... and that file, as it stands, reproduces the stored recipe (steps, seed, data, loss, optim)
    from dataclasses import asdict

    from lookalike.core.config import load_config
    from lookalike.train.recipe import TrainRecipe

    config = ROOT / "configs" / "hardnet_dog_bundled.yaml"
    want = asdict(load_config(TrainRecipe, config))
    for key in ("steps", "seed", "batch_size", "data", "loss", "optim", "model"):
        assert recipe[key] == want[key], key
    assert meta["training"]["patch_geometry"]["patch_extent"] == 6.0
    scores = meta["training"]["validation"]["scores"]
    assert scores["gated"]["mma@3"] > scores["base"]["mma@3"]


def test_the_slim_weights_hold_both_trunk_recipes_of_the_repository():
    """hardnet_gated:slim: stage 1 is configs/hardnet_slim_bundled.yaml, stage 2 hardnet_dog_bundled.yaml
    started from stage 1 (float32), the gate fitted on the training photos only."""
    from dataclasses import asdict

    from lookalike._registry import get_entry, is_shipped, resolve_weights
    from lookalike.core.config import load_config
    from lookalike.core.weights import read_metadata
    from lookalike.train.recipe import TrainRecipe

    assert is_shipped("descriptor", "hardnet_gated:slim")
    meta = read_metadata(resolve_weights(get_entry("descriptor", "hardnet_gated"), "slim"))
    assert meta["kwargs"]["width"] == 16
    training = meta["training"]
    assert training["gate"]["photos"] == training_photos()
    assert training["gate"]["draws"][0] == TRAIN_DRAW0
    stages = {
        "hardnet_slim_bundled.yaml": training["trunk_pretraining"]["recipe"],
        "hardnet_dog_bundled.yaml": training["base_training"]["recipe"],
    }
    for config, recipe in stages.items():
        want = asdict(load_config(TrainRecipe, ROOT / "configs" / config))
        for key in ("steps", "seed", "batch_size", "data", "loss", "optim"):
            assert recipe[key] == want[key], (config, key)
    assert stages["hardnet_slim_bundled.yaml"]["model"] == {
        "name": "hardnet",
        "kwargs": {"width": 16},
    }
    assert stages["hardnet_dog_bundled.yaml"]["bf16"] is False
    assert training["trunk_pretraining"]["metrics"]["val_fpr95"] < 0.05
    scores = training["validation"]["scores"]
    assert scores["gated"]["mma@3"] > scores["base"]["mma@3"]


@pytest.mark.parametrize(("weights", "width"), [("bundled", 32), ("slim", 16)])
def test_the_shipped_network_is_a_hardnet_plus_its_gate(weights, width):
    """Oracle: a plain HardNet holding the shipped trunk, its rows gated by hand with the stored head."""
    from lookalike.descriptors.patch.hardnet import HardNet

    gated = lookalike.create("descriptor", f"hardnet_gated:{weights}")
    assert gated.width == width
    base = HardNet(width=width).eval()
    trunk = {k: v for k, v in gated.state_dict().items() if not k.startswith("gate.")}
    base.load_state_dict(trunk)
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    x[3] = 0.5  # a flat patch: all-zero row
    with torch.no_grad():
        rows = base(x).double().numpy()
        got = gated(x).double().numpy()
    w = gated.gate.score.weight.detach().double().numpy()[0]
    b = float(gated.gate.score.bias.detach())
    q = (1 / (1 + np.exp(-(rows @ w + b)))) ** gated.gate.gamma
    live = np.abs(rows).sum(1) > 0
    want = np.concatenate([np.sqrt(q)[:, None] * rows, (np.sqrt(1 - q) * live)[:, None]], 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert gated.dim == 129 and not got[3].any()
    assert 0.0 < q[live].min() < q[live].max() < 1.0  # a trained head: the gate varies


@pytest.mark.slow
def test_fit_gated_weights_end_to_end(tmp_path):
    out = tmp_path / "gated.safetensors"
    training = fit_gated_weights(out, photos=["camera", "astronaut"], draws=1, validate_seeds=1)
    assert training["gate"]["samples"] > 1000 and 0.5 < training["gate"]["auc"] < 1.0
    assert set(training["validation"]["scores"]) == {"base", "gated"}
    model = lookalike.create("descriptor", f"hardnet_gated:{out}")
    assert model.gate.gamma == 3.0 and float(model.gate.score.weight.detach().abs().sum()) > 0


def test_cli_fit_gate_refuses_bad_arguments(tmp_path, capsys):
    from lookalike.cli.main import main

    assert main(["fit-gate", "--out", str(tmp_path / "g.txt")]) == 1
    assert "safetensors" in capsys.readouterr().err
    assert main(["fit-gate", "--base", "hardnet", "--out", str(tmp_path / "g.safetensors")]) == 1
    assert "weights" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
