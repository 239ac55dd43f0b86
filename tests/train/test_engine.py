from __future__ import annotations

import itertools
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lookalike
from lookalike._registry import build_component, split_spec
from lookalike.core.config import ConfigError, load_config
from lookalike.core.weights import read_metadata, read_weights
from lookalike.train.checkpoint import CheckpointNotFoundError
from lookalike.train.engine import train, train_patches
from lookalike.train.optim import lr_factor, resolve_bf16, seed_everything
from lookalike.train.recipe import PatchTrainRecipe, TrainRecipe

ROOT = Path(__file__).parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
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
    recipe = load_config(TrainRecipe, path)
    # a recipe may start from named weights (model: {name: "hardnet:bundled"})
    assert split_spec(recipe.model.name)[0] in lookalike.list_registered("descriptor")
    assert recipe.loss.name in lookalike.list_registered("loss")
    assert recipe.data.name in lookalike.list_registered("dataset")
    assert recipe.task.name in {"pairs", "labelled", "pk"}
    # the recipe asks for every held-out point, so no "only N of M points" warning
    assert recipe.val_points is None


def test_shipped_recipe_validation_set_prints_no_warning(caplog):
    recipe = load_config(TrainRecipe, ROOT / "configs" / "hardnet_bundled.yaml")
    data = build_component(recipe.data, "dataset", seed=0, batch_size=8)
    with caplog.at_level(logging.WARNING):
        val = data.validation_set(n_points=recipe.val_points)
    assert not [r for r in caplog.records if "points available" in r.getMessage()]
    assert val.patches.shape[0] > 1000


def test_recipe_rejects_unknown_key():
    assert PatchTrainRecipe is TrainRecipe and train_patches is train
    with pytest.raises(ConfigError, match=r"unknown key optim\.learning_rate"):
        load_config(TrainRecipe, None, ["optim.learning_rate=1"])


def test_linear_schedule_with_warmup():
    recipe = load_config(TrainRecipe, None, ["steps=10", "optim.warmup_steps=2"])
    factors = [lr_factor(recipe, s) for s in range(10)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0) and factors[-1] == pytest.approx(1 - 7 / 8)
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))


def test_tiny_run_writes_weights_metrics_curves_and_resumes(tmp_path):
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    recipe = load_config(TrainRecipe, config, [*TINY, f"out_dir={tmp_path}"])
    result = train(recipe, progress=False)
    run = result.run_dir
    # runs/<YYYYmmdd-HHMMSS>-<recipe name>
    assert run.parent == tmp_path and run.name[:15].replace("-", "").isdigit()
    assert run.name.endswith("-hardnet_bundled")
    for name in ("config.yaml", "version.json", "metrics.json", "run.log", "curves.png"):
        assert (run / name).is_file(), name
    for name in ("checkpoint.safetensors", "weights.safetensors"):
        assert (run / name).stat().st_mode & 0o044 == 0o044, name  # group/other readable
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0.0 <= metrics["val_fpr95"] <= 1.0
    meta = read_metadata(result.weights)
    assert meta["name"] == "hardnet" and meta["training"]["recipe"]["seed"] == 0
    model = lookalike.create("descriptor", "hardnet", weights=str(result.weights)).eval()
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 128)
    longer = load_config(TrainRecipe, config, [*TINY, "steps=5", f"out_dir={tmp_path}"])
    resumed = train(longer, resume=run, progress=False)
    assert resumed.history["loss_step"] == [1, 2, 3, 4, 5]
    assert resumed.history["loss"][:3] == result.history["loss"]


def test_resume_from_a_missing_checkpoint_fails_before_creating_anything(tmp_path):
    out = tmp_path / "runs"
    recipe = load_config(TrainRecipe, None, [*TINY, f"out_dir={out}"])
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at /does/not/exist"):
        train(recipe, resume="/does/not/exist", progress=False)
    assert not out.exists()
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at"):
        train(recipe, resume=empty, progress=False)
    assert not out.exists()


