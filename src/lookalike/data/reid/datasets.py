"""Person crops as tensors, and the training parts of the re-ID benchmarks as registered data sets.

- :func:`load_crops`: files to a ``(N, 3, H, W)`` float32 batch in [0, 1] (RGB, resized).
- :class:`ReidTrainSet`: a map-style data set ``(crop (3, H, W), label)`` with ``labels`` in
  ``[0, num_classes)``, ``num_classes``, ``ids`` and ``cams``: what the ``labelled`` and ``pk`` training
  tasks read. Registered (kind ``dataset``) as ``market1501``, ``dukemtmc_reid``, ``msmt17``, ``cuhk03``,
  ``viper`` (``split`` k: the training ids of VIPeR split k only) and ``reid_folder``.

Convention:
    ``size`` is ``(height, width)``; crops are resized with bilinear interpolation (area when
    shrinking). The default is 256 x 128, the usual input of re-ID networks, and 128 x 48 for VIPeR
    (its native size). ``root`` defaults to the data root (``LOOKALIKE_DATA``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lookalike._registry import register
from lookalike.core.data import data_root
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.reid.readers import ReidImages, read_benchmark

__all__ = ["ReidTrainSet", "load_crops"]


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    ok = isinstance(size, Sequence) and len(size) == 2
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in size)
    if not ok:
        raise OptionError(f"size: expected (height, width) integers >= 8, got {size!r}")
    return int(size[0]), int(size[1])


def load_crops(paths: Sequence[str | Path], size: Sequence[int] = (128, 48)) -> torch.Tensor:
    """Read person crops as one ``(N, 3, H, W)`` float32 batch in [0, 1].

    Args:
        paths: image files.
        size: ``(height, width)`` of the batch.

    Raises:
        DataNotFoundError: a missing file. ImageError: an unreadable one.
    """
    import cv2

    from lookalike.data.images import read_image

    height, width = _check_size(size)
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        rgb = read_image(path, gray=False)
        if rgb.shape[:2] != (height, width):
            shrink = rgb.shape[0] > height and rgb.shape[1] > width
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (width, height), interpolation=interp)
        out[i] = rgb
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


class ReidTrainSet(Dataset):
    """Training crops of a benchmark, labels remapped to ``[0, num_classes)`` in identity order.

    Attributes:
        images: the :class:`~lookalike.data.reid.readers.ReidImages` read.
        labels: ``(N,)`` int64 class of every crop; ``ids``/``cams``: identities and cameras as released.
        num_classes: distinct identities.

    Example:
        >>> import numpy as np
        >>> from lookalike.data.reid.readers import ReidImages
        >>> data = ReidTrainSet(ReidImages(("a.png", "b.png"), [7, 3], [0, 1]))
        >>> data.labels.tolist(), data.num_classes
        ([1, 0], 2)
    """

    def __init__(self, images: ReidImages, *, size: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        if len(images) == 0:
            raise EmptyInputError("ReidTrainSet: expected at least one training image, got none")
        self.images = images
        self.size = _check_size(size)
        unique, labels = np.unique(images.ids, return_inverse=True)
        self.labels = labels.astype(np.int64)
        self.num_classes = len(unique)
        self.ids, self.cams = images.ids, images.cams

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        crop = load_crops([self.images.paths[index]], self.size)[0]
        return crop, int(self.labels[index])


def _train_set(name: str, root, size, **kwargs) -> ReidTrainSet:
    bench = read_benchmark(name, data_root() if root is None else root, **kwargs)
    return ReidTrainSet(bench.train, size=size)


@register("dataset", "market1501")
def market1501(*, root: str | Path | None = None, size: Sequence[int] = (256, 128)) -> ReidTrainSet:
    """Market-1501 training crops (751 ids; junk and distractors excluded)."""
    return _train_set("market1501", root, size)


@register("dataset", "dukemtmc_reid")
def dukemtmc_reid(
    *, root: str | Path | None = None, size: Sequence[int] = (256, 128)
) -> ReidTrainSet:
    """DukeMTMC-reID training crops (702 ids)."""
    return _train_set("duke", root, size)


@register("dataset", "msmt17")
def msmt17(*, root: str | Path | None = None, size: Sequence[int] = (256, 128)) -> ReidTrainSet:
    """MSMT17 training crops (train + val lists, 1,041 ids)."""
    return _train_set("msmt17", root, size)


@register("dataset", "cuhk03")
def cuhk03(
    *, root: str | Path | None = None, variant: str = "labeled", size: Sequence[int] = (256, 128)
) -> ReidTrainSet:
    """CUHK03 767/700 training crops (``variant`` ``labeled`` or ``detected``)."""
    return _train_set("cuhk03", root, size, variant=variant)


@register("dataset", "viper")
def viper(
    *, root: str | Path | None = None, split: int = 0, size: Sequence[int] = (128, 48)
) -> ReidTrainSet:
    """VIPeR training crops of split ``split``: its 316 training ids, both cameras (never its test ids)."""
    return _train_set("viper", root, size, split=split)


@register("dataset", "reid_folder")
def reid_folder(
    *, root: str | Path | None = None, size: Sequence[int] = (256, 128)
) -> ReidTrainSet:
    """Training crops of a custom folder layout (``<root>/train/<identity>/<image>``)."""
    return _train_set("folder", root, size)
