"""Fast inference for the patch networks: BatchNorm folding, channels-last, bfloat16, ``torch.compile``.

:func:`~lookalike.descriptors.fold.fold_batchnorm` is a pure function; :class:`FusedPatchNet` is what
``PatchNet.fuse_for_inference`` returns: the same descriptors as the eval-mode network, computed by a
frozen, folded copy of it.

What helps on a 2-thread AVX-512-BF16 CPU (HardNet; ``benchmarks/patch_nets.py``, ratios to kornia's
eval-mode HardNet measured interleaved on a shared machine, batch 256 / 2048): folding plus
channels-last ≈ 1.25× / 1.2×; ``torch.compile`` with Inductor freezing (weights become constants,
prepacked for oneDNN, ReLU fused into the convolutions) ≈ 1.8× / 1.6×; bfloat16 weights and
activations ≈ 2.2×, ≈ 3.2× / 3.1× compiled. Without freezing, compiling gains little: Inductor then
calls the plain convolutions and adds its own ReLU kernels. On a CPU with VNNI but without native
bfloat16, an 8-bit trunk (``dtype=torch.qint8``, :mod:`~lookalike.descriptors.patch._quantize`) is
the fast one: ≈ 4× the folded float32 trunk there.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lookalike.core.check import check_option
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import FLOAT_DTYPES, InputSpec
from lookalike.descriptors.fold import fold_batchnorm
from lookalike.descriptors.patch._functional import normalize_descriptors, standardize_patches
from lookalike.descriptors.patch._quantize import int8_preferred, quantize_trunk

#: trunk dtypes of a fused network: float32, bfloat16 (native support only), 8-bit integers (CPU)
FUSED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.qint8)

__all__ = [
    "FLOAT_DTYPES",
    "FUSED_DTYPES",
    "FusedPatchNet",
    "bf16_supported",
    "fold_batchnorm",
    "fold_sequential",
    "int8_preferred",
]


def fold_sequential(layers: nn.Sequential) -> nn.Sequential:
    """Copy of ``layers`` for inference: every ``Conv2d`` + ``BatchNorm2d`` pair folded, dropout removed.

    Other layers are deep-copied unchanged; the result is in evaluation mode.

    Example:
        >>> from torch import nn
        >>> seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.3))
        >>> fold_sequential(seq)
        Sequential(
          (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))
          (1): ReLU()
        )
    """
    out: list[nn.Module] = []
    mods = list(layers)
    i = 0
    while i < len(mods):
        mod = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(mod, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            out.append(fold_batchnorm(mod, nxt))
            i += 2
            continue
        if not isinstance(mod, nn.Dropout | nn.Dropout2d | nn.Identity):
            out.append(copy.deepcopy(mod))
        i += 1
    return nn.Sequential(*out).eval()


def bf16_supported(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (CPU: oneDNN with AVX512-BF16 or AMX).

    Example:
        >>> isinstance(bf16_supported("cpu"), bool)
        True
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private probes missing from this torch build
        return False


class _FusedCore(nn.Module):
    """Tensor-only part of :class:`FusedPatchNet` (what ``torch.compile`` sees)."""

    def __init__(
        self,
        body: nn.Sequential,
        head: nn.Module,
        *,
        kind: str,
        eps: float,
        dtype: torch.dtype,
        channels_last: bool,
        tail: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.tail = tail if tail is not None else nn.Identity()
        self.kind = kind
        self.eps = eps
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x, flat = standardize_patches(patches, eps=self.eps, kind=self.kind)
        if self.dtype != torch.qint8:  # the int8 trunk quantises its float32 input itself
            x = x.to(self.dtype)
        if self.channels_last:
            x = x.to(memory_format=torch.channels_last)
        feats = self.body(x).flatten(1)
        return self.tail(normalize_descriptors(self.head(feats.float()), flat, torch.float32))


def _int8_body(
    body: nn.Sequential, calibration: Any, spec: InputSpec, *, kind: str, eps: float
) -> nn.Module:
    """The trunk quantised to 8 bits, its activation ranges observed on ``calibration``."""
    if calibration is None:
        raise OptionError("calibration: dtype=torch.qint8 needs calibration patches, got None")
    if not isinstance(calibration, torch.Tensor):
        raise OptionError(f"calibration: expected a tensor, got {type(calibration).__name__}")
    spec.check(calibration, "calibration")
    x, _ = standardize_patches(calibration.float().cpu(), eps=eps, kind=kind)
    return quantize_trunk(body, x)


class FusedPatchNet(nn.Module):
    """Inference-only copy of a patch network: folded BatchNorm, optional bfloat16 and compilation.

    Built by ``PatchNet.fuse_for_inference``; holds no reference to the original network.

    Args:
        body: the folded convolutional trunk.
        head: maps the flattened float32 trunk output to the raw descriptor (e.g. a PCA).
        tail: optional float32 module applied to the unit rows after the normalisation (a
            :class:`~lookalike.layers.matchability.MatchabilityGate`); ``D`` is its output size.
        kind: input standardisation, ``"std"`` or ``"instance"``
            (see :func:`~lookalike.descriptors.patch._functional.standardize_patches`).
        eps: its epsilon.
        patch_size: ``P``.
        in_channels: ``C``.
        dim: ``D``.
        dtype: ``torch.float32`` or ``torch.bfloat16`` for the trunk's weights and activations, or
            ``torch.qint8`` for an 8-bit trunk (CPU; :mod:`~lookalike.descriptors.patch._quantize`).
        calibration: ``(N, C, P, P)`` patches in [0, 1] whose activation ranges calibrate the int8
            trunk (required with ``torch.qint8``, ignored otherwise).
        channels_last: run the eager trunk in channels-last layout (compiled graphs pick their own).
        compile: ``torch.compile`` the tensor computation with Inductor freezing.
        dynamic: ``torch.compile``'s ``dynamic``: ``None`` (default) compiles the first batch size
            statically and turns the batch dimension dynamic at the second; ``False`` compiles every
            batch size statically (fastest for a fixed batch size, ≈ 15% more float32 throughput at
            batch 2048 here, but one compilation per size); ``True`` is dynamic from the start.

    Shape:
        - Input: ``(B, C, P, P)`` floating patches.
        - Output: ``(B, D)`` float32, rows L2-normalised.

    Convention:
        - The forward runs under ``torch.no_grad()``: no gradients, inference only.
        - Same input checks (shape, floating dtype, finite values), standardisation (float32) and
          flat-patch rule (all-zero row) as the network it came from; the output is float32 in either
          trunk dtype. An empty batch gives ``(0, D)``.
        - It is built on the device and dtype of the network's weights: fuse after ``.to(device)``.
        - With ``compile=True`` the first call compiles (≈ 20 s cold for HardNet on two cores, a few
          seconds once Inductor's on-disk cache is warm, also across processes); with the default
          ``dynamic=None`` the second batch size recompiles with a dynamic batch dimension, which later
          sizes reuse.
    """

    def __init__(
        self,
        *,
        body: nn.Sequential,
        head: nn.Module,
        kind: str,
        eps: float,
        patch_size: int,
        in_channels: int,
        dim: int,
        dtype: torch.dtype = torch.float32,
        calibration: torch.Tensor | None = None,
        channels_last: bool = True,
        compile: bool = False,
        dynamic: bool | None = None,
        tail: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_option(dtype, FUSED_DTYPES, "dtype")
        check_option(dynamic, [None, False, True], "dynamic")
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.dim = dim
        self.dtype = dtype
        self.input_spec = InputSpec(channels=in_channels, size=patch_size)
        if dtype == torch.qint8:
            if compile:  # as PatchDescriber: refused, not silently dropped
                raise OptionError("compile: an int8 trunk is not compiled; drop compile=True")
            body = _int8_body(body, calibration, self.input_spec, kind=kind, eps=eps)
            channels_last = False  # quantised kernels pick their layout
        else:
            body = body.to(dtype)
        # Compiled graphs choose their own layouts (freezing makes the convolutions channels-last);
        # forcing it on a 1-channel input as well trips an Inductor stride assertion once the batch
        # dimension turns dynamic (torch 2.14), so only the eager path converts.
        channels_last = channels_last and not compile
        if channels_last:
            body = body.to(memory_format=torch.channels_last)
        self.core = _FusedCore(
            body,
            head.float(),
            kind=kind,
            eps=eps,
            dtype=dtype,
            channels_last=channels_last,
            tail=tail.float() if tail is not None else None,
        )
        self.core.eval().requires_grad_(False)
        self.compiled = compile
        # Kept out of the module tree so that state_dict() and repr() show the weights once.
        self.__dict__["_runner"] = (
            torch.compile(self.core, dynamic=dynamic) if compile else self.core
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Describe ``(B, C, P, P)`` patches; returns ``(B, D)`` float32 unit rows (flat patch: zeros)."""
        self.input_spec.check(patches, "patches")
        if patches.shape[0] == 0:
            return torch.zeros(0, self.dim, device=patches.device)
        runner = self.__dict__["_runner"]
        if not self.compiled:
            with torch.no_grad():
                return runner(patches)
        # Freezing (weights as constants: BN-folded, prepacked for oneDNN, ReLU fused) is read when a
        # graph compiles, i.e. on a first call or a recompilation; ``torch.compile(options=...)`` does
        # not reach it, so it is switched on around every call, without touching the global config.
        from torch._inductor import config as inductor_config

        with inductor_config.patch(freezing=True), torch.no_grad():
            return runner(patches)

    def train(self, mode: bool = True) -> FusedPatchNet:
        """Stay in evaluation mode: a fused network has no training behaviour."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, compiled={self.compiled}"