def test_cli_resume_from_a_missing_checkpoint(tmp_path):
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", "train", "--config", str(config),
         "--resume", "/does/not/exist", "--quiet", f"out_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no checkpoint at /does/not/exist" in proc.stderr
    assert "weights file" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_stop_after_then_resume_equals_an_uninterrupted_run(tmp_path):
    """3 steps + resume for 2 == 5 uninterrupted steps: same loss history, same weights, exactly.

    Exact on CPU (rtol = atol = 0): the checkpoint restores model, momentum, the data stream's
    generator and shuffle buffer and torch's RNG state; the linear schedule depends on ``steps``
    only, so the interrupted run follows the same learning rates.
    """
    base = [*TINY, "steps=5", "val_every=0", "checkpoint_every=0", "data.kwargs.buffer_batches=2"]
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    whole = train(load_config(TrainRecipe, config, [*base, f"out_dir={tmp_path / 'a'}"]),
                  progress=False)  # fmt: skip
    recipe = load_config(TrainRecipe, config, [*base, f"out_dir={tmp_path / 'b'}"])
    first = train(recipe, progress=False, stop_after=3)
    assert first.weights is None and len(first.history["loss"]) == 3
    rest = train(recipe, resume=first.run_dir, progress=False)
    assert rest.history["loss"] == whole.history["loss"]
    ours, _ = read_weights(rest.weights)
    ref, _ = read_weights(whole.weights)
    assert ours.keys() == ref.keys()
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=0, atol=0, msg=key)


def test_pca_head_is_fitted_on_training_patches(tmp_path):
    config = ROOT / "configs" / "hardnet8_pca_bundled.yaml"
    overrides = [*TINY, "steps=1", "pca.samples=200", "pca.dim=16", "model.kwargs.dim=16"]
    recipe = load_config(TrainRecipe, config, [*overrides, f"out_dir={tmp_path}"])
    result = train(recipe, progress=False)
    model = lookalike.create("descriptor", "hardnet8", weights=str(result.weights)).eval()
    components = model.components
    # fitted, not the identity initialisation: orthonormal columns (no whitening)
    torch.testing.assert_close(components.T @ components, torch.eye(16), atol=1e-4, rtol=0)
    assert not torch.equal(components, torch.eye(512, 16))
    assert "val_fpr95_pca" in result.metrics


def test_pca_is_fitted_on_what_it_projects():
    """HardNet8's projection L2-normalises the trunk rows first: the PCA mean is their mean."""
    from lookalike.train.report import fit_pca_head

    torch.manual_seed(0)
    model = lookalike.create("descriptor", "hardnet8", dim=8).eval()
    patches = torch.rand(64, 1, 32, 32)
    fit_pca_head(model, patches, dim=8, whiten_power=0.0, device=torch.device("cpu"))
    with torch.no_grad():
        rows = torch.nn.functional.normalize(model.forward_features(patches), dim=1)
    torch.testing.assert_close(model.mean, rows.mean(0), atol=1e-5, rtol=0)
    # the projected training rows are centred
    with torch.no_grad():
        projected = model.project(model.forward_features(patches))
    assert projected.mean(0).abs().max() < 1e-4


class _CountingValidation:
    """A validation set that scores itself (as retrieval sets do): 0.1, 0.5, 0.3, ... per call."""

    metric, higher_is_better = "map", True

    def __init__(self) -> None:
        self.values = iter([0.1, 0.5, 0.3, 0.2])
        self.models: list[type] = []

    def evaluate(self, model, device):
        self.models.append(type(model))
        return next(self.values)


