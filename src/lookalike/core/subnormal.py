"""Subnormal floats set to zero: they are numerically nothing and make x86 CPU arithmetic crawl.

Adam with L2 weight decay drives the weights of channels that no longer fire (ReLU-dead, for
example) towards zero: after some thousands of steps many land in the subnormal range
(``0 < |x| < torch.finfo(dtype).tiny``), where every multiply on an x86 CPU without flush-to-zero
takes a slow microcode path. A VIPeR network trained so (3800 steps, 1.37 M of its 2.87 M weights
subnormal) described crops 9x slower than the same network with them set to zero;
``benchmarks/subnormal.py`` (46 % of the weights made subnormal) measured 32-34x for float32
inference, and 1.00-1.02x for a training step in bf16 or float32 (training itself is not slowed).
``torch.set_flush_denormal`` is no cure inside a library: it only reaches the threads created after
it is called. So :func:`lookalike.core.weights.read_weights` flushes every file it reads (the cure),
and the training engine flushes the model and optimizer state every few CPU steps, so that the
weights and checkpoint files it writes hold none either (a cheap pass: about 5 ms per 2.9 M values).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lookalike.core.errors import DTypeError

__all__ = ["flush_subnormal_"]


@torch.no_grad()
def flush_subnormal_(tensors: Iterable[torch.Tensor]) -> int:
    """Set the subnormal values of the floating-point tensors among ``tensors`` to 0, in place.

    Integer and boolean tensors are left alone; zeros, normal numbers, infinities and NaNs keep
    their values.

    Args:
        tensors: tensors of any dtype (parameters, buffers, optimizer state).

    Returns:
        How many values were set to 0.

    Raises:
        DTypeError: an item that is not a tensor.

    Example:
        >>> import torch
        >>> t = torch.tensor([1e-40, -1e-42, 1e-30, 0.0, float("nan")])
        >>> flush_subnormal_([t, torch.tensor([1, 2])])
        2
        >>> t
        tensor([0.0000e+00, 0.0000e+00, 1.0000e-30, 0.0000e+00,        nan])
    """
    count = 0
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise DTypeError(f"tensors: expected torch.Tensor items, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            continue
        tiny = torch.finfo(tensor.dtype).tiny
        mask = (tensor.abs() < tiny) & (tensor != 0)
        found = int(mask.sum())
        if found:
            tensor.masked_fill_(mask, 0.0)
            count += found
    return count
