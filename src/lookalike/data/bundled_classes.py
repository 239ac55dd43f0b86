"""A small labelled patch data set from the bundled photos (dataset ``bundled_classes``).

Every training photo is cut into a ``grid x grid`` partition; each cell is one class. A sample of a
class is a patch cut at a random centre inside the cell, with a random size and rotation, plus a
little noise. It needs no evaluation data and exists for the labelled and P×K training tasks (tests,
smoke runs); it is not a benchmark.

The photos of :data:`~lookalike.data.bundled_pairs.VALIDATION_PHOTOS` are never used for training:
:meth:`BundledClasses.validation_set` cuts its classes from them (classes never seen in training).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lookalike._registry import register
from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import OptionError
from lookalike.data.bundled import BUNDLED_PHOTOS, bundled_photos
from lookalike.data.bundled_pairs import VALIDATION_PHOTOS, ValidationSet
from lookalike.data.synth import cut_patches

__all__ = ["BundledClasses", "cut_class_patches"]

_VAL_SEED = 20_240_602


def _gray(name: str, max_side: int) -> np.ndarray:
    import cv2

    gray = bundled_photos([name])[0].gray_array
    side = max(gray.shape)
    if side > max_side:
        f = max_side / side
        gray = cv2.resize(
            gray, (round(gray.shape[1] * f), round(gray.shape[0] * f)), interpolation=cv2.INTER_AREA
        )
    return np.ascontiguousarray(gray, dtype=np.float32)


def cut_class_patches(
    gray: np.ndarray, *, grid: int, per_class: int, patch_size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray]:
    """Cut ``per_class`` random patches from every cell of a ``grid x grid`` partition of ``gray``.

    Returns:
        ``(patches (grid² * per_class, 1, P, P) float32 in [0, 1], cell (grid² * per_class,) int64)``,
        cells numbered row by row, the samples of a cell consecutive.

    Convention:
        A patch's centre is uniform in the cell's middle half, its half-width uniform in
        ``[0.25, 0.5]`` of the cell's shorter side, its rotation uniform in ``[-0.5, 0.5]`` rad;
        Gaussian noise of standard deviation 0.02 is added, then the patch is clipped to [0, 1].
    """
    h, w = gray.shape
    ch, cw = h / grid, w / grid
    cells = np.repeat(np.arange(grid * grid), per_class)
    row, col = cells // grid, cells % grid
    n = cells.size
    cx = (col + rng.uniform(0.25, 0.75, n)) * cw
    cy = (row + rng.uniform(0.25, 0.75, n)) * ch
    half = rng.uniform(0.25, 0.5, n) * min(ch, cw)
    angle = rng.uniform(-0.5, 0.5, n)
    cos, sin = np.cos(angle) * half, np.sin(angle) * half
    lafs = np.stack([np.stack([cos, -sin, cx], 1), np.stack([sin, cos, cy], 1)], 1)
    patches = cut_patches(gray, lafs, patch_size)
    noise = torch.from_numpy(rng.normal(0.0, 0.02, tuple(patches.shape)).astype(np.float32))
    return (patches + noise).clamp_(0.0, 1.0), cells.astype(np.int64)


@register("dataset", "bundled_classes")
class BundledClasses(Dataset):
    """Labelled patches: one class per cell of a grid over every training photo.

    Args:
        seed: seed of the samples (the set is fixed given the arguments).
        patch_size: patch side ``P``.
        photos: training photos (default: every bundled photo except
            :data:`~lookalike.data.bundled_pairs.VALIDATION_PHOTOS`; naming one of those is an error).
        grid: cells per side of every photo (``grid²`` classes per photo).
        samples_per_class: samples of every class.
        max_side: photos with a longer side are downscaled to it first.

    Attributes:
        labels: ``(N,)`` int64 class of every sample, in ``[0, num_classes)``.
        num_classes: ``len(photos) * grid²``.

    Example:
        >>> import lookalike
        >>> data = lookalike.create("dataset", "bundled_classes", photos=["camera"], grid=2,
        ...                         samples_per_class=3)
        >>> patch, label = data[4]
        >>> tuple(patch.shape), label, data.num_classes, len(data)
        ((1, 32, 32), 1, 4, 12)
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        patch_size: int = 32,
        photos: Sequence[str] | None = None,
        grid: int = 2,
        samples_per_class: int = 16,
        max_side: int = 512,
    ) -> None:
        super().__init__()
        for name, value in (
            ("patch_size", patch_size),
            ("grid", grid),
            ("samples_per_class", samples_per_class),
            ("max_side", max_side),
        ):
            check_positive(value, name)
        chosen = (
            [p for p in BUNDLED_PHOTOS if p not in VALIDATION_PHOTOS]
            if photos is None
            else list(photos)
        )
        for name in chosen:
            check_option(name, BUNDLED_PHOTOS, "photo name")
            if name in VALIDATION_PHOTOS:
                raise OptionError(
                    f"photos: {name!r} is held out for validation (VALIDATION_PHOTOS); "
                    "choose training photos only"
                )
        if not chosen:
            raise OptionError("photos: expected at least one training photo, got none")
        self.photos = tuple(chosen)
        self.seed, self.patch_size, self.grid = int(seed), int(patch_size), int(grid)
        self.samples_per_class, self.max_side = int(samples_per_class), int(max_side)
        self.patches, self.labels = self._cut(self.photos, self.samples_per_class, self.seed)
        self.num_classes = len(self.photos) * self.grid**2

    def _cut(
        self, photos: Sequence[str], per_class: int, seed: int
    ) -> tuple[torch.Tensor, np.ndarray]:
        all_patches, all_labels = [], []
        for index, name in enumerate(photos):
            rng = np.random.default_rng([seed, list(BUNDLED_PHOTOS).index(name)])
            patches, cells = cut_class_patches(
                _gray(name, self.max_side),
                grid=self.grid,
                per_class=per_class,
                patch_size=self.patch_size,
                rng=rng,
            )
            all_patches.append(patches)
            all_labels.append(cells + index * self.grid**2)
        return torch.cat(all_patches), np.concatenate(all_labels)

    def __len__(self) -> int:
        return int(self.labels.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(patch (1, P, P) float32, label int)``."""
        return self.patches[index], int(self.labels[index])

    def validation_set(self, *, n_points: int | None = None) -> ValidationSet:
        """Pairs of patches from classes cut out of the held-out photos (never trained on).

        Every class of the held-out photos gets two samples (a positive pair); as many negative
        pairs join two samples of different classes. ``n_points`` caps the number of positive pairs
        (``None``: every class). The set is fixed (its own seed), whatever the training seed.
        """
        if n_points is not None:
            check_positive(n_points, "n_points")
        patches, labels = self._cut(VALIDATION_PHOTOS, 2, _VAL_SEED)
        n = labels.size // 2 if n_points is None else min(int(n_points), labels.size // 2)
        patches, labels = patches[: 2 * n], labels[: 2 * n]
        rng = np.random.default_rng(_VAL_SEED)
        pos = np.stack([np.arange(n) * 2, np.arange(n) * 2 + 1], axis=1)
        a = rng.integers(n, size=n)
        b = (a + 1 + rng.integers(max(n - 1, 1), size=n)) % n
        neg = np.stack([a * 2 + rng.integers(2, size=n), b * 2 + rng.integers(2, size=n)], axis=1)
        keep = labels[neg[:, 0]] != labels[neg[:, 1]]
        pairs = np.concatenate([pos, neg[keep]])
        is_match = np.r_[np.ones(n, dtype=bool), np.zeros(int(keep.sum()), dtype=bool)]
        return ValidationSet(
            patches=patches,
            labels=torch.from_numpy(labels),
            pairs=torch.from_numpy(pairs.astype(np.int64)),
            is_match=torch.from_numpy(is_match),
        )