def test_validation_set_with_its_own_metric_is_recorded_by_name(tmp_path, monkeypatch):
    from lookalike.data.bundled_classes import BundledClasses

    val = _CountingValidation()
    monkeypatch.setattr(BundledClasses, "validation_set", lambda self, n_points=None: val)
    overrides = ["steps=3", "batch_size=8", "val_every=1", "checkpoint_every=0", "bf16=false"]
    overrides += ["data.kwargs.samples_per_class=2", f"out_dir={tmp_path}"]
    recipe = load_config(TrainRecipe, ROOT / "configs" / "arcface_bundled_classes.yaml", overrides)
    result = train(recipe, progress=False)
    # three validations (steps 1, 2, 3): the last and the best (highest, as the set says) are kept
    assert result.metrics["val_map"] == 0.3 and result.metrics["val_map_best"] == 0.5
    assert result.history["val_map"] == [0.1, 0.5, 0.3] and result.history["val_step"] == [1, 2, 3]
    assert "val_fpr95" not in result.metrics and val.models  # the model itself was handed over
    assert (result.run_dir / "curves.png").is_file()


def test_patch_geometry_of_the_data_goes_into_the_weights_and_back_into_the_model(
    tmp_path, monkeypatch
):
    """A data set that says how it cut patches (patch_geometry) gets that into the weights file, and
    loading the file sets the network's patch_extent, so the matching pipeline cuts the same patches."""
    from lookalike.data.bundled_pairs import BundledPairs
    from lookalike.matching.describe import create_describer

    geometry = {"patch_size": 32, "patch_extent": 7.25, "orientation": "detected"}
    monkeypatch.setattr(BundledPairs, "patch_geometry", lambda self: geometry, raising=False)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    recipe = load_config(TrainRecipe, config, [*TINY, "val_every=0", f"out_dir={tmp_path}"])
    result = train(recipe, progress=False)
    assert read_metadata(result.weights)["training"]["patch_geometry"] == geometry
    model = lookalike.create("descriptor", "hardnet", weights=str(result.weights))
    assert model.patch_extent == 7.25 != type(model).patch_extent
    assert create_describer(f"hardnet:{result.weights}").extent == 7.25


def test_frozen_modules_keep_their_weights_and_the_rest_trains(tmp_path):
    """``freeze=[...]``: those parameters come out bit-identical, every other one moves."""
    from lookalike.core.errors import OptionError
    from lookalike.train.engine import freeze_modules

    config = ROOT / "configs" / "hardnet_bundled.yaml"
    base = [*TINY, "steps=2", "val_every=0", "checkpoint_every=0", "seed=5"]
    recipe = load_config(TrainRecipe, config, [*base, "freeze=[features.0]", f"out_dir={tmp_path}"])
    assert recipe.freeze == ["features.0"]
    seed_everything(5)  # as the engine does before it builds the model
    start = build_component(recipe.model, "descriptor").state_dict()
    trained, _ = read_weights(train(recipe, progress=False).weights)
    frozen = [k for k in start if k.startswith("features.0.")]
    assert frozen, "the test needs parameters under features.0"
    for key in frozen:
        torch.testing.assert_close(trained[key], start[key], rtol=0, atol=0, msg=key)
    moved = [k for k in start if k.endswith("weight") and not k.startswith("features.0.")]
    assert moved and all(not torch.equal(trained[k], start[k]) for k in moved)
    with pytest.raises(OptionError, match="freeze: expected submodule names"):
        freeze_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["1"])


