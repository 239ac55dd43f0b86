"""A stripe colour histogram, the simplest re-ID baseline (registered ``stripe-hsv``).

The crop is cut into 8 horizontal stripes of equal height; each stripe gives a joint HSV histogram of
4 x 4 x 4 bins (fractions of its pixels); the 8 x 64 = 512 values are square-rooted and L2-normalised.
On VIPeR it reaches about 8 % rank-1 (see the shared measurement notes): a floor for every other method.

Convention:
    ``(B, 3, H, W)`` RGB in [0, 1], any size in [8, 4096]; stripes are ``floor(H / 8)`` rows high
    (the last ``H mod 8`` rows are not counted). No gradient, no weights.
"""

from __future__ import annotations

import numpy as np
import torch

from lookalike._registry import register
from lookalike.descriptors._base import Descriptor, InputSpec
from lookalike.descriptors._functional import normalize_descriptors

__all__ = ["StripeHSV", "stripe_histograms"]

_STRIPES, _BINS = 8, 4


def stripe_histograms(rgb: np.ndarray, stripes: int = _STRIPES, bins: int = _BINS) -> np.ndarray:
    """``(B, stripes * bins^3)`` stripe HSV histograms (fractions) of ``(B, H, W, 3)`` RGB in [0, 1]."""
    import cv2

    b, h = rgb.shape[:2]
    hsv = np.stack([cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2HSV) for img in rgb])
    q = np.minimum(np.floor(hsv / np.array([360.0, 1.0, 1.0]) * bins), bins - 1).astype(np.int64)
    code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    rows = h // stripes
    code = code[:, : rows * stripes].reshape(b, stripes, -1)
    index = (np.arange(b * stripes).reshape(b, stripes, 1) * bins**3 + code).reshape(-1)
    hist = np.bincount(index, minlength=b * stripes * bins**3).reshape(b, stripes * bins**3)
    return hist / max(code.shape[2], 1)


@register("descriptor", "stripe-hsv")
class StripeHSV(Descriptor):
    """8 stripes x HSV 4 x 4 x 4 histograms, square-rooted: ``(B, 3, H, W)`` -> ``(B, 512)`` rows.

    Example:
        >>> import torch
        >>> tuple(StripeHSV()(torch.rand(2, 3, 128, 48)).shape)
        (2, 512)
    """

    needs_weights = False
    differentiable = False
    input_name = "images"
    #: ``(height, width)`` crops are read at by the re-ID protocol (LOMO's native size).
    crop_size: tuple[int, int] = (128, 48)

    def __init__(self) -> None:
        super().__init__()
        self.dim = _STRIPES * _BINS**3
        self.input_spec = InputSpec(channels=3, size=(8, 4096), normalization="none")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Square-rooted stripe histograms ``(B, 512)``."""
        rgb = x.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return torch.from_numpy(np.sqrt(stripe_histograms(rgb))).to(x.device, torch.float32)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return normalize_descriptors(features)
