"""Reader for the UBC PhotoTour / "Brown" multi-view stereo patch data set (dataset ``phototour``).

Layout of one subset (``liberty``, ``notredame``, ``yosemite``, also the ``*_harris`` variants), as released by
Brown, Hua and Winder (http://matthewalunbrown.com/patchdata/patchdata.html)::

    <name>/patches0000.bmp ...   1024 x 1024 grayscale sheets of 16 x 16 patches of 64 x 64 pixels, filled
                                 left to right, then top to bottom; the last sheet is padded
    <name>/info.txt              one line per patch: "<3D point id> <unused>"
    <name>/interest.txt          one line per patch: "<reference image id> <x> <y> <orientation> <scale>"
    <name>/m50_<n>_<n>_0.txt     pairs, 7 columns: "<patch 1> <point 1> <unused> <patch 2> <point 2> <unused>
                                 <unused>"; a pair matches when the two point ids are equal

Patches with the same 3D point id show the same point. ``interest.txt`` is optional; its first column is the
image in which the interest point was detected (the "image group" of the Brown-revisited protocol).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.data import find_dataset
from lookalike.core.errors import DataNotFoundError, LookalikeError

__all__ = ["PhotoTour", "read_pairs", "read_patch_sheets"]

SHEET = 1024
PATCH = 64
PER_SIDE = SHEET // PATCH
HOW = "Download <name>.zip from http://matthewalunbrown.com/patchdata/patchdata.html and unpack it there."


def read_patch_sheets(folder: str | os.PathLike[str], count: int) -> np.ndarray:
    """Read the first ``count`` patches of the ``patches*.bmp`` sheets in ``folder``.

    Returns:
        ``(count, 64, 64)`` uint8 patches in file order.

    Raises:
        DataNotFoundError: no sheet, or fewer patches than ``count``.
    """
    import cv2

    sheets = sorted(Path(folder).glob("patches*.bmp"))
    if not sheets:
        raise DataNotFoundError(f"no patches*.bmp sheet in {folder}")
    need = -(-count // (PER_SIDE * PER_SIDE))
    if len(sheets) < need:
        raise DataNotFoundError(
            f"{folder}: {count} patches need {need} sheets of 256, found {len(sheets)}"
        )
    out = np.empty((need * PER_SIDE * PER_SIDE, PATCH, PATCH), dtype=np.uint8)
    for k, path in enumerate(sheets[:need]):
        sheet = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if sheet is None or sheet.shape != (SHEET, SHEET):
            shape = None if sheet is None else sheet.shape
            raise LookalikeError(f"{path}: expected a 1024 x 1024 grayscale bitmap, got {shape}")
        tiles = sheet.reshape(PER_SIDE, PATCH, PER_SIDE, PATCH).transpose(0, 2, 1, 3)
        out[k * 256 : (k + 1) * 256] = tiles.reshape(-1, PATCH, PATCH)
    return out[:count]


def read_pairs(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an ``m50_*.txt`` pair file: ``(pairs (M, 2) int64, is_match (M,) bool)``."""
    table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    if table.shape[1] != 7:
        raise LookalikeError(f"{path}: expected 7 columns per line, got {table.shape[1]}")
    return table[:, [0, 3]].copy(), table[:, 1] == table[:, 4]


@register("dataset", "phototour")
class PhotoTour(Dataset):
    """One UBC PhotoTour subset: patches, 3D-point labels, image groups and the evaluation pairs.

    Args:
        subset: subset folder name (``"liberty"``, ``"notredame"``, ``"yosemite"``, ...).
        root: folder that holds ``subset``/ (default: the data root, ``LOOKALIKE_DATA``).
        path: the subset folder itself (overrides ``root`` and ``subset``).
        pairs: pair file name inside the folder; ``None`` to skip the pairs.
        patch_size: side of the patches returned by ``__getitem__`` (resized from 64, anti-aliased bilinear).

    Attributes:
        patches: ``(N, 64, 64)`` uint8.
        labels: ``(N,)`` int64 3D-point ids.
        image_ids: ``(N,)`` int64 reference-image ids, or ``None`` without ``interest.txt``.
        interest: ``(N, 4)`` float64 ``x, y, orientation, scale`` from ``interest.txt``, or ``None``.
        pairs: ``(M, 2)`` int64 patch indices, or ``None``.
        is_match: ``(M,)`` bool, or ``None``.

    Example:
        >>> import lookalike, pytest
        >>> with pytest.raises(lookalike.core.errors.DataNotFoundError):
        ...     lookalike.create("dataset", "phototour", subset="liberty", root="/nonexistent")
    """

    def __init__(
        self,
        *,
        subset: str = "liberty",
        root: str | os.PathLike[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        pairs: str | None = "m50_100000_100000_0.txt",
        patch_size: int = 64,
    ) -> None:
        super().__init__()
        check_positive(patch_size, "patch_size")
        folder = (
            Path(path)
            if path is not None
            else find_dataset(subset, root=root, how=HOW.replace("<name>", subset))
        )
        info = folder / "info.txt"
        if not info.is_file():
            raise DataNotFoundError(
                f"{folder}: no info.txt; is this a PhotoTour subset folder? {HOW}"
            )
        self.folder = folder
        self.name = folder.name
        self.patch_size = int(patch_size)
        self.labels = np.loadtxt(info, dtype=np.int64, ndmin=2)[:, 0]
        n = self.labels.size
        self.patches = read_patch_sheets(folder, n)
        self.image_ids: np.ndarray | None = None
        self.interest: np.ndarray | None = None
        interest = folder / "interest.txt"
        if interest.is_file():
            table = np.loadtxt(interest, dtype=np.float64, ndmin=2)
            if table.shape[0] != n:
                raise LookalikeError(
                    f"{interest}: {table.shape[0]} lines for {n} patches in info.txt"
                )
            self.image_ids = table[:, 0].astype(np.int64)
            self.interest = table[:, 1:5]
        self.pairs: np.ndarray | None = None
        self.is_match: np.ndarray | None = None
        if pairs is not None:
            pair_file = folder / pairs
            if not pair_file.is_file():
                raise DataNotFoundError(f"{pair_file}: pair file not found")
            self.pairs, self.is_match = read_pairs(pair_file)
            if self.pairs.size and (self.pairs.min() < 0 or self.pairs.max() >= n):
                raise LookalikeError(f"{pair_file}: patch index outside [0, {n})")

    def __len__(self) -> int:
        return int(self.labels.size)

    def patch_tensor(self, index: np.ndarray | slice | None = None) -> torch.Tensor:
        """Patches ``(K, 1, P, P)`` float32 in ``[0, 1]`` (all of them by default), resized to ``patch_size``."""
        sel = self.patches if index is None else self.patches[index]
        x = torch.from_numpy(np.ascontiguousarray(sel)).to(torch.float32).div_(255.0)[:, None]
        if self.patch_size != PATCH:
            x = torch.nn.functional.interpolate(
                x, size=(self.patch_size,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.patch_tensor(np.array([i]))[0], int(self.labels[i])
