"""Labelled image sets for training global descriptors: one folder per class (``image_folders``).

Layout: ``<root>/<class name>/<image>.jpg`` (any image suffix OpenCV reads; nested folders below a class
folder belong to that class). Samples are ``(image (3, S, S) float32 in [0, 1], label)`` pairs, the form
the ``labelled`` and ``pk`` training tasks read. :class:`LabelledImages` is the shared base of this
reader and of :mod:`lookalike.data.gldv2`.

Augmentation (``augment=True``): torchvision v2 shift / scale / rotate (``RandomAffine``), a random
resized crop, colour jitter and cutout (``RandomErasing``), drawn from the global torch RNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lookalike._registry import register
from lookalike.core.check import check_int
from lookalike.core.errors import DataNotFoundError

__all__ = ["IMAGE_SUFFIXES", "ImageFolders", "LabelledImages", "augmentation", "list_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files below ``folder`` (recursively), sorted by path."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def augmentation(size: int, *, strength: float = 1.0):
    """The training augmentation of the global-descriptor recipes (torchvision v2), on ``(3, H, W)`` floats.

    Shift ±10 %, scale 0.8-1.2 and rotation ±10 degrees (times ``strength``), random resized crop to
    ``size``, colour jitter, and cutout of up to a fifth of the image.
    """
    from torchvision.transforms import v2

    s = float(strength)
    return v2.Compose(
        [
            v2.RandomAffine(
                degrees=10 * s, translate=(0.1 * s, 0.1 * s), scale=(1 - 0.2 * s, 1 + 0.2 * s)
            ),
            v2.RandomResizedCrop(size, scale=(max(0.05, 1 - 0.6 * s), 1.0), antialias=True),
            v2.ColorJitter(0.3 * s, 0.3 * s, 0.3 * s, 0.05 * s),
            v2.RandomErasing(p=0.5, scale=(0.02, 0.2 * max(s, 0.1)), value=0.0),
        ]
    )


class LabelledImages(Dataset):
    """Images with integer labels in ``[0, num_classes)``, resized to ``image_size`` squares.

    Attributes:
        paths: image files.
        labels: ``(N,)`` int64 labels.
        classes: class names, ``classes[label]``.
        num_classes: number of classes.
        class_counts: ``(C,)`` images per class (for dynamic ArcFace margins).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        classes: Sequence[str],
        *,
        image_size: int,
        augment: bool,
    ) -> None:
        check_int(image_size, "image_size", 8)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.class_counts = np.bincount(self.labels, minlength=self.num_classes)
        self.image_size = image_size
        self.augment = augmentation(image_size) if augment else None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        """``(3, image_size, image_size)`` float32 image in [0, 1] (resized, not augmented)."""
        from lookalike.data.images import read_image

        rgb = read_image(self.paths[index], gray=False)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
        size = (self.image_size, self.image_size)
        return F.interpolate(
            x[None], size=size, mode="bilinear", antialias=True, align_corners=False
        )[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.load(int(index))
        if self.augment is not None:
            x = self.augment(x).clamp_(0.0, 1.0)
        return x, int(self.labels[index])


@register("dataset", "image_folders")
class ImageFolders(LabelledImages):
    """One folder per class below ``root``; the class names sorted give the labels.

    Args:
        root: the folder of class folders.
        image_size: side of the square samples.
        augment: apply :func:`augmentation`.
        min_images: leave out classes with fewer images.
        seed: the training seed the engine passes (augmentation draws from the torch RNG, which
            the engine seeds with it).

    Raises:
        DataNotFoundError: ``root`` is missing or holds no class folder with images.

    Example:
        >>> ImageFolders(root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lookalike.core.errors.DataNotFoundError: image folders: no such folder /nonexistent ...
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        image_size: int = 224,
        augment: bool = False,
        min_images: int = 1,
        seed: int = 0,
    ) -> None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataNotFoundError(
                f"image folders: no such folder {folder} (expected <root>/<class>/<image>.jpg)"
            )
        paths, labels, classes = [], [], []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = list_images(sub)
            if len(files) < max(1, min_images):
                continue
            classes.append(sub.name)
            paths += files
            labels += [len(classes) - 1] * len(files)
        if not classes:
            raise DataNotFoundError(f"image folders: no class folder with images below {folder}")
        self.root = folder
        self.seed = int(seed)
        super().__init__(paths, labels, classes, image_size=image_size, augment=augment)
