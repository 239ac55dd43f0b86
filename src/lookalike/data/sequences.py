"""Image sequences related by known homographies: HPatches, Oxford affine, EVD.

Three on-disk layouts are recognised anywhere below a root folder:

=============  ================================================  ======================================
layout         files                                             ground truth
=============  ================================================  ======================================
HPatches       ``<seq>/1.ppm .. 6.ppm``, ``<seq>/H_1_2 .. H_1_6``  ``H_1_k`` maps image 1 to image k
Oxford affine  ``<seq>/img1.ppm .. img6.ppm`` (or ``.pgm``),       ``H1toNp`` maps img1 to imgN
               ``<seq>/H1to2p .. H1to6p``
EVD            ``<dir>/1/<name>.png``, ``<dir>/2/<name>.png``,     ``h/<name>.txt`` maps 1/ to 2/
               ``<dir>/h/<name>.txt``
=============  ================================================  ======================================

Convention:
    - Homographies are float64 ``3 x 3`` and map pixel coordinates of the reference image (the first
      image) into image ``k``: ``x_k ~ H_0k x_0`` with pixel centres at integer coordinates.
    - A sequence's name is the path of its folder relative to the root, with the data set's folder
      name first when it is recognisable: ``hpatches-sequences/v_graffiti``, ``oxford-affine/graf``,
      ``evd/adam``.
    - Files without ground truth (an image without ``H`` file) are left out; a folder with no usable
      pair is not a sequence. An unreadable homography file raises :class:`SequenceError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.core.errors import DataNotFoundError, LookalikeError

__all__ = [
    "LAYOUTS",
    "HomographySequence",
    "SequenceError",
    "find_sequences",
    "read_homography",
    "sequence_group",
]

#: The folder layouts :func:`find_sequences` reads, as said in error messages.
LAYOUTS = (
    "hpatches-sequences/<seq>/{1..6}.ppm + H_1_<k> (HPatches), "
    "oxford-affine/<seq>/img{1..6}.ppm + H1to<k>p (Oxford affine), "
    "evd/{1,2}/<name>.png + evd/h/<name>.txt (EVD)"
)

_IMAGE_SUFFIXES = (".ppm", ".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_HPATCHES_H = re.compile(r"^H_1_(\d+)$")
_OXFORD_H = re.compile(r"^H1to(\d+)p$")


class SequenceError(LookalikeError):
    """A sequence folder is malformed (unreadable homography, missing image)."""


def sequence_group(name: str) -> str:
    """The data set of a sequence: the first part of its name (the whole name when it has one part).

    Example:
        >>> sequence_group("oxford-affine/graf"), sequence_group("evd/adam"), sequence_group("v_boat")
        ('oxford-affine', 'evd', 'v_boat')
    """
    if not isinstance(name, str):
        raise SequenceError(f"sequence name: expected a string, got {type(name).__name__}")
    return name.split("/", 1)[0]


@dataclass(frozen=True)
class HomographySequence:
    """A reference image and images related to it by known homographies.

    Attributes:
        name: e.g. ``"hpatches-sequences/v_graffiti"``, ``"oxford-affine/graf"``, ``"evd/adam"``.
        images: image files, reference first.
        homographies: ``H_0k`` for ``k = 1 .. len(images) - 1``, float64 ``3 x 3``, mapping pixels of
            ``images[0]`` into ``images[k]``.

    Example:
        >>> import numpy as np
        >>> seq = HomographySequence("toy", (Path("a.png"), Path("b.png")), (np.eye(3),))
        >>> [(i, k, h.shape) for i, k, h in seq.pairs()]
        [(0, 1, (3, 3))]
    """

    name: str
    images: tuple[Path, ...]
    homographies: tuple[np.ndarray, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.homographies) != len(self.images) - 1:
            raise SequenceError(
                f"sequence {self.name!r}: {len(self.images)} images need "
                f"{len(self.images) - 1} homographies, got {len(self.homographies)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int, *, gray: bool = True) -> np.ndarray:
        """Image ``i`` as uint8 ``(H, W)`` (gray) or ``(H, W, 3)`` RGB."""
        from lookalike.data.images import read_image

        if not -len(self.images) <= i < len(self.images):
            raise SequenceError(
                f"sequence {self.name!r} has {len(self.images)} images, asked for {i}"
            )
        return read_image(self.images[i], gray=gray)

    def pairs(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(0, k, H_0k)`` for every non-reference image ``k``."""
        for k, H in enumerate(self.homographies, start=1):
            yield 0, k, H


