"""Training engine for patch descriptors: one loop, progress, validation, checkpoints, curves.

``train_patches(recipe)`` builds the model, loss and data stream from the registry, trains for
``recipe.steps`` steps with a rich progress bar (loss, patches/s), validates FPR95 on the held-out
synthetic split every ``val_every`` steps, writes ``checkpoint.safetensors`` (model + optimizer state)
and, at the end, ``weights.safetensors`` (model only, recipe and validation numbers in its metadata),
``curves.png`` and ``metrics.json`` into the run directory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.core.config import to_dict
from lookalike.core.errors import OptionError
from lookalike.core.runs import Run, start_run
from lookalike.core.weights import save_weights
from lookalike.train.checkpoint import load_checkpoint, save_checkpoint
from lookalike.train.recipe import PatchTrainRecipe

__all__ = ["TrainResult", "describe_in_batches", "resolve_device", "train_patches"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: the run directory.
        weights: path of the final ``weights.safetensors``.
        metrics: final metrics (``val_fpr95``, ``train_seconds``, ``patches_per_second``, ...).
    """

    run_dir: Path
    weights: Path
    metrics: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available else CPU; ``cpu``/``cuda`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in {"cpu", "cuda"} and not name.startswith("cuda:"):
        raise OptionError(f"device: expected one of ['auto', 'cpu', 'cuda'], got {name!r}")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _make_optimizer(recipe: PatchTrainRecipe, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    opt = recipe.optim
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay, dampening=0.0
        )
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(params, lr=opt.lr, betas=(opt.momentum, 0.999), weight_decay=opt.weight_decay)


def _lr_factor(recipe: PatchTrainRecipe, step: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    opt = recipe.optim
    if opt.warmup_steps and step < opt.warmup_steps:
        return (step + 1) / opt.warmup_steps
    if opt.schedule == "constant":
        return 1.0
    span = max(1, recipe.steps - opt.warmup_steps)
    progress = min(1.0, (step - opt.warmup_steps) / span)
    if opt.schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def describe_in_batches(
    model: nn.Module,
    patches: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Describe ``(N, 1, P, P)`` patches in batches under ``no_grad``; returns ``(N, D)`` float32 on CPU."""
    device = device or next(model.parameters(), torch.empty(0)).device
    outs = []
    was_training = model.training
    model.eval()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    with torch.no_grad(), autocast:
        for start in range(0, patches.shape[0], batch_size):
            chunk = patches[start : start + batch_size].to(device, torch.float32)
            outs.append(model(chunk).float().cpu())
    model.train(was_training)
    if not outs:
        return torch.empty(0, getattr(model, "dim", 0))
    return torch.cat(outs)


def _validate(model: nn.Module, val: Any, device: torch.device) -> float:
    """FPR at 95 % recall on a validation set with ``patches``, ``pairs`` (M, 2) and ``is_match`` (M,)."""
    from lookalike.eval.metrics import fpr_at_recall

    desc = describe_in_batches(model, val.patches, device=device)
    distances = (desc[val.pairs[:, 0]] - desc[val.pairs[:, 1]]).norm(dim=1)
    return float(fpr_at_recall(distances.numpy(), val.is_match.numpy(), recall=0.95))


def _plot_curves(history: dict[str, list[Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_fpr) = plt.subplots(1, 2, figsize=(10, 3.6))
    if history.get("loss_step"):
        steps = np.asarray(history["loss_step"])
        loss = np.asarray(history["loss"])
        ax_loss.plot(steps, loss, lw=0.6, alpha=0.5, label="loss")
        k = max(1, len(loss) // 50)
        if len(loss) >= k:
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax_loss.plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("training loss")
        ax_loss.legend()
    if history.get("val_step"):
        ax_fpr.plot(history["val_step"], np.asarray(history["val_fpr95"]) * 100, marker="o")
        ax_fpr.set_xlabel("step")
        ax_fpr.set_ylabel("validation FPR95 (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_patches(
    recipe: PatchTrainRecipe,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    run: Run | None = None,
) -> TrainResult:
    """Train a patch descriptor as described by ``recipe``.

    Args:
        recipe: the training recipe.
        resume: a ``checkpoint.safetensors`` (or the run directory holding it) to continue from.
        progress: show a rich progress bar.
        run: an already opened run directory (default: a new one under ``recipe.out_dir``).

    Returns:
        A :class:`TrainResult` with the run directory, the weights file and the final metrics.
    """
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    device = resolve_device(recipe.device)
    _seed_everything(recipe.seed)
    run = run or start_run(recipe.out_dir, recipe.name, recipe)
    with run:
        return _train(recipe, run, device, resume, progress)


def _train(
    recipe: PatchTrainRecipe,
    run: Run,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: bool,
) -> TrainResult:
    model = recipe.model.build("descriptor").to(device).train()
    loss_fn = recipe.loss.build("loss")
    reg_fn = recipe.regularizer.build("loss") if recipe.regularizer is not None else None
    data = recipe.data.build("dataset", seed=recipe.seed, batch_size=recipe.batch_size)
    val = data.validation_set(n_points=recipe.val_points)
    optimizer = _make_optimizer(recipe, [p for p in model.parameters() if p.requires_grad])
    history: dict[str, list[Any]] = {"loss_step": [], "loss": [], "val_step": [], "val_fpr95": []}
    start_step = 0
    if resume is not None:
        path = Path(resume)
        path = path / "checkpoint.safetensors" if path.is_dir() else path
        start_step, history = load_checkpoint(path, model, optimizer)
        log.info("resumed from %s at step %d", path, start_step)
    training_meta = {"recipe": to_dict(recipe), "run": str(run.path)}
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if recipe.bf16
        else contextlib.nullcontext
    )
    stream = iter(data)
    t_start = time.perf_counter()
    seen = 0
    bar_ctx = _progress(progress)
    with bar_ctx as bar:
        task = bar.add_task("training", total=recipe.steps, completed=start_step) if bar else None
        for step in range(start_step, recipe.steps):
            anchors, positives = (t.to(device, non_blocking=True) for t in next(stream)[:2])
            for group in optimizer.param_groups:
                group["lr"] = recipe.optim.lr * _lr_factor(recipe, step)
            with autocast():
                desc_a = model(anchors)
                desc_p = model(positives)
            desc_a, desc_p = desc_a.float(), desc_p.float()
            loss = loss_fn(desc_a, desc_p)
            if reg_fn is not None:
                loss = loss + recipe.regularizer_weight * reg_fn(desc_a, desc_p)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += 2 * anchors.shape[0]
            value = float(loss.detach())
            history["loss_step"].append(step + 1)
            history["loss"].append(value)
            rate = seen / max(1e-9, time.perf_counter() - t_start)
            if bar:
                bar.update(task, advance=1, description=f"loss {value:.3f} | {rate:,.0f} patches/s")
            last = step + 1 == recipe.steps
            if recipe.val_every and ((step + 1) % recipe.val_every == 0 or last):
                fpr = _validate(model, val, device)
                history["val_step"].append(step + 1)
                history["val_fpr95"].append(fpr)
                log.info("step %d: loss %.4f, val FPR95 %.2f%%", step + 1, value, 100 * fpr)
                model.train()
            if recipe.checkpoint_every and ((step + 1) % recipe.checkpoint_every == 0 or last):
                save_checkpoint(
                    run.file("checkpoint.safetensors"),
                    model,
                    optimizer,
                    step=step + 1,
                    history=history,
                    training=training_meta,
                )
    seconds = time.perf_counter() - t_start
    metrics = {
        "steps": recipe.steps,
        "train_seconds": round(seconds, 1),
        "patches_per_second": round(seen / max(seconds, 1e-9), 1),
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "val_fpr95": history["val_fpr95"][-1] if history["val_fpr95"] else None,
        "val_fpr95_best": min(history["val_fpr95"]) if history["val_fpr95"] else None,
    }
    if recipe.pca.dim:
        metrics.update(_fit_pca(recipe, model, data, device))
        metrics["val_fpr95_pca"] = _validate(model, val, device)
    model.eval()
    weights = save_weights(
        model, run.file("weights.safetensors"), training={**training_meta, "metrics": metrics}
    )
    run.write_metrics(metrics)
    _plot_curves(history, run.file("curves.png"))
    log.info("weights: %s", weights)
    return TrainResult(run.path, weights, metrics)


def _fit_pca(
    recipe: PatchTrainRecipe, model: nn.Module, data: Any, device: torch.device
) -> dict[str, Any]:
    """Fit the model's PCA head on descriptors of fresh training patches (never evaluation data).

    The model must be a PatchNet with a ``set_pca(mean (T,), components (T, D))`` head (HardNet8):
    its trunk outputs are described with the head bypassed, PCA is fitted on them, and the
    whitening power is folded into the components.
    """
    set_pca = getattr(model, "set_pca", None)
    if not callable(set_pca):
        raise OptionError(f"pca.dim is set but {type(model).__name__} has no PCA head (set_pca)")
    from lookalike.layers.pca import fit_pca

    stream, chunks, count = iter(data), [], 0
    while count < recipe.pca.samples:
        batch = next(stream)[0]
        chunks.append(batch)
        count += batch.shape[0]
    patches = torch.cat(chunks)[: recipe.pca.samples]
    model._head = lambda feats: feats  # bypass the projection (PatchNet's head hook)
    try:
        trunk = describe_in_batches(model, patches, device=device)
    finally:
        del model._head
    pca = fit_pca(trunk.double(), recipe.pca.dim, whiten_power=0.0, normalize=False)
    scale = pca.eigenvalues.clamp_min(1e-12) ** (-recipe.pca.whiten_power / 2)
    components = (pca.components * scale[:, None]).T.float()
    set_pca(pca.mean.float().to(device), components.to(device))
    return {"pca_dim": recipe.pca.dim, "pca_samples": int(patches.shape[0])}


def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
