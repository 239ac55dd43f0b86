"""The training engine: one loop for every task, on one process or many (``torchrun``).

``train(recipe)`` builds the model, the task (:mod:`lookalike.train.tasks`), its losses and data
stream from the registry, and trains for ``recipe.steps`` steps (fewer when a wall-time budget
``recipe.max_minutes`` says so: the pace of the first steps fixes the count and the pace of later
steps may cut it, see :class:`_Budget`)
with a rich progress bar (loss, patches/s). Every ``val_every`` steps it scores the data set's
held-out validation set (FPR95 of patch pairs, or the set's own ``evaluate`` number such as
retrieval mAP; see
:func:`~lookalike.train.report.validate`); it writes
``checkpoint.safetensors`` (model, optimizer, loss parameters, data-stream and RNG state: resuming
continues the exact run) and, at the end, ``weights.safetensors`` (model only, recipe and validation
numbers in its metadata), ``curves.png`` and ``metrics.json`` into the run directory
``runs/<YYYYmmdd-HHMMSS>-<recipe name>/``.

Under ``torchrun`` every rank trains its shard of the global batch with DistributedDataParallel
(:mod:`lookalike.train.distributed`); rank 0 alone logs, shows progress and writes files.

Convention:
    - Resuming is exact on one process (same losses, same weights, bit for bit on CPU), with
      torch's fused optimiser steps too: the restored state takes its parameters' memory layout
      (:func:`~lookalike.train.checkpoint.load_checkpoint`).
    - Under ``torchrun`` rank 0 follows the single-process RNG sequence and rank ``r > 0`` reseeds
      torch with ``seed + 1_000_003 r (+ the resumed step)``, so dropout masks differ between shards:
      with dropout, a multi-process run (and its resume) matches one process in distribution, not
      number for number; without dropout it matches up to float rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookalike._registry import build_component
from lookalike.core.config import to_dict
from lookalike.core.errors import OptionError
from lookalike.core.runs import Run, start_run
from lookalike.core.subnormal import flush_subnormal_
from lookalike.core.weights import save_weights
from lookalike.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from lookalike.train.distributed import (
    DistContext,
    convert_batchnorm,
    gather_batch,
    init_distributed,
    shard,
)
from lookalike.train.frozen_cache import AfterPrefix, build_feature_cache
from lookalike.train.optim import (
    budget_steps,
    lr_factor,
    make_optimizer,
    resolve_bf16,
    resolve_device,
    seed_everything,
)
from lookalike.train.recipe import TrainRecipe
from lookalike.train.report import (
    fit_pca_head,
    plot_curves,
    progress_bar,
    validate,
    validation_metric,
)
from lookalike.train.tasks import Stream, Task, build_loss, build_task

__all__ = ["TrainResult", "freeze_modules", "resolve_device", "train", "train_patches"]

log = logging.getLogger(__name__)

_RANK_SEED_STRIDE = 1_000_003
#: Steps between two flushes of subnormal weights and optimizer state on the CPU
#: (:mod:`lookalike.core.subnormal`).
_FLUSH_EVERY = 25
#: With ``max_minutes``: steps skipped (first-call overheads), then steps timed, before the step
#: count is fixed (within the warm-up of the re-ID recipes, so the schedule's shape is unchanged);
#: then every ``_BUDGET_EVERY`` steps the count is re-checked (see :class:`_Budget`).
_BUDGET_SKIP, _BUDGET_TIMED, _BUDGET_EVERY = 3, 20, 100


@dataclass
class TrainResult:
    """What a training run produced (on rank 0; other ranks get ``None`` paths).

    Attributes:
        run_dir: the run directory.
        weights: path of the final ``weights.safetensors`` (``None`` when stopped early).
        metrics: final metrics (``val_fpr95``, ``train_seconds``, ``patches_per_second``, ...).
        history: the loss and validation history (``loss_step``, ``loss``, ``val_step``,
            ``val_fpr95``).
    """

    run_dir: Path | None
    weights: Path | None
    metrics: dict[str, Any]
    history: dict[str, list[Any]] = field(default_factory=dict)


class _StepModule(nn.Module):
    """Model and losses in one module (what DDP wraps): batch shard -> global loss."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        regularizer: nn.Module | None,
        task: Task,
        recipe: TrainRecipe,
        ctx: DistContext,
        device: torch.device,
    ) -> None:
        super().__init__()
        self.model, self.loss, self.regularizer = model, loss, regularizer
        self.task, self.weight, self.ctx = task, recipe.regularizer_weight, ctx
        self.bf16, self.device_type = resolve_bf16(recipe.bf16, device), device.type

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:
        autocast = (
            torch.autocast(self.device_type, dtype=torch.bfloat16)
            if self.bf16
            else contextlib.nullcontext()
        )
        with autocast:
            outputs = self.task.forward(self.model, batch)
        outputs = gather_batch(tuple(outputs), self.ctx)
        return self.task.criterion(outputs, self.loss, self.regularizer, self.weight)


