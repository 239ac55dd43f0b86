"""What the engine reports: validation FPR95, PCA fit, curves, progress bar (rank 0 only)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.core.errors import OptionError
from lookalike.descriptors.describe import describe_patches

__all__ = ["fit_pca_head", "plot_curves", "progress_bar", "validate"]


def validation_metric(val: Any) -> tuple[str, bool]:
    """``(name, higher_is_better)`` of a validation set: its ``metric`` / ``higher_is_better``
    attributes, else FPR95 (lower is better) of a pair set.

    Example:
        >>> validation_metric(object())
        ('fpr95', False)
    """
    return str(getattr(val, "metric", "fpr95")), bool(getattr(val, "higher_is_better", False))


def validate(model: nn.Module, val: Any, device: torch.device) -> float:
    """The validation number of ``model`` on ``val``.

    A set with an ``evaluate(model, device) -> float`` method scores itself (e.g. retrieval mAP on
    held-out images, named by its ``metric`` attribute); otherwise ``val`` is a pair set with
    ``patches``, ``pairs`` (M, 2) and ``is_match`` (M,) and the number is the FPR at 95 % recall.
    """
    if hasattr(val, "evaluate"):
        return float(val.evaluate(model, device))
    from lookalike.eval.metrics import fpr_at_recall

    desc = describe_patches(model, val.patches, batch_size=1024, device=device).cpu()
    distances = (desc[val.pairs[:, 0]] - desc[val.pairs[:, 1]]).norm(dim=1)
    return float(fpr_at_recall(distances.numpy(), val.is_match.numpy(), recall=0.95))


class _Trunk(nn.Module):
    """``model.forward_features`` as a module, so :func:`describe_patches` can batch it.

    The rows are L2-normalised, as the PCA projection (HardNet8's ``pca_project``) normalises the
    trunk output before it subtracts the mean: the PCA is fitted on what it will project.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.patch_size = getattr(model, "patch_size", None)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.model.forward_features(patches).float(), dim=1)


def fit_pca_head(
    model: nn.Module,
    patches: torch.Tensor,
    *,
    dim: int,
    whiten_power: float,
    device: torch.device,
) -> dict[str, Any]:
    """Fit the model's PCA head on trunk outputs of training patches (never evaluation data).

    The model must have ``forward_features(x) -> (B, T)`` (trunk before the projection) and
    ``set_pca(mean (T,), components (T, D))``; the whitening power is folded into the components.
    """
    if not callable(getattr(model, "set_pca", None)) or not callable(
        getattr(model, "forward_features", None)
    ):
        raise OptionError(
            f"pca.dim is set but {type(model).__name__} has no PCA head "
            "(forward_features and set_pca)"
        )
    from lookalike.layers.pca import fit_pca

    trunk = describe_patches(_Trunk(model), patches, batch_size=1024, device=device).cpu()
    pca = fit_pca(trunk.double(), dim, whiten_power=0.0, normalize=False)
    scale = pca.eigenvalues.clamp_min(1e-12) ** (-whiten_power / 2)
    components = (pca.components * scale[:, None]).T.float()
    model.set_pca(pca.mean.float().to(device), components.to(device))
    return {"pca_dim": dim, "pca_samples": int(patches.shape[0])}


def plot_curves(history: dict[str, list[Any]], path: Path) -> None:
    """Training loss (raw and smoothed) and the validation number against the step, as a PNG."""
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
    keys = [k for k in history if k.startswith("val_") and k != "val_step" and history[k]]
    if history.get("val_step") and keys:
        key = keys[0]
        ax_fpr.plot(history["val_step"], np.asarray(history[key]) * 100, marker="o")
        ax_fpr.set_xlabel("step")
        ax_fpr.set_ylabel(f"validation {key[4:]} (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def progress_bar(enabled: bool):
    """A rich progress bar (description, bar, count, elapsed, remaining), or a null context."""
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
