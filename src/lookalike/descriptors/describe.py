"""The one batched path from patches to descriptors, shared by matching, evaluation and training.

:func:`describe_patches` runs any patch descriptor (a registered one, a baseline, or any callable on
``(B, C, P, P)`` tensors) over many patches in batches, without gradients, in eval mode, and restores
the module's train/eval mode on exit, also when the descriptor raises. Patches of another size than
the descriptor's input are resized by one rule, :func:`area_resize`.

Convention:
    - Input: ``(N, C, P, P)`` or ``(N, P, P)`` patches, as a tensor or numpy array. ``uint8`` patches
      are scaled to [0, 1] (``/ 255``); floating patches are taken as already in [0, 1].
    - Resize rule (the only one): shrinking averages every input pixel by the fraction of it that an
      output pixel covers (OpenCV's ``INTER_AREA``); enlarging is bilinear (``align_corners=False``).
      The target side is the descriptor's ``patch_size`` (none: patches are kept as given).
    - Modes: every submodule gets back its own train/eval flag (a wrapper in train mode around a
      model in eval mode leaves the model in eval mode).
    - Output: ``(N, D)`` float32 rows on the descriptor's device, exactly as the descriptor returns
      them (no re-normalisation: flat patches keep their all-zero rows). ``N = 0`` gives ``(0, D)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lookalike.core.check import check_positive
from lookalike.core.errors import DTypeError, ShapeError

__all__ = ["area_resize", "describe_patches", "eval_mode", "module_device"]


@lru_cache(maxsize=16)
def _area_weights(src: int, dst: int) -> torch.Tensor:
    """``(dst, src)`` float64: output pixel ``i`` averages input ``[i s, (i + 1) s)``, ``s = src / dst``."""
    scale = src / dst
    edges = np.arange(dst + 1, dtype=np.float64) * scale
    pixel = np.arange(src, dtype=np.float64)[None, :]
    overlap = np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel)
    return torch.from_numpy(np.clip(overlap, 0.0, None) / scale)


def area_resize(patches: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, P, P)`` patches to ``(B, C, size, size)`` by area averaging.

    Convention:
        Shrinking averages every input pixel by the fraction of it an output pixel covers (OpenCV's
        ``INTER_AREA``; a pixel's square is ``[j, j + 1)``), as one separable linear map. Enlarging falls
        back to bilinear interpolation (``align_corners=False``). The dtype and device are kept.

    Example:
        >>> import torch
        >>> area_resize(torch.arange(16.0).view(1, 1, 4, 4), 2)[0, 0]
        tensor([[ 2.5000,  4.5000],
                [10.5000, 12.5000]])
    """
    if patches.ndim != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ShapeError(f"patches: expected shape (B, C, P, P), got {tuple(patches.shape)}")
    check_positive(size, "size")
    src = int(patches.shape[-1])
    if src == size:
        return patches
    if size > src:
        return F.interpolate(patches, size=(size, size), mode="bilinear", align_corners=False)
    weights = _area_weights(src, int(size)).to(patches.device, patches.dtype)
    return weights @ patches @ weights.T


def module_device(model: Any) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for anything else)."""
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """Run ``model`` in eval mode under ``no_grad``; every submodule gets its own mode back on exit.

    A wrapper's ``train(mode)`` would overwrite its children's flags: a wrapper in train mode around a
    model in eval mode would leave the model in train mode. This restores each flag, also on error.
    Anything that is not an ``nn.Module`` passes through.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training
        True
    """
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
    try:
        if isinstance(model, torch.nn.Module):
            model.eval()
        with torch.no_grad():
            yield model
    finally:
        for sub, mode in modes:
            sub.training = mode


def _as_patches(patches: Any) -> torch.Tensor:
    x = patches if torch.is_tensor(patches) else torch.from_numpy(np.ascontiguousarray(patches))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"patches: expected shape (N, C, P, P) or (N, P, P), got {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise DTypeError(f"patches: expected uint8 or floating point, got {x.dtype}")
    return x


def _width(model: Any, x: torch.Tensor, size: int | None, device: torch.device) -> int:
    dim = getattr(model, "dim", None)
    if isinstance(dim, int):
        return dim
    side = size or int(x.shape[-1])
    return int(model(torch.full((1, x.shape[1], side, side), 0.5, device=device)).shape[1])


def describe_patches(
    model: Callable[[torch.Tensor], torch.Tensor],
    patches: Any,
    *,
    batch_size: int = 512,
    patch_size: int | None = None,
    device: str | torch.device | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Describe many patches in batches under ``no_grad``, in eval mode (see the module Convention).

    Args:
        model: a patch descriptor: ``(B, C, p, p)`` float in [0, 1] -> ``(B, D)``.
        patches: ``(N, C, P, P)`` or ``(N, P, P)`` uint8 or floating patches (tensor or numpy).
        batch_size: patches per forward pass.
        patch_size: side the descriptor expects (default: ``model.patch_size``; none: kept as given).
        device: where the batches go (default: the module's device).
        bf16: run under bfloat16 autocast.

    Returns:
        ``(N, D)`` float32 descriptors on ``device``.

    Raises:
        ShapeError: ``patches`` is not a stack of square patches.
        DTypeError: ``patches`` is neither uint8 nor floating point.
        ValueRangeError: ``batch_size`` is not positive.

    Example:
        >>> import torch, lookalike
        >>> sift = lookalike.create("descriptor", "sift", patch_size=32)
        >>> describe_patches(sift, torch.rand(5, 1, 65, 65), batch_size=2).shape
        torch.Size([5, 128])
        >>> describe_patches(sift, torch.rand(0, 1, 32, 32)).shape
        torch.Size([0, 128])
    """
    check_positive(batch_size, "batch_size")
    x = _as_patches(patches)
    size = patch_size if patch_size is not None else getattr(model, "patch_size", None)
    device = torch.device(device) if device is not None else module_device(model)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    outputs = []
    with eval_mode(model), autocast:
        if len(x) == 0:
            return torch.zeros(0, _width(model, x, size, device), device=device)
        for start in range(0, len(x), int(batch_size)):
            chunk = x[start : start + int(batch_size)].to(device)
            chunk = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else chunk.float()
            if size is not None:
                chunk = area_resize(chunk, int(size))
            outputs.append(model(chunk).float())
    return torch.cat(outputs)
