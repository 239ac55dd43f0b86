"""Training augmentations of person crops, and a re-ID training set that applies them.

- :func:`augment_crops`: the usual re-ID trio on a ``(B, 3, H, W)`` batch in [0, 1]: horizontal flip,
  zero padding + random crop back to the size ("padding-crop"), and random erasing (Zhong et al.,
  "Random Erasing Data Augmentation", AAAI 2020: a rectangle of random area and aspect ratio filled
  with the ImageNet mean colour, as in the "bag of tricks" re-ID baseline).
- :class:`AugmentedReidSet` (registered as dataset ``reid_augmented``): any registered re-ID training
  set (``viper``, ``market1501``, ...) whose items are augmented; ``labels``, ``num_classes``,
  ``ids`` and ``cams`` pass through, so the ``pk`` and ``labelled`` tasks read it unchanged.

Convention:
    Random draws come from the global torch RNG, which the training engine seeds with the recipe's
    seed and saves in its checkpoints (so resuming repeats the same augmentations).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lookalike._registry import create, register
from lookalike.core.check import check_int, check_shape
from lookalike.core.errors import OptionError, ShapeError

__all__ = ["ERASE_FILL", "AugmentedReidSet", "augment_crops", "random_erasing", "random_windows"]

#: Fill colour of erased rectangles (the ImageNet mean, RGB in [0, 1]).
ERASE_FILL = (0.485, 0.456, 0.406)


def _probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise OptionError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _check_fill(fill: Any, channels: int) -> torch.Tensor:
    """``fill`` if it is a ``(channels,)`` tensor, else a ShapeError naming what it is."""
    if not isinstance(fill, torch.Tensor) or fill.shape != (channels,):
        got = tuple(fill.shape) if isinstance(fill, torch.Tensor) else type(fill).__name__
        raise ShapeError(f"fill: expected a tensor of shape ({channels},), got {got}")
    return fill


def _uniform_int(high: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One integer uniform in ``[0, high]`` per entry of the integer tensor ``high`` (>= 0)."""
    draw = torch.rand(high.shape, generator=generator) * (high + 1).to(torch.float32)
    return torch.minimum(draw.floor().to(torch.int64), high)


