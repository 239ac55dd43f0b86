"""Training checkpoints as safetensors: model weights, optimizer state, step and history.

The optimizer state is flattened into tensors named ``optim/<param index>/<key>``; its
``param_groups`` and every non-tensor value go into the JSON metadata. Nothing is pickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookalike.core.weights import WeightsError, read_weights, save_weights

__all__ = ["load_checkpoint", "save_checkpoint"]

_PREFIX = "optim/"


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    history: dict[str, list[Any]],
    training: dict[str, Any],
) -> Path:
    """Write model + optimizer state + step + metric history to one safetensors file.

    Returns:
        The path written (atomically: a temporary file is renamed into place).
    """
    state = optimizer.state_dict()
    extra: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                extra[f"{_PREFIX}{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {
        **training,
        "checkpoint": {
            "step": step,
            "history": history,
            "param_groups": state["param_groups"],
            "optim_scalars": scalars,
        },
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_weights(model, tmp, training=meta, extra=extra)
    tmp.replace(path)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, dict[str, list[Any]]]:
    """Restore model and optimizer from :func:`save_checkpoint`; return ``(step, history)``.

    Raises:
        WeightsError: not a checkpoint, or it does not fit the model/optimizer.
    """
    tensors, meta = read_weights(path)
    info = (meta.get("training") or {}).get("checkpoint")
    if info is None:
        raise WeightsError(
            f"{path} is a weights file, not a training checkpoint (no optimizer state)"
        )
    own = model.state_dict()
    model_state = {k: v for k, v in tensors.items() if not k.startswith(_PREFIX)}
    missing = sorted(set(own) - set(model_state))
    unexpected = sorted(set(model_state) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit {type(model).__name__}: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}"
        )
    model.load_state_dict(model_state)
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_PREFIX):
            index, name = key[len(_PREFIX) :].split("/", 1)
            opt_state.setdefault(int(index), {})[name] = value
    for index, values in info["optim_scalars"].items():
        opt_state.setdefault(int(index), {}).update(values)
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": info["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise WeightsError(f"{path}: optimizer state does not fit ({exc})") from exc
    return int(info["step"]), {k: list(v) for k, v in info["history"].items()}
