"""BatchNorm folding for inference, shared by the patch networks and the timm image backbones.

- :func:`fold_batchnorm`: one ``Conv2d`` + ``BatchNorm2d`` pair -> one ``Conv2d`` (pure).
- :func:`fold_graph_batchnorm`: every convolution followed by a BatchNorm in a traced module folded,
  including timm's fused ``BatchNormAct2d`` (BatchNorm + drop + activation in one module, as in
  EfficientNet/MobileNet/RegNet), which ``torch.fx.experimental.optimization.fuse`` does not recognise:
  the BatchNorm goes into the convolution and the module is replaced by its drop + activation.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from lookalike.core.errors import OptionError

__all__ = ["fold_batchnorm", "fold_graph_batchnorm"]

log = logging.getLogger(__name__)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    r"""A new convolution equal to ``bn(conv(x))`` with ``bn`` in evaluation mode.

    With :math:`s = \gamma / \sqrt{\sigma^2 + \epsilon}` (``γ = 1``, ``β = 0`` for ``affine=False``),
    the folded weight is :math:`s \cdot W` and the bias :math:`s (b - \mu) + \beta`. The arithmetic is
    done in float64 and cast back to the convolution's dtype. Neither input is modified.

    Args:
        conv: a ``Conv2d`` (any stride, padding, groups; with or without bias).
        bn: a ``BatchNorm2d`` over ``conv.out_channels`` channels that tracks running statistics.

    Returns:
        A ``Conv2d`` with a bias, on the convolution's device and dtype.

    Raises:
        OptionError: ``bn`` has no running statistics or the wrong number of channels.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> conv, bn = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4).eval()
        >>> _ = bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        >>> x = torch.rand(2, 1, 8, 8)
        >>> torch.allclose(fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-6)
        True
    """
    if bn.running_mean is None or bn.running_var is None:
        raise OptionError("bn: cannot fold a BatchNorm2d without running statistics")
    if bn.num_features != conv.out_channels:
        raise OptionError(
            f"bn: expected {conv.out_channels} channels to match the convolution, got {bn.num_features}"
        )
    f64 = torch.float64
    scale = (bn.running_var.to(f64) + bn.eps).rsqrt()
    shift = -bn.running_mean.to(f64) * scale
    if bn.affine:
        scale = scale * bn.weight.detach().to(f64)
        shift = shift * bn.weight.detach().to(f64) + bn.bias.detach().to(f64)
    if conv.bias is not None:
        shift = shift + conv.bias.detach().to(f64) * scale
    weight = conv.weight.detach().to(f64) * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    folded = copy.deepcopy(conv)
    dtype = conv.weight.dtype
    folded.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    folded.bias = nn.Parameter(shift.to(dtype), requires_grad=conv.weight.requires_grad)
    return folded


class _BatchNormLeaves(torch.fx.Tracer):
    """Traces through everything except BatchNorm modules (timm's BatchNormAct2d included)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.BatchNorm2d) or super().is_leaf_module(m, qualname)


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a BatchNorm module once its normalisation moved into the convolution."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    rest = [m for m in (drop, act) if m is not None and not isinstance(m, nn.Identity)]
    return nn.Sequential(*rest) if rest else nn.Identity()


def _set_module(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def fold_graph_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode ``torch.fx.GraphModule`` equal to ``module`` with every foldable BatchNorm folded.

    A BatchNorm is folded when its input is a ``Conv2d`` module's output used by nothing else; its
    drop and activation (timm's ``BatchNormAct2d``) are kept. ``module`` is not modified.

    Raises:
        Whatever ``torch.fx`` raises when ``module`` cannot be traced (data-dependent control flow).

    Example:
        >>> import timm, torch
        >>> net = timm.create_model("efficientnet_b0", features_only=True, pretrained=False).eval()
        >>> for m in net.modules():
        ...     if isinstance(m, torch.nn.BatchNorm2d):
        ...         _ = m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2.0)
        >>> folded = fold_graph_batchnorm(net)
        >>> any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        False
        >>> x = torch.rand(1, 3, 64, 64)
        >>> all(torch.allclose(a, b, atol=1e-4) for a, b in zip(folded(x), net(x)))
        True
    """
    root = copy.deepcopy(module).eval()
    graph = _BatchNormLeaves().trace(root)
    gm = torch.fx.GraphModule(root, graph)
    modules = dict(gm.named_modules())
    folded = 0
    for node in gm.graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or not node.args:
            continue
        src = node.args[0]
        conv = modules.get(src.target) if getattr(src, "op", None) == "call_module" else None
        if not isinstance(conv, nn.Conv2d) or len(src.users) != 1:
            continue
        _set_module(gm, src.target, fold_batchnorm(conv, bn))
        _set_module(gm, node.target, _after_norm(bn))
        folded += 1
    gm.recompile()
    log.debug("folded %d BatchNorm modules", folded)
    return gm.eval()