@dataclass
class _Parts:
    model: nn.Module
    task: Task
    data: Any
    stream: Stream
    loss: nn.Module
    regularizer: nn.Module | None
    step: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    ctx: DistContext
    history: dict[str, list[Any]] = field(
        default_factory=lambda: {"loss_step": [], "loss": [], "val_step": [], "val_fpr95": []}
    )
    start: int = 0
    steps: int | None = None  # the step count fixed by a time budget (saved with checkpoints)
    cache_seconds: float = 0.0  # building the frozen-prefix cache (cache_frozen)


class _Budget:
    """The step count of a run with ``max_minutes``, the same on every rank.

    Steps ``start + 3 .. start + 22`` are timed, then :func:`~lookalike.train.optim.budget_steps`
    fixes ``steps``. Every 100 steps after that the count is re-checked at the slower of two
    paces, that of the last 100 steps and the mean since the timing began, up to the recipe's
    ``steps``: cut when the rest no longer fits (a machine that slows down), raised when both paces
    leave room (one whose first steps ran slow). A resumed run keeps its checkpoint's count and
    is not re-checked (the time spent before the interruption is not known). The time spent
    building a frozen-prefix cache (``cache_frozen``) counts as spent from the budget.
    """

    def __init__(self, recipe: TrainRecipe, parts: _Parts) -> None:
        self.enabled = recipe.max_minutes is not None and parts.steps is None
        self.fixed, self.planned = False, recipe.steps
        self.begin = parts.start + _BUDGET_SKIP
        self.end = self.begin + _BUDGET_TIMED
        self.begin_time, self.mark_time, self.mark_step = 0.0, 0.0, self.begin

    def check(self, recipe: TrainRecipe, parts: _Parts, step: int, t_start: float) -> TrainRecipe:
        """Called before ``step``; returns ``recipe``, its ``steps`` fixed, cut or raised when
        due."""
        if not self.enabled:
            return recipe
        now = time.perf_counter()
        if step == self.begin:
            self.begin_time = self.mark_time = now
        due = self.end if not self.fixed else self.mark_step + _BUDGET_EVERY
        if step < due or step >= recipe.steps:
            return recipe
        recent = (now - self.mark_time) / (step - self.mark_step)
        mean = (now - self.begin_time) / (step - self.begin)
        steps = budget_steps(
            planned=self.planned,
            done=step,
            elapsed_seconds=now - t_start + parts.cache_seconds,
            step_seconds=max(recent, mean, 1e-9),
            budget_seconds=60.0 * recipe.max_minutes,
        )
        if parts.ctx.enabled:  # rank 0's count for every rank
            import torch.distributed as dist

            agreed = torch.tensor([steps], dtype=torch.int64, device=parts.device)
            dist.broadcast(agreed, src=0)
            steps = int(agreed.item())
        self.mark_time, self.mark_step = now, step
        if self.fixed and steps == recipe.steps:
            return recipe
        what = "fixed at" if not self.fixed else "cut to" if steps < recipe.steps else "raised to"
        self.fixed = True
        parts.steps = steps
        log.info(
            "max_minutes=%s: steps %s %d (of %d)", recipe.max_minutes, what, steps, recipe.steps
        )
        return dataclasses.replace(recipe, steps=steps)


