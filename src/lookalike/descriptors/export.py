"""Export a descriptor network to ONNX or TorchScript, with a dynamic batch dimension.

:func:`export_descriptor` writes one file that computes exactly what the network's eval-mode
``forward`` computes: input standardisation, trunk, head, L2 normalisation and the flat-input rule.
:func:`network_descriptors` lists the registered names it is meant for.

Convention:
    - Network descriptors are the registered descriptors that need trained weights and are trained
      by gradient (their factory's ``needs_weights`` is True and ``differentiable`` is not False);
      the baselines (OpenCV, kornia), weights-free descriptors and fitted non-networks (``lomo-xqda``:
      histograms plus a fitted projection) are not exported here.
    - The exported graph takes ``(batch, C, H, W)`` float32 in [0, 1] (``H = W = patch_size`` for patch
      networks; the smallest side of the input range for image networks, which is then the only
      size the file is checked with) and returns ``(batch, D)`` float32 rows. The batch dimension is
      dynamic (ONNX: ``dynamic_axes``, named ``batch``; TorchScript: traced without batch-specific
      shapes). A flat input gives an all-zero row, as in PyTorch.
    - What the file does NOT do: input checks (shape, dtype, NaN) are Python code and stay in
      PyTorch; a NaN input gives NaN rows in the exported graph. Empty batches are the caller's
      business (ONNX Runtime may refuse a zero-size batch).
    - The network is exported from an eval-mode deep copy: the caller's module, its mode and its
      weights are untouched. ONNX files carry ``lookalike.*`` metadata (name, dim, input spec,
      version); TorchScript files an extra file ``lookalike.json`` with the same.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import OptionError

__all__ = ["EXPORT_FORMATS", "export_descriptor", "export_metadata", "network_descriptors"]

#: Formats :func:`export_descriptor` writes, with the file suffixes it accepts for each.
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}
#: ONNX opset of exported graphs.
DEFAULT_OPSET = 20  # 20: AffineGrid (the STN descriptors); ONNX Runtime >= 1.17 runs it


def network_descriptors() -> list[str]:
    """Registered network descriptors: trained weights, trained by gradient (module Convention).

    Example:
        >>> "hardnet" in network_descriptors(), "opencv-sift" in network_descriptors()
        (True, False)
    """
    import lookalike
    from lookalike._registry import get_entry

    out = []
    for name in lookalike.list_registered("descriptor"):
        factory = get_entry("descriptor", name).factory
        if getattr(factory, "needs_weights", False) and getattr(factory, "differentiable", True):
            out.append(name)
    return out


class _Exported(nn.Module):
    """The eval-mode forward of a copy of ``net``, without the finite-value check (a Python branch)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float()


def export_metadata(model: nn.Module, name: str | None = None) -> dict[str, str]:
    """What an exported file records about its network (strings, ONNX ``metadata_props`` style)."""
    from lookalike import __version__

    spec = getattr(model, "input_spec", None)
    return {
        "lookalike.name": name or type(model).__name__.lower(),
        "lookalike.dim": str(getattr(model, "dim", "")),
        "lookalike.input": spec.describe() if spec is not None else "",
        "lookalike.patch_extent": str(getattr(model, "patch_extent", "") or ""),
        "lookalike.version": __version__,
    }


def _example(model: nn.Module, batch: int) -> torch.Tensor:
    spec = getattr(model, "input_spec", None)
    if spec is None:
        raise OptionError(f"{type(model).__name__}: expected a descriptor with an input_spec")
    generator = torch.Generator().manual_seed(0)
    return torch.rand(spec.shape(batch), generator=generator)


def _check_path(path: str | os.PathLike[str], format: str) -> Path:
    out = Path(path).expanduser()
    if out.suffix.lower() not in EXPORT_FORMATS[format]:
        raise OptionError(
            f"out: expected a file ending in {' or '.join(EXPORT_FORMATS[format])} for {format}, "
            f"got {out.name!r}"
        )
    return out


def export_descriptor(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    example_batch: int = 2,
) -> Path:
    """Write ``model`` as an ONNX or TorchScript file with a dynamic batch (module Convention).

    Args:
        model: a descriptor ``nn.Module`` with ``input_spec`` (e.g. ``lookalike.create(...)``).
        path: the output file (``.onnx`` for ONNX; ``.pt`` or ``.ts`` for TorchScript); its folder
            must exist.
        format: ``"onnx"`` or ``"torchscript"``.
        name: registry name recorded in the file's metadata.
        opset: ONNX opset.
        example_batch: batch size of the tracing example (any size works afterwards).

    Returns:
        The written path.

    Raises:
        OptionError: unknown format, wrong suffix, or a model without ``input_spec``.

    Example:
        >>> import tempfile, lookalike
        >>> from pathlib import Path
        >>> net = lookalike.create("descriptor", "hardnet")
        >>> folder = Path(tempfile.mkdtemp())
        >>> export_descriptor(net, folder / "hardnet.pt", format="torchscript").name
        'hardnet.pt'
        >>> rows = torch.jit.load(folder / "hardnet.pt")(torch.rand(5, 1, 32, 32))
        >>> round(float(rows.norm(dim=1).mean()), 4)
        1.0
    """
    check_option(format, list(EXPORT_FORMATS), "format")
    check_positive(example_batch, "example_batch")
    out = _check_path(path, format)
    if not isinstance(model, nn.Module):
        raise OptionError(f"model: expected an nn.Module descriptor, got {type(model).__name__}")
    example = _example(model, int(example_batch))
    net = copy.deepcopy(model).float().eval().requires_grad_(False)
    if hasattr(net, "validate"):
        net.validate = False  # the finite check is a data-dependent Python branch
    wrapper = _Exported(net).eval()
    meta = export_metadata(model, name)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        if format == "onnx":
            _export_onnx(wrapper, example, out, opset, meta)
        else:
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            torch.jit.save(traced, str(out), _extra_files={"lookalike.json": json.dumps(meta)})
    return out


def _export_onnx(
    wrapper: nn.Module, example: torch.Tensor, out: Path, opset: int, meta: dict[str, str]
) -> None:
    torch.onnx.export(
        wrapper,
        (example,),
        str(out),
        dynamo=False,
        input_names=["input"],
        output_names=["descriptors"],
        dynamic_axes={"input": {0: "batch"}, "descriptors": {0: "batch"}},
        opset_version=int(opset),
    )
    try:
        import onnx
    except ImportError:  # the graph is written; metadata needs the onnx package
        return
    proto = onnx.load(str(out))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
