"""The contract every descriptor shares, whatever the family (patch, image, person).

A :class:`Descriptor` maps a batch of inputs to L2-normalised ``(N, D)`` rows in three steps:

1. :meth:`Descriptor.check_input` at the door: the shape its :class:`InputSpec` declares, a floating
   dtype, finite values;
2. :meth:`Descriptor.forward_features`: the trunk (per-patch standardisation and CNN for patch
   networks, the histograms for SIFT, a backbone's feature map for image networks);
3. :meth:`Descriptor.forward_head`: pooling and projection to ``D`` values, then the L2 normalisation.

The base ``forward`` adds the two rules every family follows: a flat input (all values equal) gives an
all-zero row, and an empty batch gives a ``(0, D)`` tensor without running the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lookalike.core.check import check_dtype, check_finite, check_shape, check_tensor
from lookalike.core.errors import OptionError, ShapeError
from lookalike.descriptors._functional import flat_rows, normalize_descriptors, zero_rows

__all__ = ["FLOAT_DTYPES", "NETWORK_EXTENT", "SIFT_EXTENT", "Descriptor", "InputSpec"]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Patch half-width, in units of the keypoint's ``size / 2``, that covers OpenCV's SIFT descriptor
#: region (``(d + 1) / 2 * 3`` for ``d = 4`` cells; see :mod:`lookalike.matching.patches`).
SIFT_EXTENT: float = 7.5
#: Patch half-width of learned patch networks (the "6 sigma" magnification HardNet-style networks are
#: trained with).
NETWORK_EXTENT: float = 6.0

Normalization = str | tuple[tuple[float, ...], tuple[float, ...]]


def _is_int(value: object, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class InputSpec:
    """What a descriptor takes: ``(B, channels, H, W)`` floating tensors.

    Attributes:
        channels: input channels (1 for grayscale patches, 3 for RGB images).
        size: the side in pixels, an ``int`` for square inputs of one size (patch networks), or an
            inclusive ``(min, max)`` range for both height and width (image and re-ID networks).
        value_range: the nominal value range, ``(0.0, 1.0)`` by default (documented, not enforced:
            patch descriptors are invariant to ``a x + b`` with ``a > 0``).
        normalization: what the descriptor does to its input first: a text (e.g.
            ``"per-patch standardisation"``) or per-channel ``(mean, std)`` tuples.

    Example:
        >>> spec = InputSpec(channels=3, size=(64, 1024), normalization=((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        >>> spec.describe()
        '(B, 3, H, W) float, H and W in [64, 1024], values in [0, 1], normalised by mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)'
        >>> InputSpec(size=32).shape(4)
        (4, 1, 32, 32)
    """

    channels: int = 1
    size: int | tuple[int, int] = 32
    value_range: tuple[float, float] = (0.0, 1.0)
    normalization: Normalization = "none"

    def __post_init__(self) -> None:
        if not _is_int(self.channels):
            raise OptionError(f"channels: expected an integer >= 1, got {self.channels!r}")
        size = self.size
        if isinstance(size, Sequence) and not isinstance(size, str):
            ok = len(size) == 2 and all(_is_int(s) for s in size) and size[0] <= size[1]
            if not ok:
                raise OptionError(f"size: expected an int or a (min, max) range, got {size!r}")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        elif not _is_int(size):
            raise OptionError(f"size: expected an int or a (min, max) range, got {size!r}")
        low, high = (float(v) for v in self.value_range)
        if not low < high:
            raise OptionError(
                f"value_range: expected (low, high) with low < high, got {self.value_range!r}"
            )
        object.__setattr__(self, "value_range", (low, high))
        norm = self.normalization
        if not isinstance(norm, str):
            ok = len(norm) == 2 and all(len(v) == self.channels for v in norm)
            if not ok:
                raise OptionError(
                    f"normalization: expected a text or (mean, std) with {self.channels} values "
                    f"each, got {norm!r}"
                )
            object.__setattr__(
                self, "normalization", tuple(tuple(float(v) for v in t) for t in norm)
            )

    @property
    def size_range(self) -> tuple[int, int]:
        """``(min, max)`` side in pixels (``(s, s)`` for a fixed size ``s``)."""
        return (self.size, self.size) if isinstance(self.size, int) else self.size

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        """A valid input shape for ``batch`` samples (the smallest side for a range)."""
        side = self.size_range[0]
        return (batch, self.channels, side, side)

    def describe(self) -> str:
        """One line for ``lookalike info`` and error messages."""
        if isinstance(self.size, int):
            shape = f"(B, {self.channels}, {self.size}, {self.size}) float"
        else:
            shape = f"(B, {self.channels}, H, W) float, H and W in [{self.size[0]}, {self.size[1]}]"
        low, high = self.value_range
        text = f"{shape}, values in [{low:g}, {high:g}]"
        norm = self.normalization
        if isinstance(norm, str):
            return text if norm == "none" else f"{text}, {norm}"
        return f"{text}, normalised by mean {norm[0]}, std {norm[1]}"

    def __str__(self) -> str:
        return self.describe()

    def check(self, x: torch.Tensor, name: str = "input", *, finite: bool = True) -> None:
        """Raise unless ``x`` fits: :class:`ShapeError`, :class:`DTypeError` or (``finite``) :class:`ValueRangeError`.

        Example:
            >>> import torch
            >>> InputSpec(size=(16, 64)).check(torch.zeros(2, 1, 8, 20), "images")
            Traceback (most recent call last):
            ...
            lookalike.core.errors.ShapeError: images: expected height and width in [16, 64], got (2, 1, 8, 20)
        """
        check_tensor(x, name)
        if isinstance(self.size, int):
            side = str(self.size)
            check_shape(x, ["B", str(self.channels), side, side], name)
        else:
            check_shape(x, ["B", str(self.channels), "H", "W"], name)
            low, high = self.size
            if not all(low <= s <= high for s in x.shape[2:]):
                raise ShapeError(
                    f"{name}: expected height and width in [{low}, {high}], got {tuple(x.shape)}"
                )
        check_dtype(x, FLOAT_DTYPES, name)
        # One reduction on the happy path (NaN and inf survive a sum); the full check names them.
        if finite and x.numel() and not bool(torch.isfinite(x.sum(dtype=torch.float32))):
            check_finite(x, name)


class Descriptor(nn.Module):
    """Base class of every descriptor: ``(B, C, H, W)`` inputs to L2-normalised ``(B, dim)`` rows.

    Subclasses set :attr:`dim` and :attr:`input_spec` (an attribute or a property) and implement
    :meth:`forward_features` and, when the features are not the descriptor itself,
    :meth:`forward_head`. Image and re-ID networks give ``input_spec`` a size range and 3 channels.

    Attributes:
        dim: descriptor size ``D``.
        input_spec: the :class:`InputSpec` checked at the door.
        patch_extent: patch half-width in units of the keypoint ``size / 2`` the descriptor expects
            (patch families only; ``None`` for image and re-ID networks).
        needs_weights: class attribute, ``True`` for learned networks (random weights describe
            nothing useful), ``False`` for SIFT and hand-crafted descriptors.
        differentiable: class attribute, ``False`` for descriptors without gradients to the input.
        metric: the distance rows are compared with (``"l2"``; binary baselines use ``"hamming"``).
        validate: check for NaN and infinite input in :meth:`forward` (one device sync on GPUs).

    Convention:
        - ``forward(x) = forward_head(forward_features(x))`` after the input check; the result is
          cast to :meth:`output_dtype`.
        - A flat input (every value of the sample equal) gives an all-zero row, in every mode and
          dtype: it has no direction to describe, and an all-zero row is at distance 1 from every
          unit descriptor.
        - An empty batch gives ``(0, dim)`` without running the network (no warning, no change to
          BatchNorm statistics).
    """

    dim: int
    input_spec: InputSpec
    patch_extent: float | None = None
    needs_weights: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True
    metric: str = "l2"
    validate: bool = True
    input_name: ClassVar[str] = "input"
    #: ``True`` where :meth:`forward_head` itself gives a flat input an all-zero row (SIFT: no
    #: gradient, no histogram), so :meth:`forward` skips the separate pass over the input.
    zeroes_flat_input: ClassVar[bool] = False

    def check_input(self, x: torch.Tensor, *, finite: bool | None = None) -> None:
        """Check ``x`` against :attr:`input_spec` (finite values too when ``validate``)."""
        finite = self.validate if finite is None else finite
        self.input_spec.check(x, self.input_name, finite=finite)

    def output_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The dtype of the rows for input ``x`` (default: ``x.dtype``)."""
        return x.dtype

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output for ``x`` (``(B, T)`` or a feature map); see the subclass."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward_features")

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` features to ``(B, dim)`` L2-normalised rows (default: the normalisation alone)."""
        return normalize_descriptors(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Describe a batch.

        Args:
            x: ``(B, C, H, W)`` floating inputs as :attr:`input_spec` describes.

        Returns:
            ``(B, dim)`` L2-normalised rows (all-zero for flat inputs) in :meth:`output_dtype`.

        Raises:
            ShapeError: ``x`` does not have the shape of :attr:`input_spec`.
            DTypeError: ``x`` is not floating point.
            ValueRangeError: ``x`` holds NaN or infinite values (when ``validate``).
        """
        self.check_input(x)
        dtype = self.output_dtype(x)
        if x.shape[0] == 0:
            return torch.zeros(0, self.dim, dtype=dtype, device=x.device)
        out = self.forward_head(self.forward_features(x))
        if self.zeroes_flat_input:
            return out.to(dtype)
        return zero_rows(out, flat_rows(x)).to(dtype)