def freeze_modules(model: nn.Module, names: Sequence[str]) -> int:
    """Stop training the parameters of ``model``'s submodules ``names``; returns how many were frozen.

    Raises:
        OptionError: a name that is not one of ``model.named_modules()`` (the message lists the
            top-level ones).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> freeze_modules(net, ["0"]), [p.requires_grad for p in net.parameters()]
        (2, [False, False, True, True])
    """
    modules = dict(model.named_modules())
    frozen = 0
    for name in names:
        if name not in modules or not name:
            top = ", ".join(n for n in modules if n and "." not in n)
            raise OptionError(
                f"freeze: expected submodule names of the model ({top}, ...), got {name!r}"
            )
        for p in modules[name].parameters():
            frozen += int(p.requires_grad)
            p.requires_grad_(False)
    return frozen


def _build(recipe: TrainRecipe, device: torch.device, ctx: DistContext) -> _Parts:
    task = build_task(recipe.task.name, **recipe.task.kwargs)
    model = build_component(recipe.model, "descriptor").to(device).train()
    freeze_modules(model, recipe.freeze)
    data = build_component(recipe.data, "dataset", **task.data_kwargs(recipe))
    start, cache_seconds = 0, 0.0
    if recipe.cache_frozen:
        if recipe.pca.dim:
            raise OptionError(
                "cache_frozen: expected no PCA head (it is fitted on crops), got pca.dim"
            )
        began = time.perf_counter()
        data, start = build_feature_cache(model, data, device=device)
        cache_seconds = time.perf_counter() - began
        log.info("cache_frozen: %d blocks cached in %.1f s", start, cache_seconds)
    extras = task.loss_kwargs(data, model)
    loss = build_loss(recipe.loss, extras).to(device)
    reg = build_loss(recipe.regularizer, extras).to(device) if recipe.regularizer else None
    if ctx.enabled:
        model = convert_batchnorm(model, device)
    runner = AfterPrefix(model, start) if recipe.cache_frozen else model
    step = _StepModule(runner, loss, reg, task, recipe, ctx, device)
    params = [p for p in step.parameters() if p.requires_grad]
    optimizer = make_optimizer(recipe, params)
    stream = task.stream(data, recipe)
    parts = (model, task, data, stream, loss, reg, step, optimizer, device, ctx)
    return _Parts(*parts, cache_seconds=cache_seconds)


def _restore(parts: _Parts, path: Path) -> None:
    ckpt = load_checkpoint(
        path,
        parts.model,
        parts.optimizer,
        modules={"loss": parts.loss, "regularizer": parts.regularizer},
    )
    parts.start, parts.history = ckpt.step, ckpt.history
    parts.steps = ckpt.state.get("steps")
    if "stream" in ckpt.state:
        parts.stream.load_state_dict(ckpt.state["stream"])
    else:
        log.warning("%s holds no data-stream state: the stream restarts from its seed", path)
    if "torch_rng" in ckpt.state:
        torch.set_rng_state(ckpt.state["torch_rng"])
    log.info("resumed from %s at step %d", path, parts.start)


