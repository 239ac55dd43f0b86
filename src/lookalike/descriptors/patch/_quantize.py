"""8-bit integer trunks for the fused patch networks on CPUs without native bfloat16.

A CPU with AVX-512 but neither AVX512-BF16 nor AMX runs the fused HardNet trunk in float32, about
half of its peak. Its VNNI instructions multiply 8-bit integers four times as densely: the trunk
quantised statically with PyTorch's eager mode (per-channel symmetric weights, per-tensor affine
activations with histogram observers: the ``x86`` engine's default qconfig; ReLU fused into the
convolutions) runs 3.3-4.5x faster than the float32 trunk there (4,096 HardNet patches, 2 threads,
same run).

Convention:
    - Static quantisation needs activation ranges: they are observed on *calibration patches*, given
      by the caller (the matching pipeline cuts them from bundled training photos around DoG
      keypoints, the way it cuts every patch; never from evaluation data). The calibration patches
      are standardised exactly as the network standardises its input before they are observed.
    - The quantised trunk takes and returns float32 tensors (quantise at the entry, dequantise at
      the exit); everything after the trunk (head, norms, flat-patch rule) stays float32.
    - Without VNNI (AVX2 only) int8 is neither faster (0.98x float32 for a HardNet pair, stop 40)
      nor as exact: TFeat's tanh trunk keeps a cosine of about 0.94 to float32 there, against
      >= 0.99 with VNNI. ``precision="auto"`` therefore picks int8 only with VNNI.
    - CPU only (PyTorch's quantised kernels are CPU kernels). ``torch.backends.quantized.engine`` is
      switched to the engine for the conversion and restored afterwards.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from lookalike.core.check import check_dtype, check_positive, check_shape
from lookalike.core.errors import EmptyInputError, OptionError

__all__ = ["int8_engine", "int8_preferred", "int8_quantizable", "quantize_trunk"]

_TORCH_NN = "torch.nn.modules."  # where torch.nn's layer classes live


def int8_engine(device: torch.device | str | None = None) -> str | None:
    """The quantised engine for ``device`` (``"x86"`` or ``"fbgemm"``), or ``None`` if there is none.

    Example:
        >>> int8_engine("meta") is None
        True
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type != "cpu":
        return None
    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm"):
        if engine in engines:
            return engine
    return None


def int8_preferred(device: torch.device | str | None = None) -> bool:
    """Whether 8-bit integers are the fast path on ``device``: an int8 engine and VNNI instructions.

    Example:
        >>> isinstance(int8_preferred("cpu"), bool)
        True
    """
    if int8_engine(device) is None:
        return False
    try:
        return bool(torch.cpu._is_vnni_supported())
    except (AttributeError, RuntimeError):  # private probe missing from this torch build
        return False


def int8_quantizable(body: nn.Module) -> bool:
    """Whether :func:`quantize_trunk` takes ``body``: an ``nn.Sequential`` of ``torch.nn`` layers.

    Trunks with our own layers (attention pooling, SE, STN...) stay in floating point.

    Example:
        >>> from torch import nn
        >>> int8_quantizable(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
        True
    """
    return isinstance(body, nn.Sequential) and not _foreign_layers(body)


def _foreign_layers(body: nn.Module) -> list[str]:
    """Names of the layer types in ``body`` that are not ``torch.nn`` layers."""
    return sorted(
        {type(m).__name__ for m in body.modules() if not type(m).__module__.startswith(_TORCH_NN)}
    )


@contextmanager
def _engine(name: str):
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def quantize_trunk(
    body: nn.Module, calibration: torch.Tensor, *, batch_size: int = 256
) -> nn.Module:
    """An 8-bit copy of a float32 convolutional trunk, calibrated on standardised patches.

    Eager-mode static quantisation (``Conv2d`` + ``ReLU`` pairs fused, quantise at the entry,
    dequantise at the exit): the same arithmetic as FX graph mode with the engine's default mapping
    (checked equal on HardNet), without FX tracing, whose first call imports torch._dynamo, sympy and
    networkx (2-3 s per process).

    Args:
        body: float32 ``nn.Sequential`` trunk of ``torch.nn`` layers (BatchNorm already folded), on
            the CPU; not modified.
        calibration: ``(N, C, P, P)`` float32 inputs of the trunk (N >= 1), already standardised.
        batch_size: calibration patches per observed pass.

    Returns:
        A module in evaluation mode mapping float32 input to float32 output.

    Raises:
        OptionError: no int8 engine on this machine, or a trunk that is not a ``nn.Sequential`` of
            ``torch.nn`` layers (:func:`int8_quantizable`).
        ShapeError: ``calibration`` is not a 4-d tensor.
        EmptyInputError: it holds no patch.
        DTypeError: ``calibration`` is not float32.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).eval()
        >>> q = quantize_trunk(body, torch.randn(16, 1, 8, 8))
        >>> q(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 4, 6, 6])
    """
    from torch.ao import quantization as tq

    engine = int8_engine("cpu")
    if engine is None:
        raise OptionError("dtype: int8 needs a quantised CPU engine (x86 or fbgemm); none here")
    if not int8_quantizable(body):
        layers = _foreign_layers(body)
        raise OptionError(
            "dtype: int8 needs an nn.Sequential trunk of torch.nn layers only, got "
            f"{type(body).__name__}" + (f" with {', '.join(layers)}" if layers else "")
        )
    check_shape(calibration, ["N", "C", "H", "W"], "calibration")
    check_dtype(calibration, [torch.float32], "calibration")
    check_positive(batch_size, "batch_size")
    if calibration.shape[0] == 0:
        raise EmptyInputError("calibration: expected at least one patch, got 0")
    trunk = copy.deepcopy(body).float().cpu().eval()
    trunk = trunk.to(memory_format=torch.contiguous_format)
    layers = list(trunk)
    pairs = [
        [str(i), str(i + 1)]
        for i in range(len(layers) - 1)
        if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.ReLU)
    ]
    calibration = calibration.detach().cpu().contiguous()
    with _engine(engine), warnings.catch_warnings(), torch.no_grad():
        # torch.ao.quantization announces its move to torchao; eager mode is what this torch ships.
        warnings.simplefilter("ignore")
        if pairs:
            trunk = tq.fuse_modules(trunk, pairs)
        model = nn.Sequential(tq.QuantStub(), trunk, tq.DeQuantStub()).eval()
        model.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(model, inplace=True)
        for chunk in calibration.split(batch_size):
            model(chunk)
        tq.convert(model, inplace=True)
    return model.eval()
