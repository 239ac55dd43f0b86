"""Training recipes: typed dataclasses loaded from ``configs/*.yaml`` with dotted overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lookalike.core.config import Component

__all__ = ["OptimConfig", "PCAConfig", "PatchTrainRecipe"]


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Attributes:
        name: ``sgd``, ``adam`` or ``adamw``.
        lr: peak learning rate.
        momentum: SGD momentum (also Adam's beta1).
        weight_decay: L2 weight decay.
        schedule: ``linear`` (decay to 0 at the last step, as the HardNet recipe), ``cosine`` or
            ``constant``.
        warmup_steps: linear warm-up from 0 over this many steps.
    """

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = 0


@dataclass
class PCAConfig:
    """Optional PCA fitted after training on descriptors of the synthetic training stream.

    Attributes:
        dim: output dimension (``0`` disables the PCA).
        samples: number of training patches described to fit it.
        whiten_power: 0 plain PCA, 1 full whitening, 0.5 square-root whitening.
    """

    dim: int = 0
    samples: int = 20000
    whiten_power: float = 0.0


@dataclass
class PatchTrainRecipe:
    """A patch-descriptor training recipe.

    Attributes:
        name: recipe name (used for the run directory and the weights metadata).
        model: registered descriptor and its kwargs.
        loss: registered loss taking ``(anchor_desc, positive_desc)``.
        regularizer: optional extra loss on the same pair (e.g. ``sos``), weighted by
            ``regularizer_weight``.
        data: registered training data set (yields ``(anchors, positives)`` batches, built with
            ``seed`` and ``batch_size``, with a ``validation_set(n_points=)`` method).
        optim: optimiser settings.
        steps: optimisation steps.
        batch_size: pairs per step.
        val_every: validate (FPR95 on the held-out synthetic split) every this many steps.
        val_points: 3D points in the held-out validation set (one positive and one negative
            pair each).
        checkpoint_every: write ``checkpoint.safetensors`` every this many steps.
        seed: global seed (data stream, initialisation).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        bf16: train under bfloat16 autocast (CPU and CUDA).
        threads: torch CPU threads (``0`` keeps the default).
        pca: optional PCA compression fitted after training.
        out_dir: parent folder of run directories.
    """

    name: str = "hardnet_bundled"
    model: Component = field(default_factory=lambda: Component("hardnet"))
    loss: Component = field(default_factory=lambda: Component("hardnet"))
    regularizer: Component | None = None
    regularizer_weight: float = 1.0
    data: Component = field(default_factory=lambda: Component("bundled_pairs"))
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    batch_size: int = 512
    val_every: int = 100
    val_points: int = 5000
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    threads: int = 0
    pca: PCAConfig = field(default_factory=PCAConfig)
    out_dir: Path = Path("runs")
