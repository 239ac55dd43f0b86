"""Training crops kept as the feature maps of a frozen network prefix, augmented in feature space.

When the first blocks of a re-ID network are frozen (``freeze`` in a recipe) and the training set is
small (VIPeR: 632 crops), recomputing those blocks for every batch is wasted work: on the 2-core
CPU the frozen stem and first stage of the VIPeR recipe's ResNet-18 cost about 40 % of a training
step. :class:`FeatureCacheSet` holds their output once for every crop, padded and in both
orientations, and applies the usual re-ID trio to the cached maps:

- flip: the cached map of the mirrored crop (exact);
- padding-crop: the crop is zero padded by ``pad_cells`` cells of the prefix's stride before the
  prefix runs, and a window of the map's size is cut at a random whole-cell offset (a shift of the
  crop by a multiple of the stride; the same as cutting the padded crop first except within the
  prefix's receptive field of the window's edge);
- erasing: :func:`~lookalike.data.reid.augment.random_erasing` on the map, the rectangle filled with
  the prefix's response to a crop of the erasing colour (feature-space erasing, as in DropBlock or
  Batch DropBlock, rather than the pixels' rectangle).

The training engine builds it (recipe key ``cache_frozen``, :mod:`lookalike.train.frozen_cache`);
the items are ``(feature map, label)`` and the network continues from the prefix's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from lookalike.core.check import check_int, check_shape
from lookalike.core.errors import ShapeError
from lookalike.data.reid.augment import (
    _check_fill,
    _probability,
    random_erasing,
    random_windows,
)

__all__ = ["FeatureCacheSet"]


class FeatureCacheSet(Dataset):
    """Cached ``(C, h, w)`` feature maps of a frozen prefix, flipped, shifted and erased on every read.

    Args:
        maps: ``(N, 2, C, h + 2 p, w + 2 p)`` float maps of every crop (index 1 of the second axis:
            the mirrored crop), computed from crops zero padded by ``p = pad_cells`` cells.
        size: ``(h, w)`` of the maps the network expects (the prefix's output for an unpadded crop).
        labels: ``(N,)`` class of every crop; ``num_classes``: their count.
        fill: ``(C,)`` the prefix's response to a crop of the erasing colour.
        flip, erase: probabilities of a flip and of an erased rectangle.
        ids, cams: passed through (as the re-ID training sets have them).

    Example:
        >>> import torch
        >>> maps = torch.rand(4, 2, 8, 6, 5)  # 4 crops, 8 channels, 4 x 3 maps padded by 1 cell
        >>> data = FeatureCacheSet(maps, size=(4, 3), labels=[0, 0, 1, 1], num_classes=2,
        ...                        fill=torch.zeros(8))
        >>> [(tuple(x.shape), y) for x, y in data.__getitems__([0, 3])]
        [((8, 4, 3), 0), ((8, 4, 3), 1)]
    """

    def __init__(
        self,
        maps: torch.Tensor,
        *,
        size: Sequence[int],
        labels: Any,
        num_classes: int,
        fill: torch.Tensor,
        flip: float = 0.5,
        erase: float = 0.5,
        ids: Any = None,
        cams: Any = None,
    ) -> None:
        super().__init__()
        dims = check_shape(maps, ["N", "2", "C", "H", "W"], "maps")
        height, width = (int(v) for v in size)
        if not (0 < height <= dims["H"] and 0 < width <= dims["W"]):
            raise ShapeError(
                f"size: expected a window within the {dims['H']} x {dims['W']} cached maps, "
                f"got {tuple(size)}"
            )
        if (dims["H"] - height) % 2 or (dims["W"] - width) % 2:
            raise ShapeError(
                f"maps: expected the same padding on both sides of {tuple(size)}, "
                f"got maps of {dims['H']} x {dims['W']}"
            )
        if len(labels) != dims["N"]:
            raise ShapeError(f"labels: expected {dims['N']} labels, got {len(labels)}")
        _check_fill(fill, dims["C"])
        self.flip, self.erase = _probability(flip, "flip"), _probability(erase, "erase")
        check_int(num_classes, "num_classes")
        self.maps, self.size, self.fill = maps, (height, width), fill
        self.labels, self.num_classes = labels, num_classes
        self.ids, self.cams = ids, cams

    @property
    def pad_cells(self) -> int:
        """Cells of padding on each side of the cached maps."""
        return (self.maps.shape[-2] - self.size[0]) // 2

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """The items at ``indices``, augmented as one batch (as
        :meth:`~lookalike.data.reid.augment.AugmentedReidSet.__getitems__`)."""
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        flips = (torch.rand(len(index)) < self.flip).to(torch.int64)
        maps = random_windows(self.maps[index, flips], self.size)
        if self.erase:
            maps = random_erasing(maps, p=self.erase, fill=self.fill)
        labels = [int(self.labels[i]) for i in indices]
        return list(zip(maps.unbind(0), labels, strict=True))