def read_homography(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a whitespace-separated ``3 x 3`` homography text file as float64.

    Raises:
        SequenceError: the file does not hold 9 finite numbers or the matrix is singular.
    """
    try:
        H = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise SequenceError(f"cannot read homography {path}: {exc}") from exc
    if H.size != 9:
        raise SequenceError(f"homography {path}: expected 9 numbers, got {H.size}")
    H = H.reshape(3, 3)
    if not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        raise SequenceError(f"homography {path} is not finite and invertible")
    return H


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _numbered(folder: Path, pattern: re.Pattern[str], image_stem: str) -> list[tuple[Path, Path]]:
    """(image k, H file) for every ground-truth file of a HPatches/Oxford folder, sorted by k."""
    found: list[tuple[int, Path, Path]] = []
    for entry in folder.iterdir():
        m = pattern.match(entry.name)
        if m and entry.is_file():
            k = int(m.group(1))
            image = _find_image(folder, image_stem.format(k))
            if image is not None:
                found.append((k, image, entry))
    return [(image, h) for _, image, h in sorted(found)]


def _sequence_name(root: Path, folder: Path) -> str:
    """Path below ``root``, with the data set folder's name kept when ``root`` is inside it."""
    parts = folder.relative_to(root).parts
    if not parts:
        parts = (root.parent.name, root.name)
    elif len(parts) == 1:
        parts = (root.name, *parts)
    # ``evd/EVD`` (the release's own folder inside ours) reads better as ``evd``.
    if len(parts) >= 2 and parts[-1].lower() == parts[-2].lower():
        parts = parts[:-1]
    return "/".join(p for p in parts if p)


def _from_numbered(root: Path, folder: Path, kind: str) -> HomographySequence | None:
    pattern, stem = (_HPATCHES_H, "{}") if kind == "hpatches" else (_OXFORD_H, "img{}")
    items = _numbered(folder, pattern, stem)
    ref = _find_image(folder, stem.format(1))
    if ref is None or not items:
        return None
    return HomographySequence(
        name=_sequence_name(root, folder),
        images=(ref, *(image for image, _ in items)),
        homographies=tuple(read_homography(h) for _, h in items),
    )


def _evd_sequences(root: Path, folder: Path) -> list[HomographySequence]:
    """One two-image sequence per ``h/<name>.txt`` of an EVD-style folder."""
    seqs = []
    prefix = _sequence_name(root, folder)
    for h in sorted((folder / "h").glob("*.txt")):
        first = _find_image(folder / "1", h.stem)
        second = _find_image(folder / "2", h.stem)
        if first is None or second is None:
            continue
        seqs.append(
            HomographySequence(
                name=f"{prefix}/{h.stem}" if prefix else h.stem,
                images=(first, second),
                homographies=(read_homography(h),),
            )
        )
    return seqs


def find_sequences(root: str | os.PathLike[str]) -> list[HomographySequence]:
    """Every homography sequence below ``root`` (HPatches, Oxford affine and EVD layouts).

    Args:
        root: a folder; searched recursively (symbolic links are followed once).

    Returns:
        The sequences, sorted by name. An empty list when the folder holds none.

    Raises:
        DataNotFoundError: ``root`` is not a folder.
        SequenceError: a homography file is unreadable.

    Example:
        >>> find_sequences("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lookalike.core.errors.DataNotFoundError: no such folder: /nonexistent (homography sequences are read ...
    """
    base = Path(root).expanduser().absolute()
    if not base.is_dir():
        raise DataNotFoundError(
            f"no such folder: {base} (homography sequences are read from these layouts below it: "
            f"{LAYOUTS})"
        )
    found: list[HomographySequence] = []
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        folder = Path(dirpath)
        real = folder.resolve()
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        names = set(filenames)
        seq: HomographySequence | None = None
        if any(_HPATCHES_H.match(n) for n in names):
            seq = _from_numbered(base, folder, "hpatches")
        elif any(_OXFORD_H.match(n) for n in names):
            seq = _from_numbered(base, folder, "oxford")
        if seq is not None:
            found.append(seq)
        if {"1", "2", "h"} <= set(dirnames) and (folder / "h").is_dir():
            found.extend(_evd_sequences(base, folder))
            dirnames[:] = [d for d in dirnames if d not in {"1", "2", "h"}]
    return sorted(found, key=lambda s: s.name)
