"""The labelled (margin head) and P×K tasks through the same engine, on a tiny bundled_classes set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lookalike
from lookalike._registry import build_component
from lookalike.core.config import load_config
from lookalike.core.errors import OptionError
from lookalike.core.weights import read_weights
from lookalike.train.distributed import DistContext
from lookalike.train.engine import _build, train
from lookalike.train.recipe import TrainRecipe
from lookalike.train.tasks import build_task

ROOT = Path(__file__).parents[2]
DATA = [
    "data.kwargs.photos=[camera, astronaut]",
    "data.kwargs.grid=2",
    "data.kwargs.samples_per_class=4",
    "model.name=l2net",
    "steps=3",
    "batch_size=8",
    "val_every=2",
    "checkpoint_every=0",
    "bf16=false",
    "device=cpu",
]


def _recipe(name: str, tmp_path, *extra: str) -> TrainRecipe:
    return load_config(TrainRecipe, ROOT / "configs" / name, [*DATA, *extra, f"out_dir={tmp_path}"])


def test_arcface_class_weights_are_trained_by_the_engine(tmp_path):
    recipe = _recipe("arcface_bundled_classes.yaml", tmp_path, "optim.lr=0.5")
    torch.manual_seed(0)
    parts = _build(recipe, torch.device("cpu"), DistContext())
    assert parts.loss.weight.shape == (8, parts.model.dim)  # 2 photos x 2 x 2 cells
    assert any(p is parts.loss.weight for g in parts.optimizer.param_groups for p in g["params"])
    before = parts.loss.weight.detach().clone()
    loss = parts.step(*next(parts.stream))
    parts.optimizer.zero_grad()
    loss.backward()
    parts.optimizer.step()
    assert not torch.equal(before, parts.loss.weight.detach())
    # the descriptor outputs embeddings only: no class weight among its parameters
    assert all(p is not parts.loss.weight for p in parts.model.parameters())


def _assert_same_run(rest, whole) -> None:
    """A resumed run equals the uninterrupted one: same losses, bit-identical weights."""
    assert rest.history["loss"] == whole.history["loss"]
    ours, _ = read_weights(rest.weights)
    ref, _ = read_weights(whole.weights)
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=0, atol=0, msg=key)


def test_labelled_run_writes_everything_and_resumes_exactly(tmp_path):
    whole = train(
        _recipe("arcface_bundled_classes.yaml", tmp_path / "a", "steps=4"), progress=False
    )
    for name in ("metrics.json", "curves.png", "weights.safetensors", "checkpoint.safetensors"):
        assert (whole.run_dir / name).is_file(), name
    assert 0.0 <= json.loads((whole.run_dir / "metrics.json").read_text())["val_fpr95"] <= 1.0
    recipe = _recipe("arcface_bundled_classes.yaml", tmp_path / "b", "steps=4")
    part = train(recipe, progress=False, stop_after=2)
    rest = train(recipe, resume=part.run_dir, progress=False)
    _assert_same_run(rest, whole)
    # the class weights were restored too (the loss after the resume depends on them)
    ckpt, _ = read_weights(rest.run_dir / "checkpoint.safetensors")
    assert "module/loss/weight" in ckpt


def test_pk_run_trains_triplet_plus_cross_entropy(tmp_path):
    recipe = _recipe("pk_bundled_classes.yaml", tmp_path, "task.kwargs.k=2")
    result = train(recipe, progress=False)
    assert len(result.history["loss"]) == 3 and all(v > 0 for v in result.history["loss"])
    model = lookalike.create("descriptor", "l2net", weights=str(result.weights)).eval()
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 128)
    ckpt, _ = read_weights(result.run_dir / "checkpoint.safetensors")
    assert "module/regularizer/weight" in ckpt  # the classifier lives in the CE loss


def test_pk_run_with_a_cross_batch_memory_resumes_exactly(tmp_path):
    """The memory (loss buffers) is saved in the checkpoint: 2 steps + resume == 5 steps."""
    xbm = ["task.kwargs.k=2", "steps=5", "val_every=0", "loss.kwargs.memory=24",
           "loss.kwargs.memory_start=1"]  # fmt: skip
    whole = train(_recipe("pk_bundled_classes.yaml", tmp_path / "a", *xbm), progress=False)
    plain = train(_recipe("pk_bundled_classes.yaml", tmp_path / "p", *xbm[:3]), progress=False)
    # steps 1-2: the batch term only; from step 3 the memory term adds to it
    assert whole.history["loss"][0] == plain.history["loss"][0]
    assert whole.history["loss"][2] != plain.history["loss"][2]
    recipe = _recipe("pk_bundled_classes.yaml", tmp_path / "b", *xbm)
    part = train(recipe, progress=False, stop_after=2)
    ckpt, _ = read_weights(part.run_dir / "checkpoint.safetensors")
    assert int(ckpt["module/loss/bank.count"]) == 16 and int(ckpt["module/loss/calls"]) == 2
    rest = train(recipe, resume=part.run_dir, progress=False)
    _assert_same_run(rest, whole)


def test_pk_batches_hold_p_ids_times_k(tmp_path):
    recipe = _recipe("pk_bundled_classes.yaml", tmp_path, "task.kwargs.k=2")
    task = build_task("pk", k=2)
    data = build_component(recipe.data, "dataset", **task.data_kwargs(recipe))
    inputs, labels = next(task.stream(data, recipe))
    assert inputs.shape == (8, 1, 32, 32)
    assert (labels.view(4, 2) == labels.view(4, 2)[:, :1]).all() and labels.unique().numel() == 4


def test_task_errors():
    with pytest.raises(OptionError, match=r"task\.name"):
        build_task("triplets")
    with pytest.raises(OptionError, match=r"task\.kwargs\.k"):
        build_task("pk", k=1)
