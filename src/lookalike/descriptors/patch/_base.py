"""The contract every learned patch descriptor shares: checks, standardisation, trunk, head, normalisation."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from lookalike.core.check import check_option
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import NETWORK_EXTENT, Descriptor, InputSpec
from lookalike.descriptors.patch._functional import normalize_descriptors, standardize_patches
from lookalike.descriptors.patch._inference import (
    FUSED_DTYPES,
    FusedPatchNet,
    bf16_supported,
    fold_sequential,
)
from lookalike.descriptors.patch._quantize import int8_engine

__all__ = ["PatchNet"]


class PatchNet(Descriptor):
    """Patch networks: ``(B, 1, P, P)`` patches → standardise → trunk → projection → L2 rows.

    :meth:`forward_features` standardises each patch and runs the trunk ``self.features`` (an
    ``nn.Sequential`` ending in a ``(B, T, 1, 1)`` map), flattened to ``(B, T)``;
    :meth:`forward_head` applies :meth:`project` (identity here; HardNet8's PCA, TFeat's linear
    layer) and the L2 normalisation. Subclasses build ``self.features``, set ``dim``/``patch_size``
    and the standardisation (``_norm_kind``, ``_norm_eps``, ``_detach_stats``), and override
    :meth:`project` and :meth:`_fused_projection` when the descriptor is not the trunk output.

    Convention:
        - Input: ``(B, in_channels, P, P)`` floating patches, nominally in [0, 1]; each patch is
          standardised first, so ``a x + b`` (``a > 0``) gives the same descriptor unless it leaves the
          patch almost flat. Statistics are computed in float32 (float64 for float64 input).
        - The patches are cast to the dtype of the network's weights; the output has that dtype. Row
          norms are computed in float32 (float64 stays), so half-precision rows are unit norm up to
          their rounding.
        - A flat patch (all pixels equal) gives an all-zero row, in every dtype and mode: it has no
          direction to describe, and an all-zero row is at distance 1 from every unit descriptor.
        - NaN or infinite patches raise :class:`~lookalike.core.errors.ValueRangeError` (set
          ``validate = False`` to skip that check, which costs one device sync on GPUs).
    """

    in_channels: int = 1
    patch_size: int = 32
    patch_extent: float | None = NETWORK_EXTENT
    needs_weights: ClassVar[bool] = True
    input_name: ClassVar[str] = "patches"
    dim: int
    features: nn.Sequential
    _norm_kind: str = "std"
    _norm_eps: float = 1e-6
    _detach_stats: bool = True

    @property
    def input_spec(self) -> InputSpec:  # type: ignore[override]
        """``(B, in_channels, patch_size, patch_size)`` patches in [0, 1], standardised per patch."""
        if self._norm_kind == "std":
            norm = f"per-patch standardisation (x - mean) / (std + {self._norm_eps:g})"
        else:
            norm = f"per-patch standardisation (x - mean) / sqrt(var + {self._norm_eps:g})"
        return InputSpec(channels=self.in_channels, size=self.patch_size, normalization=norm)

    def _weight_dtype(self) -> torch.dtype:
        return next(self.features.parameters()).dtype

    def output_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The dtype of the network's weights (the patches are cast to it)."""
        return self._weight_dtype()

    def forward_features(self, patches: torch.Tensor) -> torch.Tensor:
        """Standardise each patch and run the trunk: ``(B, T)`` raw trunk outputs, weights' dtype.

        This is what a PCA head is fitted on (HardNet8: L2-normalise these rows first, as
        :func:`~lookalike.descriptors.patch.hardnet8.pca_project` does). Shape and dtype are checked;
        finite values only in :meth:`forward`.

        Raises:
            ShapeError: ``patches`` is not ``(B, in_channels, P, P)``.
            DTypeError: ``patches`` is not floating point.
        """
        self.check_input(patches, finite=False)
        x, _ = standardize_patches(
            patches, eps=self._norm_eps, kind=self._norm_kind, detach=self._detach_stats
        )
        dtype = self._weight_dtype()
        x = x.to(dtype)
        if x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16):
            # oneDNN's fast layout; .contiguous(memory_format=...) would be a no-op on one channel.
            x = x.to(memory_format=torch.channels_last)
        return self.features(x).flatten(1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, dim)`` descriptor from ``(B, T)`` trunk outputs (default: the outputs themselves)."""
        return features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """:meth:`project` then L2-normalise the rows (norms in float32); the features' dtype."""
        return normalize_descriptors(self.project(features), dtype=features.dtype)

    def _fused_projection(self) -> nn.Module:
        """A float32 module equal to :meth:`project`, independent of ``self``, for the fused network."""
        return nn.Identity()

    def _fused_tail(self) -> nn.Module | None:
        """A float32 module applied to the fused network's unit rows (default: none)."""
        return None

    def fuse_for_inference(
        self,
        *,
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
        dynamic: bool | None = None,
        channels_last: bool = True,
        calibration: torch.Tensor | None = None,
    ) -> FusedPatchNet:
        """An inference-only copy with BatchNorm folded into the convolutions.

        The copy reads the eval-mode behaviour (running statistics, no dropout) whatever mode ``self``
        is in, and does not follow later changes to ``self``.

        Args:
            dtype: ``torch.float32`` (same descriptors up to float32 rounding, ≤ 1e-5) or
                ``torch.bfloat16`` (opt-in; trunk weights and activations in bfloat16, statistics,
                head and norms in float32; cosine ≥ 0.9999 to float32 in our tests). bfloat16 needs
                native support (:func:`~lookalike.descriptors.patch._inference.bf16_supported`).
                ``torch.qint8`` (CPU): an 8-bit trunk calibrated on ``calibration`` (cosine ≈ 0.99 to
                float32; :mod:`~lookalike.descriptors.patch._quantize`); never compiled
                (``compile=True`` with it raises).
            compile: ``torch.compile`` with Inductor freezing (first call compiles; see
                :class:`~lookalike.descriptors.patch._inference.FusedPatchNet`).
            dynamic: ``torch.compile``'s ``dynamic`` (``False``: a static graph per batch size,
                fastest for a fixed batch size; ``None``: dynamic from the second batch size on).
            channels_last: run the eager trunk in channels-last layout (faster with oneDNN on CPU).
            calibration: ``(N, C, P, P)`` patches in [0, 1] for the int8 activation ranges (required
                with ``torch.qint8``): patches like those to be described, never evaluation data.

        Returns:
            A :class:`~lookalike.descriptors.patch._inference.FusedPatchNet` with the same
            ``patch_size``, ``in_channels`` and ``dim``; its output is float32.

        Raises:
            OptionError: unsupported ``dtype``, bfloat16 without native support on the device,
                int8 off the CPU, with ``compile=True``, without calibration patches or for a trunk
                with layers outside ``torch.nn``
                (:func:`~lookalike.descriptors.patch._quantize.quantize_trunk`).

        Example:
            >>> import torch, lookalike
            >>> net = lookalike.create("descriptor", "hardnet").eval()
            >>> fast = net.fuse_for_inference()
            >>> x = torch.rand(4, 1, 32, 32)
            >>> bool((fast(x) - net(x)).abs().max() < 1e-5)
            True
        """
        check_option(dtype, FUSED_DTYPES, "dtype")
        device = next(self.features.parameters()).device
        if dtype == torch.bfloat16 and not bf16_supported(device):
            raise OptionError(f"dtype: bfloat16 is not supported natively on {device}")
        if dtype == torch.qint8 and int8_engine(device) is None:
            raise OptionError(f"dtype: int8 needs a CPU with a quantised engine, got {device}")
        return FusedPatchNet(
            body=fold_sequential(self.features),
            head=self._fused_projection(),
            kind=self._norm_kind,
            eps=self._norm_eps,
            patch_size=self.patch_size,
            in_channels=self.in_channels,
            dim=self.dim,
            dtype=dtype,
            calibration=calibration,
            channels_last=channels_last,
            compile=compile,
            dynamic=dynamic,
            tail=self._fused_tail(),
        )