def random_erasing(
    crops: torch.Tensor,
    *,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    min_aspect: float = 0.3,
    fill: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Erase one random rectangle of each crop with probability ``p`` (a new tensor).

    The rectangle covers a fraction of the crop drawn uniformly in ``area``, with an aspect ratio
    ``h / w`` log-uniform in ``[min_aspect, 1 / min_aspect]``; it is filled with :data:`ERASE_FILL`
    (or with ``fill``: one value per channel, for crops of any channel count such as feature
    maps). Up to 100 draws are made per crop and the first that fits the crop is used; when none
    fits the crop is left as is. The whole batch is drawn at once (no loop over crops).

    Example:
        >>> import torch
        >>> out = random_erasing(torch.ones(2, 3, 32, 16), p=1.0, generator=torch.Generator().manual_seed(0))
        >>> bool((out < 1).any(dim=1).flatten(1).any(dim=1).all())  # every crop got a rectangle
        True
    """
    dims = check_shape(crops, ["B", "C" if fill is not None else "3", "H", "W"], "crops")
    p = _probability(p, "p")
    fill = torch.tensor(ERASE_FILL) if fill is None else _check_fill(fill, dims["C"])
    count, height, width = dims["B"], dims["H"], dims["W"]
    chosen = torch.rand(count, generator=generator) < p
    target = torch.empty(count, 100).uniform_(*area, generator=generator) * (height * width)
    log_aspect = -torch.log(torch.tensor(float(min_aspect)))
    aspect = torch.exp(
        torch.empty(count, 100).uniform_(-log_aspect, log_aspect, generator=generator)
    )
    h = torch.round(torch.sqrt(target * aspect)).to(torch.int64)
    w = torch.round(torch.sqrt(target / aspect)).to(torch.int64)
    fits = (h > 0) & (h < height) & (w > 0) & (w < width)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first draw that fits
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    chosen &= fits.any(dim=1)
    h, w = torch.where(chosen, h, 0), torch.where(chosen, w, 0)
    top = _uniform_int(height - h, generator)
    left = _uniform_int(width - w, generator)
    rows = torch.arange(height)[None, :] - top[:, None]  # (B, H), 0 at the rectangle's top
    cols = torch.arange(width)[None, :] - left[:, None]  # (B, W), 0 at its left side
    in_rows = (rows >= 0) & (rows < h[:, None])
    in_cols = (cols >= 0) & (cols < w[:, None])
    inside = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    fill = fill.to(dtype=crops.dtype, device=crops.device).view(1, -1, 1, 1)
    return torch.where(inside[:, None].to(crops.device), fill, crops)


def random_windows(
    padded: torch.Tensor, size: Sequence[int], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One ``size = (h, w)`` window of every ``(B, C, H, W)`` map, its corner uniform over the
    ``(H - h + 1) x (W - w + 1)`` positions (one ``gather``, no loop over the batch).

    Example:
        >>> import torch
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> random_windows(x, (4, 4)).equal(x), tuple(random_windows(x, (2, 3)).shape)
        (True, (1, 1, 2, 3))
    """
    dims = check_shape(padded, ["B", "C", "H", "W"], "padded")
    count, channels, full_w = dims["B"], dims["C"], dims["W"]
    height, width = (int(v) for v in size)
    if not (0 < height <= dims["H"] and 0 < width <= full_w):
        raise ShapeError(
            f"size: expected a window within the {dims['H']} x {full_w} maps, got {tuple(size)}"
        )
    high = torch.tensor([dims["H"] - height, full_w - width])
    shifts = _uniform_int(high.expand(count, 2), generator).to(padded.device)
    rows = shifts[:, :1] + torch.arange(height, device=padded.device)  # (B, h)
    cols = shifts[:, 1:] + torch.arange(width, device=padded.device)  # (B, w)
    flat = (rows[:, :, None] * full_w + cols[:, None, :]).reshape(count, 1, height * width)
    flat = flat.expand(count, channels, height * width)
    return padded.reshape(count, channels, -1).gather(2, flat).view(count, channels, height, width)


def augment_crops(
    crops: torch.Tensor,
    *,
    flip: float = 0.5,
    pad: int = 10,
    erase: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flip, pad-and-crop and randomly erase a ``(B, 3, H, W)`` batch of crops in [0, 1].

    Every random choice is drawn for the whole batch at once; augmenting a batch costs about
    what augmenting one crop does (:meth:`AugmentedReidSet.__getitems__` uses that).

    Args:
        crops: the batch (not modified).
        flip: probability of a horizontal flip.
        pad: zero padding on every side before a random ``H x W`` crop (0: no shift).
        erase: probability of random erasing (:func:`random_erasing`).
        generator: torch generator (default: the global RNG).

    Example:
        >>> import torch
        >>> x = torch.rand(4, 3, 64, 32)
        >>> augment_crops(x, flip=0.0, pad=0, erase=0.0).equal(x)
        True
    """
    dims = check_shape(crops, ["B", "3", "H", "W"], "crops")
    flip = _probability(flip, "flip")
    check_int(pad, "pad", 0)
    count, height, width = dims["B"], dims["H"], dims["W"]
    flips = (torch.rand(count, generator=generator) < flip).to(crops.device)
    out = torch.where(flips[:, None, None, None], crops.flip(-1), crops)
    if pad:
        padded = torch.nn.functional.pad(out, (pad, pad, pad, pad))
        out = random_windows(padded, (height, width), generator=generator)
    return random_erasing(out, p=erase, generator=generator) if erase else out


class AugmentedReidSet(Dataset):
    """A re-ID training set whose crops are augmented by :func:`augment_crops` on every read.

    Args:
        data: a map-style set of ``(crop (3, H, W), label)`` with ``labels`` and ``num_classes``
            (e.g. :class:`~lookalike.data.reid.datasets.ReidTrainSet`).
        flip, pad, erase: see :func:`augment_crops`.
        cache: read every crop once and keep the batch in memory (small sets such as VIPeR).

    Example:
        >>> import torch
        >>> class Toy(torch.utils.data.Dataset):
        ...     labels, num_classes = [0, 1], 2
        ...     def __len__(self): return 2
        ...     def __getitem__(self, i): return torch.full((3, 16, 8), 0.5), i
        >>> aug = AugmentedReidSet(Toy(), pad=2, cache=True)
        >>> crop, label = aug[1]
        >>> tuple(crop.shape), label, aug.num_classes
        ((3, 16, 8), 1, 2)
    """

    def __init__(
        self,
        data: Any,
        *,
        flip: float = 0.5,
        pad: int = 10,
        erase: float = 0.5,
        cache: bool = False,
    ) -> None:
        super().__init__()
        for attr in ("labels", "num_classes", "__getitem__", "__len__"):
            if not hasattr(data, attr):
                raise OptionError(
                    f"data: expected a labelled data set, {type(data).__name__} has no {attr}"
                )
        augment_crops(
            torch.zeros(1, 3, 8, 8), flip=flip, pad=pad, erase=erase
        )  # checks the options
        self.data = data
        self.flip, self.pad, self.erase = flip, pad, erase
        self.labels, self.num_classes = data.labels, data.num_classes
        self.ids, self.cams = getattr(data, "ids", None), getattr(data, "cams", None)
        self._cache: torch.Tensor | None = None
        if cache:
            self._cache = torch.stack([torch.as_tensor(data[i][0]) for i in range(len(data))])

    def __len__(self) -> int:
        return len(self.data)

    def crops(self) -> torch.Tensor:
        """Every crop, un-augmented, as one ``(N, 3, H, W)`` batch (read now unless cached)."""
        if self._cache is not None:
            return self._cache
        return torch.stack([torch.as_tensor(self.data[i][0]) for i in range(len(self.data))])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """The items at ``indices``, augmented as one batch (torch's batched-fetch convention,
        which :class:`torch.utils.data.DataLoader` and the ``labelled``/``pk`` tasks use)."""
        if self._cache is not None:
            crops = self._cache[torch.as_tensor(list(indices), dtype=torch.int64)]
            labels = [int(self.labels[i]) for i in indices]
        else:
            items = [self.data[i] for i in indices]
            crops = torch.stack([torch.as_tensor(crop) for crop, _ in items])
            labels = [int(label) for _, label in items]
        out = augment_crops(crops, flip=self.flip, pad=self.pad, erase=self.erase)
        return list(zip(out.unbind(0), labels, strict=True))


@register("dataset", "reid_augmented")
def reid_augmented(
    *,
    dataset: str = "viper",
    root: str | Path | None = None,
    split: int | None = None,
    variant: str | None = None,
    size: Sequence[int] | None = None,
    flip: float = 0.5,
    pad: int = 10,
    erase: float = 0.5,
    cache: bool = False,
    seed: int = 0,
) -> AugmentedReidSet:
    """A registered re-ID training set (``dataset``: ``viper``, ``market1501``, ...) with flip,
    padding-crop and random erasing.

    ``split`` (VIPeR: the training ids of split ``split`` only), ``variant`` (CUHK03) and ``size``
    are passed to the data set when given; ``seed`` is accepted for the training tasks (the
    augmentations draw from the engine-seeded global torch RNG).
    """
    kwargs: dict[str, Any] = {"root": root}
    for key, value in (("split", split), ("variant", variant), ("size", size)):
        if value is not None:
            kwargs[key] = tuple(value) if key == "size" else value
    base = create("dataset", dataset, **kwargs)
    return AugmentedReidSet(base, flip=flip, pad=pad, erase=erase, cache=cache)
