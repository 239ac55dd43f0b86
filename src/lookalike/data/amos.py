"""Reader for AMOS Patches (Pultar, Mishkin, Matas 2019, "Leveraging Outdoor Webcams for Local Descriptor
Learning"), dataset ``amos_patches``.

AMOS Patches are patch sets cut from registered images of static outdoor webcams: every image of a camera
*view* is pixel-aligned with the others, so a patch position is one 3D point seen under many illumination and
season conditions. Two published forms are read (our reading of the authors' release and their
``HardNet_MultiDataset`` code, which writes and reads these files):

1. The patch file (e.g. ``train_patches.pt``), a ``torch.save``-d dict::

       "patch_sets":   uint8 tensor (N, V, C, P, P) or (N, V, P, P): set n holds the same position in the V
                       images of its view (C = 1 grayscale; P = 96 in the release)
       "LAFs":         float tensor (N, 2, 3), the frame of each set in the view's images (optional)
       "cam_idxs":     int tensor (N,), the view of each set (optional)
       "view_names":   list of str, the view folder names indexed by cam_idxs (optional)
       "patches_mask": bool (N, V), which images of a set are usable (optional; ignored unless asked)

2. The registered views (``AMOS_views_v3/``): one folder per view holding its images (``.jpg``, ``.jpeg``,
   ``.png``, ``.ppm``, ``.bmp``, sorted by name, all the same size), possibly below a split folder such as
   ``Train/``. :class:`AmosViews` lists them and cuts aligned patch sets at keypoints of the mean image.

Assumptions: sets are labelled by their row (one label per 3D point); a grayscale set has ``C == 1`` (an RGB or
RGB-D set is averaged to gray over its first three channels); the patch file is loaded with
``torch.load(weights_only=True)``, so only plain tensors, lists and strings are accepted unless
``trusted=True`` is passed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.errors import DataNotFoundError, EmptyInputError, LookalikeError, ShapeError
from lookalike.data.images import quantize_u8

__all__ = ["AmosPatches", "AmosView", "AmosViews", "read_amos_patch_file"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


def read_amos_patch_file(path: str | os.PathLike[str], *, trusted: bool = False) -> dict:
    """Load an AMOS patch file and normalise it.

    Returns:
        A dict with ``patch_sets`` ``(N, V, P, P)`` uint8 NumPy, ``lafs`` ``(N, 2, 3)`` float32 or ``None``,
        ``views`` ``(N,)`` int64 (zeros without ``cam_idxs``), ``view_names`` list or ``None`` and ``mask``
        ``(N, V)`` bool (all True without ``patches_mask``).

    Raises:
        DataNotFoundError: the file does not exist.
        LookalikeError: the file is not a dict with ``patch_sets``, or holds objects that need ``trusted=True``.
        ShapeError: the arrays do not agree in shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: AMOS patch file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # unpickling restrictions surface as several exception types
        raise LookalikeError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({err}); "
            "if you trust the file, pass trusted=True"
        ) from err
    if not isinstance(data, dict) or "patch_sets" not in data:
        raise LookalikeError(f"{path}: expected a dict with a 'patch_sets' entry")
    sets = torch.as_tensor(np.asarray(data["patch_sets"]))
    if sets.ndim == 5:
        sets = (
            sets[:, :, 0]
            if sets.shape[2] == 1
            else sets[:, :, :3].float().mean(2).round().to(torch.uint8)
        )
    if sets.ndim != 4 or sets.shape[-1] != sets.shape[-2]:
        raise ShapeError(f"{path}: patch_sets: expected (N, V, [C,] P, P), got {tuple(sets.shape)}")
    n, v = sets.shape[:2]
    lafs = data.get("LAFs")
    if lafs is not None:
        lafs = np.asarray(torch.as_tensor(np.asarray(lafs)), dtype=np.float32)
        if lafs.shape != (n, 2, 3):
            raise ShapeError(f"{path}: LAFs: expected ({n}, 2, 3), got {lafs.shape}")
    views = data.get("cam_idxs")
    views = (
        np.zeros(n, np.int64)
        if views is None
        else np.asarray(views, dtype=np.float64).astype(np.int64)
    )
    if views.shape != (n,):
        raise ShapeError(f"{path}: cam_idxs: expected ({n},), got {views.shape}")
    mask = data.get("patches_mask")
    mask = np.ones((n, v), bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (n, v):
        raise ShapeError(f"{path}: patches_mask: expected ({n}, {v}), got {mask.shape}")
    names = data.get("view_names")
    return {
        "patch_sets": sets.to(torch.uint8).numpy(),
        "lafs": lafs,
        "views": views,
        "view_names": None if names is None else [str(x) for x in names],
        "mask": mask,
    }


@register("dataset", "amos_patches")
class AmosPatches(Dataset):
    """AMOS Patches from a patch file: item ``n`` is the whole set ``n`` with its label.

    Args:
        path: the patch file (``train_patches.pt``).
        patch_size: side of the returned patches (resized from the stored size, anti-aliased bilinear).
        use_mask: drop the images that ``patches_mask`` marks unusable when sampling pairs.
        trusted: allow arbitrary pickled objects in the file (only for files you trust).

    Attributes:
        patch_sets: ``(N, V, P, P)`` uint8; ``lafs``, ``views``, ``view_names``, ``mask`` as in
            :func:`read_amos_patch_file`.

    Example:
        >>> import lookalike, pytest
        >>> with pytest.raises(lookalike.core.errors.DataNotFoundError):
        ...     lookalike.create("dataset", "amos_patches", path="/nonexistent/train_patches.pt")
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        patch_size: int = 96,
        use_mask: bool = False,
        trusted: bool = False,
    ) -> None:
        super().__init__()
        check_positive(patch_size, "patch_size")
        data = read_amos_patch_file(path, trusted=trusted)
        self.patch_sets = data["patch_sets"]
        self.lafs = data["lafs"]
        self.views = data["views"]
        self.view_names = data["view_names"]
        self.mask = data["mask"] if use_mask else np.ones(self.patch_sets.shape[:2], bool)
        self.patch_size = int(patch_size)

    def __len__(self) -> int:
        return int(self.patch_sets.shape[0])

    def _to_tensor(self, patches: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(patches)).to(torch.float32).div_(255.0)[:, None]
        if x.shape[-1] != self.patch_size:
            x = torch.nn.functional.interpolate(
                x, size=(self.patch_size,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def __getitem__(self, n: int) -> tuple[torch.Tensor, int]:
        """``(V, 1, P, P)`` float32 patches of set ``n`` and its label ``n``."""
        return self._to_tensor(self.patch_sets[n]), int(n)

    def sample_pairs(
        self, count: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``count`` (anchor, positive) pairs from distinct sets: two different usable images of each set.

        Returns:
            ``anchors`` and ``positives`` ``(count, 1, P, P)`` float32 and ``labels`` ``(count,)`` int64.

        Raises:
            EmptyInputError: fewer than ``count`` sets have two usable images.
        """
        usable = np.flatnonzero(self.mask.sum(1) >= 2)
        if usable.size < count:
            raise EmptyInputError(
                f"sample_pairs: {count} pairs asked, {usable.size} sets have 2 images"
            )
        sets = rng.choice(usable, size=count, replace=False)
        first, second = [], []
        for s in sets:
            a, b = rng.choice(np.flatnonzero(self.mask[s]), size=2, replace=False)
            first.append(self.patch_sets[s, a])
            second.append(self.patch_sets[s, b])
        labels = torch.from_numpy(sets.astype(np.int64))
        return self._to_tensor(np.stack(first)), self._to_tensor(np.stack(second)), labels


@dataclass(frozen=True)
class AmosView:
    """One registered camera view: its name and its image files (sorted, all the same size)."""

    name: str
    images: tuple[Path, ...]

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W)`` float32 gray in ``[0, 1]``."""
        import cv2

        image = cv2.imread(str(self.images[i]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataNotFoundError(f"{self.images[i]}: unreadable image")
        return image.astype(np.float32) / 255.0


class AmosViews(Sequence[AmosView]):
    """The registered views under ``root``: every folder (at any depth) with at least two images.

    Example:
        >>> import pytest
        >>> from lookalike.core.errors import DataNotFoundError
        >>> with pytest.raises(DataNotFoundError):
        ...     AmosViews("/nonexistent")
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataNotFoundError(f"{root}: AMOS views folder not found")
        views = []
        for folder in sorted(p for p in [root, *root.rglob("*")] if p.is_dir()):
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if len(images) >= 2:
                views.append(AmosView(folder.name, tuple(images)))
        if not views:
            raise DataNotFoundError(f"{root}: no folder with two or more images")
        self.root = root
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> AmosView:  # type: ignore[override]
        return self.views[i]

    def patch_sets(
        self, view: int, *, budget: int = 300, patch_size: int = 96, mr_size: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cut aligned patch sets from one view at SIFT keypoints of its mean image.

        Returns:
            ``patch_sets`` ``(N, V, P, P)`` uint8 (``V`` images) and ``lafs`` ``(N, 2, 3)``.
        """
        from lookalike.data.synth import cut_patches, detect_lafs, lafs_inside

        v = self.views[view]
        images = [v.load(i) for i in range(len(v.images))]
        if any(im.shape != images[0].shape for im in images):
            raise ShapeError(f"view {v.name}: images differ in size; the view is not registered")
        lafs = detect_lafs(np.mean(images, axis=0), budget=budget, mr_size=mr_size)
        lafs = lafs[lafs_inside(lafs, images[0].shape, border=1.0)]
        sets = np.stack([cut_patches(im, lafs, patch_size)[:, 0].numpy() for im in images], axis=1)
        return quantize_u8(sets), lafs