def test_cpu_training_flushes_subnormal_state_every_few_steps(tmp_path, monkeypatch):
    """The loop calls the subnormal flush (core.subnormal) every ``_FLUSH_EVERY`` CPU steps."""
    from lookalike.train import engine

    calls = []
    real = engine._flush_subnormal

    def spy(parts):
        calls.append(len(parts.optimizer.state))
        real(parts)

    monkeypatch.setattr(engine, "_FLUSH_EVERY", 2)
    monkeypatch.setattr(engine, "_flush_subnormal", spy)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    overrides = [*TINY, "steps=5", "val_every=0", "checkpoint_every=0", f"out_dir={tmp_path}"]
    train(load_config(TrainRecipe, config, overrides), progress=False)
    assert len(calls) == 2 and all(n > 0 for n in calls)  # after steps 2 and 4, with Adam state


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizer_step_is_fused_on_cpu_and_matches_the_per_tensor_step(name):
    from lookalike.train.optim import make_optimizer

    recipe = load_config(TrainRecipe, ROOT / "configs" / "hardnet_bundled.yaml",
                         [f"optim.name={name}", "optim.lr=0.01", "optim.weight_decay=0.001"])  # fmt: skip
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(3))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = make_optimizer(recipe, ours)
    assert opt.defaults["fused"] is True
    kw = {"lr": 0.01, "weight_decay": 0.001, "foreach": False}
    if name == "sgd":
        oracle = torch.optim.SGD(ref, momentum=recipe.optim.momentum, dampening=0.0, **kw)
    else:
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        oracle = cls(ref, betas=(recipe.optim.momentum, 0.999), **kw)
    for _ in range(6):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, ref, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        oracle.step()
    for p, q in zip(ours, ref, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    again = make_optimizer(recipe, ref)  # a per-tensor optimiser's state loads into a fused one
    again.load_state_dict(oracle.state_dict())
    assert again.state_dict()["state"].keys() == oracle.state_dict()["state"].keys()
    no_fuse = make_optimizer(recipe, [torch.nn.Parameter(torch.randn(2, dtype=torch.float64)),
                                      torch.nn.Parameter(torch.randn(2).to("meta"))])  # fmt: skip
    assert not no_fuse.defaults.get("fused")  # two devices: the plain step


def test_budget_steps_hand_cases():
    from lookalike.core.errors import ValueRangeError
    from lookalike.train.optim import budget_steps

    # 24 done in 3 s at 0.1 s a step: (285 - 3) / 0.1 = 2820 more fit, under the 3200 planned
    kw = {"done": 24, "elapsed_seconds": 3.0, "step_seconds": 0.1, "budget_seconds": 285.0}
    assert budget_steps(planned=3200, **kw) == 2844
    assert budget_steps(planned=1000, **kw) == 1000  # never more than planned
    assert budget_steps(planned=100, done=10, elapsed_seconds=5.0, step_seconds=2.0,
                        budget_seconds=10.0) == 12  # fmt: skip  # floor(5 / 2) = 2 more
    assert budget_steps(planned=100, done=10, elapsed_seconds=11.0, step_seconds=1.0,
                        budget_seconds=10.0) == 10  # fmt: skip  # over the budget: stop now
    with pytest.raises(ValueRangeError, match=r"step_seconds: expected a number > 0, got 0\.0"):
        budget_steps(planned=10, done=1, elapsed_seconds=0.0, step_seconds=0.0, budget_seconds=1.0)
    good = {"planned": 10, "done": 1, "elapsed_seconds": 0.0, "step_seconds": 1.0,
            "budget_seconds": 5.0}  # fmt: skip
    for key, bad, message in [
        ("planned", 0, "planned: expected an integer >= 1, got 0"),
        ("done", -1, "done: expected an integer >= 0, got -1"),
        ("done", 1.5, "done: expected an integer >= 0, got 1.5"),
        ("budget_seconds", float("nan"), "budget_seconds: expected a number > 0, got nan"),
        ("elapsed_seconds", -1.0, "elapsed_seconds: expected a number >= 0, got -1.0"),
    ]:
        with pytest.raises(ValueRangeError, match=re.escape(message)):
            budget_steps(**{**good, key: bad})


def _budget_spy(monkeypatch, fixed, every=100):
    """Time budget with 1 skipped + 2 timed steps whose step count is ``fixed`` (an int, or one
    count per call of budget_steps, re-checked every ``every`` steps); records the calls of
    budget_steps and the step totals the schedule is computed with."""
    from lookalike.train import engine

    calls, totals = [], []
    real_factor = engine.lr_factor

    def fake_budget(**kw):
        calls.append(kw)
        return fixed if isinstance(fixed, int) else fixed[len(calls) - 1]

    def factor(recipe, step):
        totals.append(recipe.steps)
        return real_factor(recipe, step)

    monkeypatch.setattr(engine, "_BUDGET_SKIP", 1)
    monkeypatch.setattr(engine, "_BUDGET_TIMED", 2)
    monkeypatch.setattr(engine, "_BUDGET_EVERY", every)
    monkeypatch.setattr(engine, "budget_steps", fake_budget)
    monkeypatch.setattr(engine, "lr_factor", factor)
    return calls, totals


def test_max_minutes_fixes_the_step_count_after_timing_and_the_schedule_follows(
    tmp_path, monkeypatch
):
    calls, totals = _budget_spy(monkeypatch, fixed=5)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    overrides = [*TINY, "steps=8", "val_every=0", "max_minutes=4.5", f"out_dir={tmp_path}"]
    result = train(load_config(TrainRecipe, config, overrides), progress=False)
    assert len(calls) == 1
    assert calls[0]["planned"] == 8 and calls[0]["done"] == 3  # after 1 skipped + 2 timed steps
    assert calls[0]["budget_seconds"] == pytest.approx(270.0) and calls[0]["step_seconds"] > 0
    assert totals == [8, 8, 8, 5, 5]  # the schedule runs to the fixed count
    assert len(result.history["loss"]) == 5 and result.weights is not None
    assert result.metrics["steps"] == 5 and result.metrics["steps_planned"] == 8


def test_max_minutes_re_checks_the_count_and_cuts_it_when_the_pace_drops(tmp_path, monkeypatch):
    """Fixed at 9 after step 3, kept at the re-check before step 5, cut to 7 before step 7."""
    calls, totals = _budget_spy(monkeypatch, fixed=[9, 9, 7], every=2)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    overrides = [*TINY, "steps=10", "val_every=0", "max_minutes=4.5", f"out_dir={tmp_path}"]
    result = train(load_config(TrainRecipe, config, overrides), progress=False)
    assert [(c["planned"], c["done"]) for c in calls] == [(10, 3), (10, 5), (10, 7)]
    assert all(c["step_seconds"] > 0 and c["elapsed_seconds"] > 0 for c in calls)
    assert calls[2]["elapsed_seconds"] > calls[1]["elapsed_seconds"] > calls[0]["elapsed_seconds"]
    assert totals == [10, 10, 10, 9, 9, 9, 9]  # the schedule follows each count
    assert len(result.history["loss"]) == 7 and result.metrics["steps"] == 7
    assert result.metrics["steps_planned"] == 10


def test_max_minutes_re_check_raises_the_count_up_to_the_recipe_steps(tmp_path, monkeypatch):
    """Fixed at 6 after step 3, raised to 9 before step 5 (kept before step 7): nine steps, the
    schedule and the final save follow the raised count."""
    calls, totals = _budget_spy(monkeypatch, fixed=[6, 9, 9], every=2)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    overrides = [*TINY, "steps=10", "val_every=0", "checkpoint_every=0", "max_minutes=4.5",
                 f"out_dir={tmp_path}"]  # fmt: skip
    result = train(load_config(TrainRecipe, config, overrides), progress=False)
    assert [(c["planned"], c["done"]) for c in calls] == [(10, 3), (10, 5), (10, 7)]
    assert totals == [10, 10, 10, 6, 6, 9, 9, 9, 9]
    assert len(result.history["loss"]) == 9 and result.metrics["steps"] == 9
    assert result.weights is not None and result.weights.exists()


def test_budget_re_check_takes_the_slower_of_the_recent_and_the_mean_pace(monkeypatch):
    """Hand-set clock: 1 s per step over the timed steps, then 3 s per step (at step 4: recent
    pace 3 s, mean 2 s), then 0.5 s per step (at step 6: recent 0.5 s, mean 1.5 s)."""
    from types import SimpleNamespace

    from lookalike.train import engine

    monkeypatch.setattr(engine, "_BUDGET_SKIP", 0)
    monkeypatch.setattr(engine, "_BUDGET_TIMED", 2)
    monkeypatch.setattr(engine, "_BUDGET_EVERY", 2)
    clock = {"t": 0.0}
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock["t"])
    recipe = load_config(TrainRecipe, ROOT / "configs" / "hardnet_bundled.yaml",
                         ["steps=100", "max_minutes=0.5"])  # fmt: skip
    parts = SimpleNamespace(
        start=0, steps=None, cache_seconds=0.0, ctx=SimpleNamespace(enabled=False)
    )
    budget = engine._Budget(recipe, parts)
    counts = []
    for step, t in enumerate([0, 1, 2, 5, 8, 8.5, 9]):
        clock["t"] = t
        recipe = budget.check(recipe, parts, step, 0.0)
        counts.append(recipe.steps)
    # step 2: 2 + floor(28 / 1) = 30; step 4: 4 + floor(22 / 3) = 11 (the recent pace);
    # step 6: 6 + floor(21 / (9 / 6)) = 20 (the mean pace 1.5 s, not the recent 0.5 s)
    assert counts == [100, 100, 30, 30, 11, 11, 20]


