"""Channel pruning of a trained HardNet trunk: a narrower network that starts from a wide one's weights.

Every 3×3 convolution of the trunk is followed by ``BatchNorm2d(affine=False)`` and ReLU, so each channel
reaches the next convolution with unit variance whatever its filter's scale: a channel matters through the
weights that *read* it. :func:`prune_hardnet` keeps, in every 3×3 layer, the channels whose input weights in
the next convolution have the largest L1 norm (the next layer's view of the channel, as ThiNet-style
criteria; the filter's own norm says nothing here), slices the filters, the batch-norm statistics and the
next layer's input weights to match, and leaves the final convolution's outputs (the descriptor) whole.

The pruned network is a starting point for fine-tuning (``lookalike prune`` then ``lookalike train`` with the
pruned file as ``model.name``), not a finished model: removing channels shifts the next layer's statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookalike.core.errors import OptionError
from lookalike.layers._common import check_int

__all__ = ["channel_importance", "prune_hardnet", "prune_weights"]


def _trunk_layers(model: nn.Module) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d]]:
    """The convolutions and batch norms of a HardNet-family ``features`` stack, in order."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise OptionError(
            f"model: expected a HardNet-family network with a features stack, got {type(model).__name__}"
        )
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    norms = [m for m in features if isinstance(m, nn.BatchNorm2d)]
    if len(convs) < 2 or len(convs) != len(norms) or any(c.bias is not None for c in convs):
        raise OptionError(
            "model: expected a trunk of bias-free convolutions, each with a batch norm"
        )
    return convs, norms


def channel_importance(model: nn.Module) -> list[torch.Tensor]:
    """Per 3×3 layer, the L1 norm of each output channel's input weights in the next convolution.

    Returns:
        one ``(C_i,)`` float tensor per convolution but the last (the descriptor layer is never pruned).

    Example:
        >>> from lookalike.descriptors.patch.hardnet import HardNet
        >>> [tuple(s.shape) for s in channel_importance(HardNet(width=8))]
        [(8,), (8,), (16,), (16,), (32,), (32,)]
    """
    convs, _ = _trunk_layers(model)
    return [nxt.weight.detach().abs().sum(dim=(0, 2, 3)) for nxt in convs[1:]]


def prune_hardnet(model: nn.Module, *, width: int) -> nn.Module:
    """A :class:`~lookalike.descriptors.patch.hardnet.HardNet` of ``width`` holding ``model``'s strongest channels.

    Args:
        model: a ``HardNet`` (or a module with the same ``features`` layout, e.g. ``hardnet_gated``'s
            trunk) of width ``>= width``.
        width: first-stage channels of the result (stages ``width, 2·width, 4·width``).

    Returns:
        A new ``HardNet(width=width)`` in eval mode, same ``dim``, ``patch_size``, dropout and
        ``patch_extent`` as ``model``. Channels keep their order. With ``width`` equal to the model's,
        the copy computes the same function.

    Raises:
        OptionError: ``width`` is not an integer in ``[1, model width]``, or ``model`` has another layout.

    Example:
        >>> import torch
        >>> from lookalike.descriptors.patch.hardnet import HardNet
        >>> wide = HardNet(width=16).eval()
        >>> slim = prune_hardnet(wide, width=8)
        >>> slim(torch.rand(4, 1, 32, 32)).shape
        torch.Size([4, 128])
    """
    from lookalike.descriptors.patch.hardnet import HardNet

    convs, norms = _trunk_layers(model)
    source_width = convs[0].out_channels
    width = check_int(width, "width")
    if width > source_width:
        raise OptionError(f"width: expected at most the model's width {source_width}, got {width}")
    dropout = next((m.p for m in model.features if isinstance(m, nn.Dropout)), 0.3)
    out = HardNet(
        dim=convs[-1].out_channels,
        dropout=dropout,
        patch_size=getattr(model, "patch_size", 32),
        width=width,
    )
    new_convs, new_norms = _trunk_layers(out)
    if [c.weight.shape[2:] for c in new_convs] != [c.weight.shape[2:] for c in convs]:
        raise OptionError("model: its trunk does not have HardNet's layout")
    have = [c.out_channels for c in convs]
    want = [c.out_channels for c in new_convs]
    if any(w > h for w, h in zip(want, have)):
        raise OptionError(f"width: {width} needs layer widths {want}, the model has only {have}")
    scores = channel_importance(model)
    kept = torch.arange(1)
    with torch.no_grad():
        for i, (src, dst) in enumerate(zip(convs, new_convs)):
            if i < len(scores):
                keep = torch.topk(scores[i], dst.out_channels, sorted=False).indices.sort().values
            else:
                keep = torch.arange(src.out_channels)
            dst.weight.copy_(src.weight[keep][:, kept])
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                stat = getattr(norms[i], name)
                getattr(new_norms[i], name).copy_(stat if stat.dim() == 0 else stat[keep])
            kept = keep
    if hasattr(model, "patch_extent"):
        out.patch_extent = model.patch_extent
    return out.eval()


def prune_weights(
    out: str | Path, *, base: str = "hardnet_gated:bundled", width: int = 20
) -> dict[str, Any]:
    """Prune the HardNet trunk of ``base`` (``NAME:WEIGHTS``) to ``width`` and save ``hardnet`` weights.

    The file's ``training`` metadata names the source, the criterion and the width, and carries the
    source's ``patch_geometry`` so the pipeline cuts patches as before.

    Returns:
        The ``training`` metadata written.
    """
    import lookalike
    from lookalike._registry import get_entry, resolve_weights, split_spec
    from lookalike.core.weights import read_metadata, save_weights, sha256_file

    name, weights = split_spec(base)
    if not weights:
        raise OptionError(f"base: expected NAME:WEIGHTS, got {base!r}")
    source = lookalike.create("descriptor", name, weights=weights)
    pruned = prune_hardnet(source, width=width)
    path = resolve_weights(get_entry("descriptor", name), weights)
    meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    training: dict[str, Any] = {
        "pruned_from": base,
        "source_sha256": sha256_file(path),
        "criterion": "next-layer input-weight L1 per channel (lookalike.train.prune)",
        "width": int(width),
    }
    geometry = (meta.get("training") or {}).get("patch_geometry")
    if geometry:
        training["patch_geometry"] = geometry
    kwargs = {"dim": pruned.dim, "patch_size": pruned.patch_size, "width": int(width)}
    save_weights(pruned, out, kind="descriptor", name="hardnet", kwargs=kwargs, training=training)
    return training
