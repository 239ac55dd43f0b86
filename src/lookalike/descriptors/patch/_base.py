"""The contract every learned patch descriptor shares: checks, standardisation, trunk, head, normalisation."""

from __future__ import annotations

import torch
from torch import nn

from lookalike.core.check import check_dtype, check_option, check_shape
from lookalike.core.errors import OptionError
from lookalike.descriptors.patch._functional import normalize_descriptors, standardize_patches
from lookalike.descriptors.patch._inference import (
    FLOAT_DTYPES,
    FusedPatchNet,
    bf16_supported,
    fold_sequential,
)

__all__ = ["PatchNet"]


class PatchNet(nn.Module):
    """Base class: ``(B, 1, P, P)`` patches → standardise → ``features`` → flatten → head → L2 rows.

    Subclasses build ``self.features`` (an ``nn.Sequential`` trunk ending in a ``(B, D', 1, 1)`` map),
    set ``dim``/``patch_size`` and the standardisation (``_norm_kind``, ``_norm_eps``,
    ``_detach_stats``), and override :meth:`_head` (and :meth:`_inference_head`) when the raw
    descriptor is not the flattened trunk output.

    Convention:
        - Input: ``(B, in_channels, P, P)`` floating patches, nominally in [0, 1]; each patch is
          standardised first, so ``a x + b`` (``a > 0``) gives the same descriptor unless it leaves the
          patch almost flat. Statistics are computed in float32 (float64 for float64 input).
        - The patches are cast to the dtype of the network's weights; the output has that dtype. Row
          norms are computed in float32 (float64 stays), so half-precision rows are unit norm up to
          their rounding.
        - A flat patch (all pixels equal) gives an all-zero row, in every dtype and mode: it has no
          direction to describe, and an all-zero row is at distance 1 from every unit descriptor.
    """

    in_channels: int = 1
    patch_size: int = 32
    dim: int
    features: nn.Sequential
    _norm_kind: str = "std"
    _norm_eps: float = 1e-6
    _detach_stats: bool = True

    def _check_input(self, patches: torch.Tensor) -> None:
        p = str(self.patch_size)
        check_shape(patches, ["B", str(self.in_channels), p, p], "patches")
        check_dtype(patches, FLOAT_DTYPES, "patches")

    def _weight_dtype(self) -> torch.dtype:
        return next(self.features.parameters()).dtype

    def _head(self, feats: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, D)`` descriptor from the flattened trunk output (default: the output itself)."""
        return feats

    def _inference_head(self) -> nn.Module:
        """A float32 module equal to :meth:`_head`, independent of ``self``, for the fused network."""
        return nn.Identity()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Describe patches.

        Args:
            patches: ``(B, 1, P, P)`` floating patches in [0, 1].

        Returns:
            ``(B, D)`` L2-normalised descriptors in the weights' dtype (all-zero for flat patches).

        Raises:
            ShapeError: ``patches`` is not ``(B, in_channels, P, P)``.
            DTypeError: ``patches`` is not floating point.
        """
        self._check_input(patches)
        x, flat = standardize_patches(
            patches, eps=self._norm_eps, kind=self._norm_kind, detach=self._detach_stats
        )
        dtype = self._weight_dtype()
        x = x.to(dtype)
        if x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16):
            # oneDNN's fast layout; .contiguous(memory_format=...) would be a no-op on one channel.
            x = x.to(memory_format=torch.channels_last)
        feats = self.features(x).flatten(1)
        return normalize_descriptors(self._head(feats), flat, dtype)

    def fuse_for_inference(
        self,
        *,
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
        dynamic: bool | None = None,
        channels_last: bool = True,
    ) -> FusedPatchNet:
        """An inference-only copy with BatchNorm folded into the convolutions.

        The copy reads the eval-mode behaviour (running statistics, no dropout) whatever mode ``self``
        is in, and does not follow later changes to ``self``.

        Args:
            dtype: ``torch.float32`` (same descriptors up to float32 rounding, ≤ 1e-5) or
                ``torch.bfloat16`` (opt-in; trunk weights and activations in bfloat16, statistics,
                head and norms in float32; cosine ≥ 0.9999 to float32 in our tests). bfloat16 needs
                native support (:func:`~lookalike.descriptors.patch._inference.bf16_supported`).
            compile: ``torch.compile`` with Inductor freezing (first call compiles; see
                :class:`~lookalike.descriptors.patch._inference.FusedPatchNet`).
            dynamic: ``torch.compile``'s ``dynamic`` (``False``: a static graph per batch size,
                fastest for a fixed batch size; ``None``: dynamic from the second batch size on).
            channels_last: run the eager trunk in channels-last layout (faster with oneDNN on CPU).

        Returns:
            A :class:`~lookalike.descriptors.patch._inference.FusedPatchNet` with the same
            ``patch_size``, ``in_channels`` and ``dim``; its output is float32.

        Raises:
            OptionError: unsupported ``dtype``, or bfloat16 without native support on the device.

        Example:
            >>> import torch, lookalike
            >>> net = lookalike.create("descriptor", "hardnet").eval()
            >>> fast = net.fuse_for_inference()
            >>> x = torch.rand(4, 1, 32, 32)
            >>> bool((fast(x) - net(x)).abs().max() < 1e-5)
            True
        """
        check_option(dtype, [torch.float32, torch.bfloat16], "dtype")
        device = next(self.features.parameters()).device
        if dtype == torch.bfloat16 and not bf16_supported(device):
            raise OptionError(f"dtype: bfloat16 is not supported natively on {device}")
        return FusedPatchNet(
            body=fold_sequential(self.features),
            head=self._inference_head(),
            kind=self._norm_kind,
            eps=self._norm_eps,
            patch_size=self.patch_size,
            in_channels=self.in_channels,
            dim=self.dim,
            dtype=dtype,
            channels_last=channels_last,
            compile=compile,
            dynamic=dynamic,
        )