def _flush_subnormal(parts: _Parts) -> None:
    """Subnormal weights, buffers and optimizer state set to 0 (Adam's weight decay makes them)."""
    state = (t for s in parts.optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    flush_subnormal_(itertools.chain(parts.model.state_dict().values(), state))


def _save(parts: _Parts, run: Run, step: int, meta: dict[str, Any]) -> None:
    state = {"stream": parts.stream.state_dict(), "torch_rng": torch.get_rng_state()}
    if parts.steps is not None:
        state["steps"] = parts.steps
    save_checkpoint(
        run.file("checkpoint.safetensors"),
        parts.model,
        parts.optimizer,
        step=step,
        history=parts.history,
        training=meta,
        modules={"loss": parts.loss, "regularizer": parts.regularizer},
        state=state,
    )


def train(
    recipe: TrainRecipe,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    run: Run | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a descriptor as described by ``recipe`` (on every rank of a ``torchrun`` job).

    Args:
        recipe: the training recipe.
        resume: a ``checkpoint.safetensors`` (or the run directory holding it) to continue from;
            checked before anything is created.
        progress: show a rich progress bar (rank 0).
        run: an already opened run directory (default: a new one under ``recipe.out_dir``).
        stop_after: stop after this many steps as if interrupted (checkpoint written, no final
            weights); resuming with the same recipe continues the exact run.

    Returns:
        A :class:`TrainResult` with the run directory, the weights file and the final metrics.

    Raises:
        CheckpointNotFoundError: ``resume`` names no checkpoint ("no checkpoint at ...").
    """
    checkpoint = resolve_checkpoint(resume) if resume is not None else None
    if stop_after is not None and (isinstance(stop_after, bool) or stop_after < 1):
        raise OptionError(f"stop_after: expected an integer >= 1, got {stop_after!r}")
    threads = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    ctx, device = init_distributed(resolve_device(recipe.device))
    try:
        seed_everything(recipe.seed)
        if ctx.is_main:
            run = run or start_run(recipe.out_dir, recipe.name, recipe)
        with run if run is not None else contextlib.nullcontext():
            return _train(recipe, run, device, ctx, checkpoint, progress, stop_after)
    finally:
        ctx.close()
        torch.set_num_threads(threads)


#: The former name of :func:`train`.
train_patches = train


def _train(
    recipe: TrainRecipe,
    run: Run | None,
    device: torch.device,
    ctx: DistContext,
    checkpoint: Path | None,
    progress: bool,
    stop_after: int | None,
) -> TrainResult:
    parts = _build(recipe, device, ctx)
    if checkpoint is not None:
        _restore(parts, checkpoint)
    if ctx.rank > 0:  # own dropout masks per rank (rank 0 keeps the single-process sequence)
        torch.manual_seed(recipe.seed + _RANK_SEED_STRIDE * ctx.rank + parts.start)
    step_fn: nn.Module = parts.step
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        step_fn = DistributedDataParallel(parts.step, device_ids=ids)
    val = None
    if ctx.is_main and recipe.val_every and hasattr(parts.data, "validation_set"):
        val = parts.data.validation_set(n_points=recipe.val_points)
    meta = {"recipe": to_dict(recipe), "run": str(run.path) if run else None}
    geometry = getattr(parts.data, "patch_geometry", None)
    if callable(geometry):  # how training patches were cut: the pipeline reads it back
        meta["patch_geometry"] = geometry()
    planned = recipe.steps
    if parts.steps is not None:  # resumed: the step count a time budget fixed
        recipe = dataclasses.replace(recipe, steps=parts.steps)
    stop = recipe.steps if stop_after is None else min(recipe.steps, stop_after)
    seconds, seen, recipe = _loop(
        recipe, parts, step_fn, run, val, meta, stop, progress and ctx.is_main
    )
    stop = min(stop, recipe.steps)
    if not ctx.is_main:
        return TrainResult(None, None, {}, parts.history)
    metrics = _metrics(parts.history, seconds, seen, stop, validation_metric(val))
    metrics["bf16"] = parts.step.bf16
    if recipe.cache_frozen:
        metrics["cache_seconds"] = round(parts.cache_seconds, 1)
    if recipe.max_minutes is not None:
        metrics["steps_planned"] = planned
    if stop < recipe.steps:
        run.write_metrics(metrics)
        return TrainResult(run.path, None, metrics, parts.history)
    return _finish(recipe, parts, run, val, meta, metrics)


def _loop(
    recipe: TrainRecipe,
    parts: _Parts,
    step_fn: nn.Module,
    run: Run | None,
    val: Any,
    meta: dict[str, Any],
    stop: int,
    progress: bool,
) -> tuple[float, int, TrainRecipe]:
    """Train steps ``parts.start .. stop - 1``; returns the seconds, the samples seen and the recipe
    (its ``steps`` fixed by ``max_minutes`` when set)."""
    t_start, seen, history = time.perf_counter(), 0, parts.history
    budget = _Budget(recipe, parts)
    name = validation_metric(val)[0]
    history.setdefault(f"val_{name}", [])
    with progress_bar(progress) as bar:
        task = bar.add_task("training", total=recipe.steps, completed=parts.start) if bar else None
        for step in range(parts.start, stop):
            recipe = budget.check(recipe, parts, step, t_start)
            if step >= recipe.steps:
                break
            end = min(stop, recipe.steps)  # the count may still change: ``stop`` stays
            if bar and budget.enabled:
                bar.update(task, total=recipe.steps)
            batch = next(parts.stream)
            local = tuple(t.to(parts.device, non_blocking=True) for t in shard(batch, parts.ctx))
            for group in parts.optimizer.param_groups:
                group["lr"] = recipe.optim.lr * lr_factor(recipe, step)
            loss = step_fn(*local)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts.optimizer.step()
            if parts.device.type == "cpu" and (step + 1) % _FLUSH_EVERY == 0:
                _flush_subnormal(parts)
            seen += parts.task.samples(batch)
            value = float(loss.detach())
            history["loss_step"].append(step + 1)
            history["loss"].append(value)
            if bar:
                rate = seen / max(1e-9, time.perf_counter() - t_start)
                bar.update(task, advance=1, description=f"loss {value:.3f} | {rate:,.0f} patches/s")
            last = step + 1 == recipe.steps
            if val is not None and ((step + 1) % recipe.val_every == 0 or last):
                score = validate(parts.model, val, parts.device)
                history["val_step"].append(step + 1)
                history[f"val_{name}"].append(score)
                log.info("step %d: loss %.4f, val %s %.4f", step + 1, value, name, score)
            every = recipe.checkpoint_every
            due = every and ((step + 1) % every == 0 or last)
            if run is not None and (due or step + 1 == end):
                _save(parts, run, step + 1, meta)
    return time.perf_counter() - t_start, seen, recipe


def _metrics(
    history: dict[str, list[Any]],
    seconds: float,
    seen: int,
    stop: int,
    metric: tuple[str, bool],
) -> dict[str, Any]:
    name, higher = metric
    scores = history.get(f"val_{name}", [])
    best = max if higher else min
    return {
        "steps": stop,
        "train_seconds": round(seconds, 1),
        "patches_per_second": round(seen / max(seconds, 1e-9), 1),
        "final_loss": history["loss"][-1] if history["loss"] else None,
        f"val_{name}": scores[-1] if scores else None,
        f"val_{name}_best": best(scores) if scores else None,
    }


def _finish(
    recipe: TrainRecipe,
    parts: _Parts,
    run: Run,
    val: Any,
    meta: dict[str, Any],
    metrics: dict[str, Any],
) -> TrainResult:
    model = parts.model
    if recipe.pca.dim:
        patches = parts.task.sample_inputs(parts.data, recipe.pca.samples)
        metrics.update(
            fit_pca_head(
                model,
                patches,
                dim=recipe.pca.dim,
                whiten_power=recipe.pca.whiten_power,
                device=parts.device,
            )
        )
        if val is not None:
            metrics[f"val_{validation_metric(val)[0]}_pca"] = validate(model, val, parts.device)
    model.eval()
    weights = save_weights(
        model, run.file("weights.safetensors"), training={**meta, "metrics": metrics}
    )
    run.write_metrics(metrics)
    plot_curves(parts.history, run.file("curves.png"))
    log.info("weights: %s", weights)
    return TrainResult(run.path, weights, metrics, parts.history)
