"""``color-hist``: an HSV colour histogram, the hand-crafted baseline row of every retrieval table.

The image is area-resized to a small square, converted to HSV, and counted into ``bins³`` joint bins;
the square root of the normalised counts (the Hellinger kernel) is L2-normalised. On the UKBench sample
this plain histogram already scores an N-S of about 3.5: every learned descriptor must beat it.

``transformed-color-hist`` is the *transformed colour histogram* of van de Sande, Gevers and Snoek
(TPAMI 2010): each RGB channel is standardised over the image (``(R - mean_R) / std_R``...) before the
joint counts, which makes the row invariant to a gain and an offset per channel: light intensity
changes and shifts, and light colour changes (white balance) under the diagonal model. The HSV
histogram counts brightness and saturation directly, so a brighter or more saturated view of the same
object moves its mass to other bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lookalike._registry import register
from lookalike.core.check import check_int
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import Descriptor, InputSpec

__all__ = [
    "ColorHistogram",
    "TransformedColorHistogram",
    "color_histogram",
    "rgb_to_hsv",
    "transformed_color_histogram",
]


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] to HSV, every channel in [0, 1] (hue as a fraction of a turn).

    Convention:
        As OpenCV's float conversion: ``V = max``, ``S = (max - min) / max`` (0 where ``max = 0``), hue 0
        where ``max = min``.

    Example:
        >>> import torch
        >>> [round(v, 4) for v in rgb_to_hsv(torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)).flatten().tolist()]
        [0.5833, 1.0, 1.0]
    """
    r, g, b = x.unbind(dim=1)
    high, _ = x.max(dim=1)
    low, _ = x.min(dim=1)
    delta = high - low
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        high == r,
        ((g - b) / safe) % 6.0,
        torch.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    sat = torch.where(
        high > 0, delta / torch.where(high > 0, high, torch.ones_like(high)), torch.zeros_like(high)
    )
    return torch.stack([hue, sat, high], dim=1)


def color_histogram(x: torch.Tensor, *, bins: int = 8, size: int = 64) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] to ``(B, bins³)`` rows: area resize, HSV, joint counts, sqrt, L2.

    Example:
        >>> import torch
        >>> out = color_histogram(torch.rand(2, 3, 40, 30), bins=4)
        >>> out.shape, [round(v, 4) for v in out.norm(dim=1).tolist()]
        (torch.Size([2, 64]), [1.0, 1.0])
    """
    small = F.interpolate(x.float(), size=(size, size), mode="area")
    hsv = rgb_to_hsv(small.clamp(0.0, 1.0))
    return _joint_counts((hsv * bins).long().clamp_(0, bins - 1), bins).to(x.dtype)


def _joint_counts(index: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B, 3, h, w)`` bin indices in ``[0, bins)`` to ``(B, bins³)`` rows: joint counts, sqrt, L2."""
    flat = ((index[:, 0] * bins + index[:, 1]) * bins + index[:, 2]).flatten(1)
    counts = torch.zeros(index.shape[0], bins**3, device=index.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
    return F.normalize((counts / flat.shape[1]).sqrt(), dim=1)


#: Standard deviation (intensity units, [0, 1] scale) below which a channel counts as flat: its
#: standardised values are 0 instead of amplified noise.
FLAT_CHANNEL_STD = 1e-3


def transformed_color_histogram(
    x: torch.Tensor, *, bins: int = 8, size: int = 64, clip: float = 2.0
) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] to ``(B, bins³)`` transformed colour histograms.

    Area resize to ``size x size``; each channel of each image standardised to zero mean and unit
    (population) standard deviation; values clipped to ``[-clip, clip]`` and cut into ``bins`` equal
    bins per channel; joint counts, square root, L2 (as :func:`color_histogram`).

    Convention:
        A channel whose standard deviation is below :data:`FLAT_CHANNEL_STD` standardises to 0 (the
        middle bin): a uniform image gives one full bin, not noise.

    Example:
        >>> import torch
        >>> x = torch.rand(1, 3, 40, 30)
        >>> a = transformed_color_histogram(x, bins=4)
        >>> b = transformed_color_histogram(0.5 * x + torch.tensor([0.1, 0.3, 0.0]).view(1, 3, 1, 1), bins=4)
        >>> a.shape, round(float(a.norm()), 4), bool(torch.allclose(a, b, atol=1e-6))
        (torch.Size([1, 64]), 1.0, True)
    """
    small = F.interpolate(x.float(), size=(size, size), mode="area")
    std, mean = torch.std_mean(small, dim=(2, 3), keepdim=True, correction=0)
    flat = std < FLAT_CHANNEL_STD
    z = torch.where(flat, torch.zeros_like(small), (small - mean) / torch.where(flat, 1.0, std))
    unit = (z.clamp(-clip, clip) + clip) / (2 * clip)
    return _joint_counts((unit * bins).long().clamp_(0, bins - 1), bins).to(x.dtype)


@register("descriptor", "color-hist")
class ColorHistogram(Descriptor):
    """HSV colour histogram (``bins³`` values): the hand-crafted baseline of the retrieval tables.

    Args:
        bins: bins per HSV channel (8: 512 values).
        size: side of the square the image is area-resized to first.
        size_range: accepted input sides ``(min, max)``.
        validate: check for NaN / infinite input.

    Example:
        >>> import torch
        >>> ColorHistogram()(torch.rand(3, 3, 48, 64)).shape
        torch.Size([3, 512])
    """

    needs_weights = False
    differentiable = False
    input_name = "images"
    _normalization = "HSV joint histogram"

    def __init__(
        self,
        *,
        bins: int = 8,
        size: int = 64,
        size_range: Sequence[int] = (8, 8192),
        validate: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("bins", bins), ("size", size)):
            check_int(value, name)
        self.input_spec = InputSpec(
            channels=3, size=tuple(size_range), normalization=self._normalization
        )
        self.bins, self.size, self.validate = bins, size, validate
        self.dim = bins**3

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return color_histogram(x.detach(), bins=self.bins, size=self.size)


@register("descriptor", "transformed-color-hist")
class TransformedColorHistogram(ColorHistogram):
    """Transformed colour histogram (``bins³`` values): per-channel standardised RGB, joint counts.

    Invariant to a gain and an offset per RGB channel (:func:`transformed_color_histogram`), so light
    intensity and light colour changes leave it unchanged, unlike ``color-hist``.

    Args:
        bins: bins per channel (8: 512 values) over ``[-clip, clip]`` standard deviations.
        size: side of the square the image is area-resized to first.
        clip: standardised values are clipped to ``[-clip, clip]`` (the outer bins hold the tails).
        size_range: accepted input sides ``(min, max)``.
        validate: check for NaN / infinite input.

    Example:
        >>> import torch
        >>> TransformedColorHistogram()(torch.rand(3, 3, 48, 64)).shape
        torch.Size([3, 512])
    """

    _normalization = "per-channel standardised RGB joint histogram"

    def __init__(
        self,
        *,
        bins: int = 8,
        size: int = 64,
        clip: float = 2.0,
        size_range: Sequence[int] = (8, 8192),
        validate: bool = True,
    ) -> None:
        super().__init__(bins=bins, size=size, size_range=size_range, validate=validate)
        ok = isinstance(clip, (int, float)) and not isinstance(clip, bool)
        if not (ok and math.isfinite(clip) and clip > 0):
            raise OptionError(f"clip: expected a finite number > 0, got {clip!r}")
        self.clip = float(clip)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return transformed_color_histogram(
            x.detach(), bins=self.bins, size=self.size, clip=self.clip
        )
