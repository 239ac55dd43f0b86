"""Optimiser, learning-rate schedule, device and seeding for the training engine."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from lookalike.core.errors import OptionError, ValueRangeError
from lookalike.train.recipe import TrainRecipe

__all__ = [
    "budget_steps",
    "lr_factor",
    "make_optimizer",
    "resolve_bf16",
    "resolve_device",
    "seed_everything",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available else CPU; ``cpu``/``cuda``/``cuda:N`` as given.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in {"cpu", "cuda"} and not name.startswith("cuda:"):
        raise OptionError(f"device: expected one of ['auto', 'cpu', 'cuda'], got {name!r}")
    return torch.device(name)


def resolve_bf16(value: bool | str, device: torch.device) -> bool:
    """The recipe's ``bf16``: ``True``/``False`` as given; ``"auto"``: bfloat16 training where it is
    the faster choice, a CUDA device that supports bfloat16 or a CPU with AMX tiles.

    A CPU with AVX512-BF16 but no AMX trains slower in bfloat16 than in float32: the VIPeR
    recipe's step took 1.23x as long in bfloat16 on such a 2-core Xeon
    (``benchmarks/train_step.py``), while one with AMX logged 1.6x the crops per second in
    bfloat16 (``configs/reid_viper.yaml``).

    Example:
        >>> resolve_bf16(False, torch.device("cpu")), resolve_bf16(True, torch.device("cpu"))
        (False, True)
    """
    if isinstance(value, bool):
        return value
    if value != "auto":
        raise OptionError(f"bf16: expected true, false or 'auto', got {value!r}")
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu" and bool(torch.cpu._is_amx_tile_supported())


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _fusable(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused (one-kernel) optimiser step applies: floating parameters, all on one
    CPU or CUDA device."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
    )


def make_optimizer(recipe: TrainRecipe, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``params`` (SGD without dampening, Adam or AdamW).

    The step is torch's fused implementation wherever it applies (:func:`_fusable`): the same
    update to float rounding, in one kernel instead of a dozen element-wise ops per parameter
    (on the VIPeR recipe's 50 parameters, Adam's step took 2.4 ms fused, 8 ms per tensor and 6 ms
    with ``foreach``, 2 CPU threads). Its state dict has the same keys, so checkpoints load either way.
    """
    opt = recipe.optim
    fused = {"fused": True} if params and _fusable(params) else {}
    if opt.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=opt.lr,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
            dampening=0.0,
            **fused,
        )
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(
        params, lr=opt.lr, betas=(opt.momentum, 0.999), weight_decay=opt.weight_decay, **fused
    )


def lr_factor(recipe: TrainRecipe, step: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): warm-up, then the schedule."""
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


def budget_steps(
    *, planned: int, done: int, elapsed_seconds: float, step_seconds: float, budget_seconds: float
) -> int:
    """How many steps a run with a wall-time budget takes in all.

    The steps still affordable at the measured pace, ``floor((budget - elapsed) / step_seconds)``,
    are added to the ``done`` ones; the result is capped at ``planned`` and never below ``done``
    (a run already over its budget stops at once).

    Args:
        planned: the recipe's ``steps`` (upper bound).
        done: steps already taken.
        elapsed_seconds: wall time the loop has used so far.
        step_seconds: measured seconds per step (``> 0``).
        budget_seconds: the whole budget (``recipe.max_minutes * 60``).

    Example:
        >>> budget_steps(planned=3200, done=24, elapsed_seconds=3.0, step_seconds=0.1,
        ...              budget_seconds=285.0)
        2844
        >>> budget_steps(planned=1000, done=24, elapsed_seconds=3.0, step_seconds=0.1,
        ...              budget_seconds=285.0)
        1000

    Raises:
        ValueRangeError: a count that is not an integer in range, a pace or budget that is not
            positive, a negative elapsed time (NaN included).
    """
    for name, value, low in (("planned", planned, 1), ("done", done, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueRangeError(f"{name}: expected an integer >= {low}, got {value!r}")
    for name, value in (("step_seconds", step_seconds), ("budget_seconds", budget_seconds)):
        if not value > 0:
            raise ValueRangeError(f"{name}: expected a number > 0, got {value!r}")
    if not elapsed_seconds >= 0:
        raise ValueRangeError(f"elapsed_seconds: expected a number >= 0, got {elapsed_seconds!r}")
    affordable = math.floor(max(0.0, budget_seconds - elapsed_seconds) / step_seconds)
    return max(done, min(planned, done + affordable))
