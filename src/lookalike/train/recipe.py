"""Training recipes: typed dataclasses loaded from ``configs/*.yaml`` with dotted overrides.

Every numeric field is range-checked on load (``steps >= 1``, ``optim.lr > 0``, ...); the error
names the full dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lookalike.core.config import Component, bounded

__all__ = ["OptimConfig", "PCAConfig", "PatchTrainRecipe", "TrainRecipe"]


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
    lr: float = bounded(0.1, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)
    weight_decay: float = bounded(1e-4, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = bounded(0, ge=0)


@dataclass
class PCAConfig:
    """Optional PCA fitted after training on descriptors of the synthetic training stream.

    Attributes:
        dim: output dimension (``0`` disables the PCA).
        samples: number of training patches described to fit it.
        whiten_power: 0 plain PCA, 1 full whitening, 0.5 square-root whitening.
    """

    dim: int = bounded(0, ge=0)
    samples: int = bounded(20000, ge=1)
    whiten_power: float = bounded(0.0, ge=0)


@dataclass
class TrainRecipe:
    """A training recipe: a task, a descriptor, its losses, data, optimiser and run settings.

    Attributes:
        name: recipe name (used for the run directory and the weights metadata).
        task: the training task (:mod:`lookalike.train.tasks`): ``pairs`` (anchor/positive batches,
            e.g. HardNet), ``labelled`` (classification with a margin head such as ``arcface``) or
            ``pk`` (P identities x K samples, batch-hard triplet + cross entropy), and its kwargs.
        model: registered descriptor and its kwargs.
        loss: registered loss, called as the task says (``pairs``: ``(anchor_desc,
            positive_desc)``; ``labelled`` / ``pk``: ``(embeddings, labels)``). Its parameters
            (class weights) are trained with the model's.
        regularizer: optional extra loss with the same arguments (e.g. ``sos``, or
            ``cross_entropy`` next to a triplet loss), weighted by ``regularizer_weight``.
        data: registered training data set (built with ``seed``; ``pairs`` also passes
            ``batch_size``), with an optional ``validation_set(n_points=)`` method.
        optim: optimiser settings.
        steps: optimisation steps (the most a run takes when ``max_minutes`` is set).
        max_minutes: optional wall-time budget of the training loop, in minutes: the engine times
            the run's first steps and shortens ``steps`` to what fits (never beyond ``steps``),
            then re-checks every 100 steps at the slower of the last 100 steps' pace and the mean
            pace so far, cutting the count when the machine slowed and raising it (up to
            ``steps``) when both paces leave room; the learning-rate schedule follows the count
            (see :func:`lookalike.train.optim.budget_steps`). ``None``: always ``steps``. The step count
            then depends on the machine's speed; the run's ``metrics.json`` records it.
        batch_size: samples per step over all processes (pairs for ``pairs``).
        val_every: validate (FPR95 on the data set's held-out pairs) every this many steps
            (``0``: never).
        val_points: size of the validation set (``None``: everything the data set holds out).
        checkpoint_every: write ``checkpoint.safetensors`` every this many steps.
        seed: global seed (data stream, initialisation).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        bf16: train under bfloat16 autocast (CPU and CUDA); ``auto``: where that is faster than
            float32 training, a CUDA device with bfloat16 or a CPU with AMX tiles
            (:func:`lookalike.train.optim.resolve_bf16`; a CPU with AVX512-BF16 alone trains
            slower in bfloat16). The run's ``metrics.json`` records the choice.
        threads: torch CPU threads (``0`` keeps the default).
        pca: optional PCA compression fitted after training.
        freeze: names of the model's submodules (``named_modules`` names, e.g. ``trunk_net.0``)
            whose parameters are not trained, e.g. the early stages of a backbone started from
            other weights (``backbone_weights``); their BatchNorm statistics still follow the data.
        cache_frozen: run the frozen leading blocks of a re-ID network once over the training
            crops and train the rest on their cached maps, augmented in feature space
            (:mod:`lookalike.train.frozen_cache`; a ``reid_augmented`` data set, crops at the
            network's input size). The BatchNorm statistics of those blocks are then estimated
            once on the training crops; ``max_minutes`` counts the time the cache takes.
        out_dir: parent folder of run directories.
    """

    name: str = "hardnet_bundled"
    task: Component = field(default_factory=lambda: Component("pairs"))
    model: Component = field(default_factory=lambda: Component("hardnet"))
    loss: Component = field(default_factory=lambda: Component("hardnet"))
    regularizer: Component | None = None
    regularizer_weight: float = bounded(1.0, ge=0)
    data: Component = field(default_factory=lambda: Component("bundled_pairs"))
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = bounded(1000, ge=1)
    max_minutes: float | None = bounded(None, gt=0)
    batch_size: int = bounded(512, ge=1)
    val_every: int = bounded(100, ge=0)
    val_points: int | None = bounded(None, ge=1)
    checkpoint_every: int = bounded(200, ge=0)
    seed: int = bounded(0, ge=0)
    device: str = "auto"
    bf16: bool | Literal["auto"] = False
    threads: int = bounded(0, ge=0)
    pca: PCAConfig = field(default_factory=PCAConfig)
    freeze: list[str] = field(default_factory=list)
    cache_frozen: bool = False
    out_dir: Path = Path("runs")


#: The former name of :class:`TrainRecipe` (patch recipes are ``task: pairs``, the default).
PatchTrainRecipe = TrainRecipe
