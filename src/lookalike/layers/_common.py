"""Shared helpers of the layers: option checks, the feature-map check at the door, conv-norm-act,
gates and the base of gating attention modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lookalike.core.check import check_dtype, check_finite, check_int, check_shape
from lookalike.core.errors import OptionError

__all__ = [
    "FLOAT_DTYPES",
    "GatedAttention",
    "LayerType",
    "check_feature_map",
    "check_int",
    "check_ints",
    "conv_norm_act",
    "make_gate",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: A layer class or factory called with no argument (activations) or the channel count (norms).
LayerType = Callable[..., nn.Module]


def check_ints(
    values: Any, name: str, *, low: int = 1, length: int | None = None
) -> tuple[int, ...]:
    """Return ``values`` as a tuple of integers ``>= low`` (of ``length`` entries when given)."""
    ok = isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)
    if ok and length is not None:
        ok = len(values) == length
    if not ok:
        size = f"{length} " if length is not None else ""
        raise OptionError(f"{name}: expected a sequence of {size}integers >= {low}, got {values!r}")
    return tuple(int(v) for v in values)


def check_feature_map(
    x: torch.Tensor,
    channels: int | str = "C",
    name: str = "input",
    dims: dict[str, int] | None = None,
    *,
    height: int | str = "H",
    width: int | str = "W",
    finite: bool = False,
) -> dict[str, int]:
    """Check a ``(B, channels, H, W)`` floating feature map; return the bound dimension names."""
    dims = check_shape(x, ["B", str(channels), str(height), str(width)], name, dims)
    check_dtype(x, FLOAT_DTYPES, name)
    if finite:
        check_finite(x, name)
    return dims  # type: ignore[return-value]


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    act_layer: LayerType | None = nn.ReLU,
    norm_layer: LayerType | None = nn.BatchNorm2d,
) -> nn.Sequential:
    """``Conv2d`` ("same" padding, bias only without norm) → ``norm_layer`` → ``act_layer``.

    Example:
        >>> block = conv_norm_act(4, 8, 3, stride=2)
        >>> block(torch.rand(2, 4, 16, 16)).shape
        torch.Size([2, 8, 8, 8])
    """
    padding = dilation * (kernel_size - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=norm_layer is None,
        )
    ]
    if norm_layer is not None:
        layers.append(norm_layer(out_channels))
    if act_layer is not None:
        layers.append(act_layer())
    return nn.Sequential(*layers)


_GATES: dict[str, LayerType] = {
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "tanh": nn.Tanh,
}


def make_gate(gate_layer: str | LayerType) -> nn.Module:
    """A gate module from a name (``"sigmoid"``, ``"hard_sigmoid"``, ``"tanh"``) or a layer class."""
    if isinstance(gate_layer, str):
        if gate_layer not in _GATES:
            raise OptionError(
                f"gate_layer: expected one of {sorted(_GATES)} or a layer class, got {gate_layer!r}"
            )
        return _GATES[gate_layer]()
    if not callable(gate_layer):
        raise OptionError(f"gate_layer: expected a name or a layer class, got {gate_layer!r}")
    return gate_layer()


class GatedAttention(nn.Module):
    """Base of the attention modules that multiply their input by a gate: a subclass implements
    :meth:`attention` (``x`` checked there, a gate broadcastable to ``x``); ``forward(x)`` is
    ``x * attention(x)``.

    Example:
        >>> class Half(GatedAttention):
        ...     def attention(self, x):
        ...         return torch.full_like(x[:, :1], 0.5)
        >>> Half()(torch.ones(1, 2, 1, 1)).flatten().tolist()
        [0.5, 0.5]
    """

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement attention")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` times its gate.

        Raises:
            ShapeError, DTypeError: ``x`` is not what :meth:`attention` takes.
        """
        return x * self.attention(x)