def test_max_minutes_over_the_budget_stops_after_the_timed_steps(tmp_path, monkeypatch):
    from lookalike.train import engine

    monkeypatch.setattr(engine, "_BUDGET_SKIP", 1)
    monkeypatch.setattr(engine, "_BUDGET_TIMED", 2)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    overrides = [*TINY, "steps=10", "val_every=0", "max_minutes=1e-7", f"out_dir={tmp_path}"]
    result = train(load_config(TrainRecipe, config, overrides), progress=False)
    assert result.metrics["steps"] == 3 and len(result.history["loss"]) == 3
    assert result.weights is not None
    with pytest.raises(ConfigError, match="max_minutes"):
        load_config(TrainRecipe, config, ["max_minutes=0"])


def test_resume_keeps_the_step_count_a_time_budget_fixed(tmp_path, monkeypatch):
    calls, _ = _budget_spy(monkeypatch, fixed=5)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    base = [*TINY, "steps=8", "val_every=0", "checkpoint_every=0", "max_minutes=4.5",
            "data.kwargs.buffer_batches=2"]  # fmt: skip
    whole = train(load_config(TrainRecipe, config, [*base, f"out_dir={tmp_path / 'a'}"]),
                  progress=False)  # fmt: skip
    recipe = load_config(TrainRecipe, config, [*base, f"out_dir={tmp_path / 'b'}"])
    first = train(recipe, progress=False, stop_after=4)
    assert len(calls) == 2 and len(first.history["loss"]) == 4
    rest = train(recipe, resume=first.run_dir, progress=False)
    assert len(calls) == 2  # not timed again: the checkpoint holds the fixed count
    assert rest.metrics["steps"] == 5 and rest.history["loss"] == whole.history["loss"]


def test_bf16_auto_trains_in_bfloat16_only_where_that_is_faster(monkeypatch):
    from lookalike.core.errors import OptionError

    cpu = torch.device("cpu")
    for amx in (True, False):  # AMX tiles: bfloat16; AVX512-BF16 alone trains slower in it
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert resolve_bf16("auto", cpu) is amx
    assert resolve_bf16(True, cpu) is True and resolve_bf16(False, cpu) is False
    with pytest.raises(OptionError, match="bf16: expected true, false or 'auto', got 'yes'"):
        resolve_bf16("yes", cpu)
    config = ROOT / "configs" / "hardnet_bundled.yaml"
    assert load_config(TrainRecipe, config, ["bf16=auto"]).bf16 == "auto"
    assert load_config(TrainRecipe, config, ["bf16=true"]).bf16 is True
    with pytest.raises(ConfigError, match="bf16"):
        load_config(TrainRecipe, config, ["bf16=maybe"])
