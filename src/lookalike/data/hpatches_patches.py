"""Reader for HPatches patch files (dataset ``hpatches_patches``) and the patch-set structure the protocols use.

The HPatches release (``hpatches-release/``, Balntas et al. CVPR 2017) has one folder per sequence
(``i_*`` illumination, ``v_*`` viewpoint) with 16 PNG files::

    <seq>/ref.png                  patches of the reference image
    <seq>/e1.png .. e5.png         the same patches in target images 1..5, easy affine jitter
    <seq>/h1.png .. h5.png         hard jitter
    <seq>/t1.png .. t5.png         tough jitter

Every file is a grayscale strip of 65 x 65 patches stacked vertically (65 pixels wide, ``65 N`` high); the
``i``-th patch of every file shows the same 3D point.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike._registry import register
from lookalike.core.check import check_option
from lookalike.core.data import find_dataset
from lookalike.core.errors import DataNotFoundError, LookalikeError, ShapeError

__all__ = [
    "DIFFICULTIES",
    "HPATCHES_TYPES",
    "HPatchesPatches",
    "PatchSequence",
    "read_hpatches_sequence",
    "read_patch_strip",
    "write_patch_strip",
]

#: Difficulty prefixes and their names.
DIFFICULTIES: dict[str, str] = {"e": "easy", "h": "hard", "t": "tough"}
#: The 16 patch files of an HPatches sequence.
HPATCHES_TYPES: tuple[str, ...] = (
    "ref",
    *(f"{d}{k}" for d in DIFFICULTIES for k in range(1, 6)),
)
HOW = "Download hpatches-release.tar.gz (https://github.com/hpatches/hpatches-dataset) and unpack it there."


@dataclass(frozen=True)
class PatchSequence:
    """Corresponding patches of one image sequence, the input of the HPatches protocols.

    Attributes:
        name: sequence name (``"v_graffiti"``; the ``v_``/``i_`` prefix tells viewpoint or illumination).
        ref: ``(N, P, P)`` uint8 patches of the reference image.
        targets: target patches by type, ``"e1"`` .. ``"t5"`` (difficulty letter + target image number, from 1),
            each ``(N, P, P)`` uint8, row ``i`` showing the same point as ``ref[i]``.
        point_ids: ``(N,)`` int64 ids of the 3D points (row order).

    Example:
        >>> import numpy as np
        >>> seq = PatchSequence("toy", np.zeros((3, 65, 65), np.uint8), {"e1": np.zeros((3, 65, 65), np.uint8)})
        >>> len(seq), seq.difficulties, seq.target_images
        (3, ('e',), (1,))
    """

    name: str
    ref: np.ndarray = field(repr=False)
    targets: Mapping[str, np.ndarray] = field(repr=False, default_factory=dict)
    point_ids: np.ndarray | None = field(repr=False, default=None)

    def __post_init__(self) -> None:
        ref = np.asarray(self.ref)
        if ref.ndim != 3 or ref.shape[1] != ref.shape[2]:
            raise ShapeError(f"{self.name}: ref: expected shape (N, P, P), got {tuple(ref.shape)}")
        for key, patches in self.targets.items():
            if (
                len(key) < 2
                or key[0] not in DIFFICULTIES
                or not key[1:].isdigit()
                or int(key[1:]) < 1
            ):
                raise LookalikeError(
                    f"{self.name}: target key {key!r} is not like 'e1', 'h2', 't5'"
                )
            if np.asarray(patches).shape != ref.shape:
                raise ShapeError(
                    f"{self.name}: {key}: expected shape {tuple(ref.shape)}, got "
                    f"{tuple(np.asarray(patches).shape)}"
                )
        if self.point_ids is None:
            object.__setattr__(self, "point_ids", np.arange(ref.shape[0], dtype=np.int64))
        elif np.asarray(self.point_ids).shape != (ref.shape[0],):
            raise ShapeError(f"{self.name}: point_ids: expected shape ({ref.shape[0]},)")

    def __len__(self) -> int:
        return int(self.ref.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.ref.shape[1])

    @property
    def difficulties(self) -> tuple[str, ...]:
        """Difficulty letters present, in ``e, h, t`` order."""
        return tuple(d for d in DIFFICULTIES if any(k[0] == d for k in self.targets))

    @property
    def target_images(self) -> tuple[int, ...]:
        """Target image numbers present (1-based)."""
        return tuple(sorted({int(k[1:]) for k in self.targets}))

    def patches(self, image: int, difficulty: str) -> np.ndarray:
        """Patches of image ``image`` (0 = reference) at ``difficulty`` (``"e"``, ``"h"`` or ``"t"``)."""
        return self.ref if image == 0 else self.targets[f"{difficulty}{image}"]


def read_patch_strip(path: str | os.PathLike[str], patch_size: int = 65) -> np.ndarray:
    """Read a vertical strip of square patches: ``(N, P, P)`` uint8.

    Raises:
        DataNotFoundError: the file is missing or unreadable.
        ShapeError: the image is not ``P`` wide or its height is not a multiple of ``P``.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataNotFoundError(f"{path}: missing or not an image")
    h, w = image.shape
    if w != patch_size or h % patch_size:
        raise ShapeError(
            f"{path}: expected a strip {patch_size} pixels wide and a multiple of {patch_size} high, "
            f"got {w} x {h}"
        )
    return np.ascontiguousarray(image.reshape(h // patch_size, patch_size, patch_size))


def write_patch_strip(path: str | os.PathLike[str], patches: np.ndarray) -> None:
    """Write ``(N, P, P)`` uint8 patches as a vertical PNG strip (the HPatches file format)."""
    import cv2

    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ShapeError(f"patches: expected (N, P, P) uint8, got {patches.shape} {patches.dtype}")
    if not cv2.imwrite(str(path), patches.reshape(-1, patches.shape[2])):
        raise LookalikeError(f"{path}: could not write the strip")


def read_hpatches_sequence(
    folder: str | os.PathLike[str], *, require_all: bool = True, patch_size: int = 65
) -> PatchSequence:
    """Read one HPatches sequence folder into a :class:`PatchSequence`.

    Args:
        folder: folder with ``ref.png`` and the ``e/h/t1..5.png`` files.
        require_all: raise when one of the 16 files is missing; otherwise read what is there (``ref.png`` is
            always required).
        patch_size: patch side (65 in the release).

    Raises:
        DataNotFoundError: ``ref.png`` (or, with ``require_all``, another file) is missing.
        ShapeError: a file has a different number of patches than ``ref.png``.
    """
    folder = Path(folder)
    ref = read_patch_strip(folder / "ref.png", patch_size)
    targets = {}
    for key in HPATCHES_TYPES[1:]:
        path = folder / f"{key}.png"
        if not path.is_file():
            if require_all:
                raise DataNotFoundError(
                    f"{path}: missing (pass require_all=False to read a partial sequence)"
                )
            continue
        targets[key] = read_patch_strip(path, patch_size)
    return PatchSequence(folder.name, ref, targets)


@register("dataset", "hpatches_patches")
class HPatchesPatches(Sequence[PatchSequence]):
    """The HPatches patch release: a sequence of :class:`PatchSequence`, read lazily and cached.

    Args:
        root: folder holding ``hpatches-release/`` (default: the data root).
        path: the release folder itself (overrides ``root``).
        category: ``"all"``, ``"v"`` (viewpoint sequences) or ``"i"`` (illumination sequences).
        sequences: explicit sequence names to keep (after ``category``).
        require_all: see :func:`read_hpatches_sequence`.

    Example:
        >>> import lookalike, pytest
        >>> with pytest.raises(lookalike.core.errors.DataNotFoundError):
        ...     lookalike.create("dataset", "hpatches_patches", root="/nonexistent")
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        category: str = "all",
        sequences: Sequence[str] | None = None,
        require_all: bool = True,
    ) -> None:
        check_option(category, ("all", "v", "i"), "category")
        folder = (
            Path(path) if path is not None else find_dataset("hpatches-release", root=root, how=HOW)
        )
        names = sorted(p.name for p in folder.iterdir() if (p / "ref.png").is_file())
        if category != "all":
            names = [n for n in names if n.startswith(f"{category}_")]
        if sequences is not None:
            missing = sorted(set(sequences) - set(names))
            if missing:
                raise DataNotFoundError(f"{folder}: sequences not found: {missing}")
            names = [n for n in names if n in set(sequences)]
        if not names:
            raise DataNotFoundError(f"{folder}: no sequence folder with a ref.png ({HOW})")
        self.folder = folder
        self.names = names
        self.require_all = require_all
        self._cache: dict[str, PatchSequence] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> PatchSequence:  # type: ignore[override]
        name = self.names[i]
        if name not in self._cache:
            self._cache[name] = read_hpatches_sequence(
                self.folder / name, require_all=self.require_all
            )
        return self._cache[name]

    def __iter__(self) -> Iterator[PatchSequence]:
        return (self[i] for i in range(len(self)))
