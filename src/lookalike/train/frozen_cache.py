"""The frozen-prefix cache of the training engine (recipe key ``cache_frozen``).

A re-ID recipe that freezes the first blocks of its network (``freeze: [trunk_net.0, trunk_net.1]``)
recomputes them for every batch, although their weights never change: on the 2-core CPU that is
about 40 % of a VIPeR training step. With ``cache_frozen: true`` the engine instead

1. re-estimates the frozen blocks' BatchNorm statistics on the training crops and their mirrors
   (train-mode passes over the set, the batches' statistics averaged; without the cache those
   statistics follow the training batches), then keeps the blocks in eval mode;
2. runs them once over every crop, zero padded and mirrored, and keeps the maps
   (:class:`~lookalike.data.reid.feature_cache.FeatureCacheSet`, which flips, shifts and erases
   them in feature space);
3. trains the rest of the network on those maps (:class:`AfterPrefix`).

The saved weights are the whole network, its frozen blocks included (with the re-estimated
statistics), so inference is unchanged. The frozen prefix is the longest run of leading
:meth:`~lookalike.descriptors.reid._backbone.ReidNetwork.blocks` whose parameters are all frozen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lookalike.core.errors import OptionError, ShapeError
from lookalike.data.reid.augment import ERASE_FILL, AugmentedReidSet
from lookalike.data.reid.feature_cache import FeatureCacheSet

__all__ = ["AfterPrefix", "build_feature_cache", "frozen_prefix_length"]

#: Largest cache built without complaint, in GiB (VIPeR's is 0.19 GiB).
MAX_CACHE_GIB = 8.0


def frozen_prefix_length(model: nn.Module) -> int:
    """How many leading blocks of ``model.blocks()`` have no trainable parameter.

    Raises:
        OptionError: the model does not list its blocks (not a re-ID network).
    """
    blocks = getattr(model, "blocks", None)
    if not callable(blocks):
        raise OptionError(
            f"cache_frozen: expected a re-ID network that lists its blocks, got {type(model).__name__}"
        )
    count = 0
    for block in blocks():
        if any(p.requires_grad for p in block.parameters()):
            break
        count += 1
    return count


class AfterPrefix(nn.Module):
    """``model`` run from the output of its first ``start`` blocks: maps to L2-normalised rows."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        if fmap.device.type == "cpu" and getattr(self.model, "channels_last", False):
            fmap = fmap.contiguous(memory_format=torch.channels_last)  # as normalize_input does
        return self.model.forward_head(self.model.embed_after(fmap, self.start))


@torch.no_grad()
def _adapt_batchnorm(prefix: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """BatchNorm statistics of ``prefix`` re-estimated on ``batches`` (train-mode passes): the
    batches' statistics averaged with weights proportional to their sizes, so the first layer's
    mean is that of every sample. Leaves ``prefix`` in eval mode."""
    norms = [m for m in prefix.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    prefix.train()
    seen = 0
    for batch in batches:
        seen += len(batch)
        for m in norms:  # running <- running + (n / seen) (batch - running): the weighted mean
            m.momentum = len(batch) / seen
        prefix(batch)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    prefix.eval()


def _crops(data: Any) -> torch.Tensor:
    if not isinstance(data, AugmentedReidSet):
        raise OptionError(
            "cache_frozen: expected an augmented re-ID training set (dataset reid_augmented), "
            f"got {type(data).__name__}"
        )
    return data.crops()


@torch.no_grad()
def build_feature_cache(
    model: nn.Module, data: Any, *, device: torch.device, batch_size: int = 64
) -> tuple[FeatureCacheSet, int]:
    """The cached training set of ``model``'s frozen prefix, and the prefix's length in blocks.

    Args:
        model: a re-ID network (:meth:`blocks`, :meth:`embed_after`) whose leading blocks are frozen.
        data: the recipe's ``reid_augmented`` set (its crops, at the network's ``input_size``, and its
            ``flip``, ``pad`` and ``erase``; the padding is rounded to whole cells of the prefix's
            stride).
        device: where the prefix runs (the maps are kept in CPU memory).
        batch_size: crops per forward pass.

    Raises:
        OptionError: no frozen leading block, a data set that is not ``reid_augmented``, or a cache
            over :data:`MAX_CACHE_GIB`. ShapeError: crops not at the network's ``input_size``, or a
            prefix whose output does not tile the crop.
    """
    start = frozen_prefix_length(model)
    if start == 0:
        first = type(model.blocks()[0]).__name__
        raise OptionError(
            "cache_frozen: expected the recipe's freeze to cover the network's first block(s) "
            f"(the first is a {first}), got no frozen leading block"
        )
    crops = _crops(data)
    size = tuple(getattr(model, "input_size", crops.shape[-2:]))
    if tuple(crops.shape[-2:]) != size:
        raise ShapeError(
            f"cache_frozen: expected training crops of the network's input size {size}, "
            f"got {tuple(crops.shape[-2:])}"
        )
    prefix = nn.Sequential(*model.blocks()[:start])
    batches = [crops[i : i + batch_size].to(device) for i in range(0, len(crops), batch_size)]
    _adapt_batchnorm(prefix, (model.normalize_input(torch.cat([b, b.flip(-1)])) for b in batches))
    plain = prefix(model.normalize_input(crops[:1].to(device)))
    cells = plain.shape[-2:]
    stride = size[0] // cells[0]
    if cells[0] * stride != size[0] or cells[1] * stride != size[1]:
        raise ShapeError(
            f"cache_frozen: expected the prefix's map to tile the {size} crop, got {tuple(cells)}"
        )
    pad = round(data.pad / stride) if data.pad else 0
    rows, cols = cells[0] + 2 * pad, cells[1] + 2 * pad
    gib = len(crops) * 2 * plain.shape[1] * rows * cols * 4 / 2**30
    if gib > MAX_CACHE_GIB:
        raise OptionError(
            f"cache_frozen: the cache of {len(crops)} crops would take {gib:.1f} GiB, expected at "
            f"most {MAX_CACHE_GIB} GiB: train without cache_frozen"
        )
    maps = torch.empty(len(crops), 2, plain.shape[1], rows, cols)
    border = (pad * stride,) * 4
    for i, batch in enumerate(batches):
        padded = torch.nn.functional.pad(batch, border)
        for side, view in enumerate((padded, padded.flip(-1))):
            maps[i * batch_size : i * batch_size + len(batch), side] = (
                prefix(model.normalize_input(view)).float().cpu()
            )
    colour = torch.tensor(ERASE_FILL, device=device).view(1, 3, 1, 1).expand(1, 3, *size)
    fill = prefix(model.normalize_input(colour)).float()[0, :, cells[0] // 2, cells[1] // 2].cpu()
    cached = FeatureCacheSet(
        maps,
        size=tuple(cells),
        labels=data.labels,
        num_classes=data.num_classes,
        fill=fill,
        flip=data.flip,
        erase=data.erase,
        ids=data.ids,
        cams=data.cams,
    )
    return cached, start
