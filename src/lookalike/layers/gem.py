"""Global pooling of a feature map into one vector: GeM (learnable power), MAC (max), SPoC (mean).

Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018
(GeM); Tolias et al., ICLR 2016 (MAC); Babenko & Lempitsky, ICCV 2015 (SPoC). The maths is in
:func:`gem`, :func:`mac` and :func:`spoc`; the modules hold the learnable ``p`` and the options.
"""

from __future__ import annotations

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_dtype, check_positive, check_shape, check_tensor
from lookalike.core.errors import OptionError, ShapeError, ValueRangeError

__all__ = ["MAC", "GeM", "SPoC", "gem", "mac", "spoc"]

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_map(x: torch.Tensor, name: str = "features") -> None:
    check_tensor(x, name)
    check_shape(x, ["B", "C", "H", "W"], name)
    check_dtype(x, _FLOAT, name)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueRangeError(f"{name}: expected a non-empty spatial map, got {tuple(x.shape)}")


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, *, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean pooling ``(mean_hw clamp(x, eps) ** p) ** (1 / p)`` per channel.

    Convention:
        Values are clamped to ``eps`` first (GeM assumes non-negative activations such as ReLU
        outputs); ``p = 1`` is average pooling, ``p -> inf`` tends to max pooling. ``p`` is a scalar or
        a ``(C,)`` tensor (one power per channel). Computed in float32 for half-precision inputs
        (powers of small values underflow in float16), returned in the input dtype.

    Args:
        x: ``(B, C, H, W)`` feature map.
        p: the power, ``> 0``: a number, a 0-d or 1-element tensor, or a ``(C,)`` tensor.
        eps: lower clamp of the values, ``> 0``.

    Returns:
        ``(B, C)`` pooled features.

    Raises:
        ShapeError: ``x`` is not 4-D, or ``p`` has neither 1 nor ``C`` values.
        OptionError: a non-positive ``eps`` or number ``p``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> gem(x, 1.0)  # p = 1: the mean
        tensor([[2.5000]])
        >>> round(gem(x, 2.0).item(), 4)  # sqrt((1 + 4 + 9 + 16) / 4)
        2.7386
    """
    _check_map(x)
    check_positive(eps, "eps")
    if not torch.is_tensor(p):
        check_positive(p, "p")
    elif p.numel() not in (1, x.shape[1]):
        raise ShapeError(f"p: expected 1 or C={x.shape[1]} values, got shape {tuple(p.shape)}")
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if torch.is_tensor(p):
        p = p.to(work.dtype).reshape(1, -1, 1, 1) if p.numel() > 1 else p.to(work.dtype).reshape(())
        pooled = work.clamp(min=eps).pow(p).mean(dim=(2, 3))
        inv = 1.0 / p.reshape(1, -1) if p.ndim else 1.0 / p
        return pooled.pow(inv).to(x.dtype)
    return work.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p).to(x.dtype)


def mac(x: torch.Tensor) -> torch.Tensor:
    """Maximum activation of convolutions: the ``(B, C)`` spatial maximum of a ``(B, C, H, W)`` map.

    Example:
        >>> import torch
        >>> mac(torch.arange(8.0).view(1, 2, 2, 2))
        tensor([[3., 7.]])
    """
    _check_map(x)
    return x.amax(dim=(2, 3))


def spoc(x: torch.Tensor) -> torch.Tensor:
    """Sum-pooled convolutional features (as a mean): the ``(B, C)`` spatial mean of a ``(B, C, H, W)`` map.

    Example:
        >>> import torch
        >>> spoc(torch.arange(8.0).view(1, 2, 2, 2))
        tensor([[1.5000, 5.5000]])
    """
    _check_map(x)
    return x.mean(dim=(2, 3))


@register("layer", "gem")
class GeM(nn.Module):
    """GeM pooling with a learnable power ``p``, shared by every channel or one per channel.

    Args:
        p: initial power (3, the paper's value).
        channels: ``None`` for one shared ``p``, else the channel count ``C`` for one ``p`` per
            channel.
        learn_p: make ``p`` an ``nn.Parameter`` (trained with the network) rather than a buffer.
        eps: lower clamp of the activations.

    Example:
        >>> import torch
        >>> pool = GeM(p=3.0, channels=4)
        >>> pool(torch.rand(2, 4, 5, 5)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        *,
        p: float = 3.0,
        channels: int | None = None,
        learn_p: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_positive(p, "p")
        check_positive(eps, "eps")
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or channels < 1
        ):
            raise OptionError(f"channels: expected None or an integer >= 1, got {channels!r}")
        value = torch.full((channels or 1,), float(p))
        if learn_p:
            self.p = nn.Parameter(value)
        else:
            self.register_buffer("p", value)
        self.channels, self.eps = channels, float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` to ``(B, C)``; see :func:`gem`."""
        return gem(x, self.p.clamp(min=1e-2), eps=self.eps)

    def extra_repr(self) -> str:
        values = self.p.detach()
        shown = f"{values.item():.3f}" if values.numel() == 1 else f"{values.numel()} values"
        return f"p={shown}, eps={self.eps}"


@register("layer", "mac")
class MAC(nn.Module):
    """Max pooling over space (see :func:`mac`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mac(x)


@register("layer", "spoc")
class SPoC(nn.Module):
    """Average pooling over space (see :func:`spoc`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spoc(x)
