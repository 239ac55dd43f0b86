"""8-bit integer trunks for the fused patch networks on CPUs without native bfloat16.

A CPU with AVX-512 but neither AVX512-BF16 nor AMX runs the fused HardNet trunk in float32, about
half of its peak. Its VNNI instructions multiply 8-bit integers four times as densely: the trunk
quantised with PyTorch's FX graph mode (static, per-channel symmetric weights, per-tensor affine
activations with histogram observers, the ``x86`` engine's default mapping; ReLU fused into the
convolutions) runs 4-4.5x faster than the float32 trunk there (4,096 HardNet patches, 2 threads,
same run).

Convention:
    - Static quantisation needs activation ranges: they are observed on *calibration patches*, given
      by the caller (the matching pipeline cuts them from bundled training photos around DoG
      keypoints, the way it cuts every patch; never from evaluation data). The calibration patches
      are standardised exactly as the network standardises its input before they are observed.
    - The quantised trunk takes and returns float32 tensors (quantise at the entry, dequantise at
      the exit); everything after the trunk (head, norms, flat-patch rule) stays float32.
    - CPU only (PyTorch's quantised kernels are CPU kernels). ``torch.backends.quantized.engine`` is
      switched to the engine for the conversion and restored afterwards.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from lookalike.core.check import check_dtype, check_shape
from lookalike.core.errors import EmptyInputError, OptionError

__all__ = ["int8_engine", "int8_preferred", "int8_quantizable", "quantize_trunk"]


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
    """Whether FX graph mode can quantise ``body``: built only of ``torch.nn`` layers.

    Trunks with our own layers (attention pooling, SE, STN...) check their inputs in Python, which
    symbolic tracing cannot run; they stay in floating point.

    Example:
        >>> from torch import nn
        >>> int8_quantizable(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
        True
    """
    if not isinstance(body, nn.Module):
        return False
    return all(type(m).__module__.startswith("torch.nn.modules.") for m in body.modules())


_TORCH_LAYER_NAMES = {n for n in dir(nn) if isinstance(getattr(nn, n), type)}


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

    Args:
        body: float32 trunk (BatchNorm already folded), on the CPU; not modified.
        calibration: ``(N, C, P, P)`` float32 inputs of the trunk (N >= 1), already standardised.
        batch_size: calibration patches per observed pass.

    Returns:
        A ``torch.fx.GraphModule`` in evaluation mode mapping float32 input to float32 output.

    Raises:
        OptionError: no int8 engine on this machine, or a layer outside ``torch.nn``
            (:func:`int8_quantizable`).
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
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = int8_engine("cpu")
    if engine is None:
        raise OptionError("dtype: int8 needs a quantised CPU engine (x86 or fbgemm); none here")
    if not int8_quantizable(body):
        layers = sorted({type(m).__name__ for m in body.modules()} - _TORCH_LAYER_NAMES)
        raise OptionError(
            f"dtype: int8 needs a trunk of torch.nn layers only, got also {', '.join(layers)}"
        )
    check_shape(calibration, ["N", "C", "H", "W"], "calibration")
    check_dtype(calibration, [torch.float32], "calibration")
    if calibration.shape[0] == 0:
        raise EmptyInputError("calibration: expected at least one patch, got 0")
    trunk = copy.deepcopy(body).float().cpu().eval()
    trunk = trunk.to(memory_format=torch.contiguous_format)
    calibration = calibration.detach().cpu().contiguous()
    with _engine(engine), warnings.catch_warnings(), torch.no_grad():
        # torch.ao.quantization announces its move to torchao; the FX flow is what this torch ships.
        warnings.simplefilter("ignore")
        mapping = get_default_qconfig_mapping(engine)
        prepared = prepare_fx(trunk, mapping, example_inputs=(calibration[:1],))
        for chunk in calibration.split(batch_size):
            prepared(chunk)
        quantised = convert_fx(prepared)
    return quantised.eval()
