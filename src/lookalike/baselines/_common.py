"""What every baseline shares: the patch-mode door, the flat-patch rule, RootSIFT, the unavailable error."""

from __future__ import annotations

import numpy as np
import torch

from lookalike.core.check import check_dtype, check_finite, check_shape
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import FLOAT_DTYPES

__all__ = ["DescriptorUnavailableError", "check_patches", "flat_rows", "rootsift"]


class DescriptorUnavailableError(OptionError):
    """A known descriptor that this installation cannot compute (e.g. missing from this OpenCV)."""


def check_patches(patches: torch.Tensor, patch_size: int | None = None) -> None:
    """The door of every baseline ``forward``: ``(B, 1, P, P)`` floating, finite patches.

    Args:
        patches: the input.
        patch_size: the required side ``P`` (``None``: any square side).

    Raises:
        ShapeError: not ``(B, 1, P, P)`` (or not square, or not ``patch_size``).
        DTypeError: not floating point.
        ValueRangeError: NaN or infinite values.
    """
    side = "P" if patch_size is None else str(patch_size)
    check_shape(patches, ["B", "1", side, side], "patches")
    check_dtype(patches, FLOAT_DTYPES, "patches")
    check_finite(patches, "patches")


def flat_rows(patches: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: patches whose pixels are all equal (they get an all-zero descriptor)."""
    flat = patches.flatten(1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def rootsift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman, CVPR 2012) of SIFT rows: L1-normalise, then square root.

    Convention:
        Rows are taken as non-negative histograms; an all-zero row stays all-zero. The result has unit
        L2 norm (the square root of an L1-unit row), up to rounding.

    Example:
        >>> rootsift(np.array([[1.0, 3.0], [0.0, 0.0]])).astype(np.float64).round(3).tolist()
        [[0.5, 0.866], [0.0, 0.0]]
    """
    desc = np.asarray(desc, dtype=np.float32)
    return np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))
