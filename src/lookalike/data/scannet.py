"""ScanNet-style image pairs with intrinsics and relative pose (the ``scannet-sample`` layout). Evaluation only.

The layout of SuperGlue's evaluation assets (Sarlin et al., CVPR 2020), which the shared
``scannet-sample`` folder keeps::

    scannet-sample/
      scannet_sample_pairs_with_gt.txt
      scannet_sample_images/<name0>, <name1>, ...

Each line of the pair list is ``name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)``: the two file names
(relative to the images folder), the number of 90-degree rotations of each image (0 in the sample),
the row-major ``3 x 3`` intrinsics of each image at its full resolution, and the row-major ``4 x 4``
relative pose.

Convention:
    - ``T_0to1`` maps points from camera 0's frame to camera 1's: ``X1 = R X0 + t`` with
      ``R = T_0to1[:3, :3]``, ``t = T_0to1[:3, 3]``.
    - :meth:`ScanNetPair.load` resizes both images to ``resize = (width, height)`` (``INTER_AREA``,
      default 640 x 480 as in SuperGlue's evaluation) and scales the intrinsics with them:
      ``K' = diag(sx, sy, 1) K`` with ``sx = width / W``, ``sy = height / H``.
    - Images with a non-zero rotation count are refused (:class:`~lookalike.core.errors.OptionError`):
      the sample has none, and rotating the intrinsics is not implemented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.core.errors import DataNotFoundError, OptionError, ShapeError

__all__ = [
    "PAIRS_FILE",
    "SCANNET_RESIZE",
    "LoadedPair",
    "ScanNetPair",
    "find_scannet_pairs",
    "parse_pair_line",
    "read_scannet_pairs",
    "scale_intrinsics",
]

#: Name of the pair list in the ``scannet-sample`` layout.
PAIRS_FILE = "scannet_sample_pairs_with_gt.txt"
#: Folder of the images, next to the pair list.
IMAGES_DIR = "scannet_sample_images"
#: Folder name of the data set below the data root.
DATASET_NAME = "scannet-sample"
#: ``(width, height)`` the images are evaluated at (SuperGlue's ScanNet evaluation).
SCANNET_RESIZE: tuple[int, int] = (640, 480)
_HOW = (
    "it holds scannet_sample_pairs_with_gt.txt and scannet_sample_images/ "
    "(the assets of github.com/magicleap/SuperGluePretrainedNetwork)"
)


@dataclass(frozen=True)
class LoadedPair:
    """Two gray images at the evaluation size and their scaled intrinsics.

    Attributes:
        name: ``"<name0> <name1>"``.
        image0, image1: ``(H, W)`` uint8 gray images.
        K0, K1: float64 ``3 x 3`` intrinsics of the resized images.
        T_0to1: float64 ``4 x 4`` relative pose.
    """

    name: str
    image0: np.ndarray = field(repr=False)
    image1: np.ndarray = field(repr=False)
    K0: np.ndarray = field(repr=False)
    K1: np.ndarray = field(repr=False)
    T_0to1: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class ScanNetPair:
    """One line of a ScanNet-style pair list (see the module docstring).

    Attributes:
        root: the images folder.
        name0, name1: image file names relative to ``root``.
        K0, K1: float64 ``3 x 3`` intrinsics at full resolution.
        T_0to1: float64 ``4 x 4`` relative pose.
    """

    root: Path
    name0: str
    name1: str
    K0: np.ndarray = field(repr=False)
    K1: np.ndarray = field(repr=False)
    T_0to1: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.name0} {self.name1}"

    def load(self, resize: tuple[int, int] | None = SCANNET_RESIZE) -> LoadedPair:
        """Read both images (gray), resized to ``resize = (width, height)`` with scaled intrinsics.

        Raises:
            DataNotFoundError: an image file is missing.
            ImageError: an image cannot be decoded.
        """
        from lookalike.data.images import load_image

        images, intrinsics = [], []
        for file, K in ((self.name0, self.K0), (self.name1, self.K1)):
            gray = load_image(self.root / file, gray=True)
            gray, K = _resize(gray, K, resize)
            images.append(gray)
            intrinsics.append(K)
        return LoadedPair(
            self.name, images[0], images[1], intrinsics[0], intrinsics[1], self.T_0to1
        )


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``diag(sx, sy, 1) @ K``: intrinsics of an image resized by ``(sx, sy)``.

    Example:
        >>> scale_intrinsics(np.diag([100.0, 100.0, 1.0]), 0.5, 0.25).diagonal().tolist()
        [50.0, 25.0, 1.0]
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ShapeError(f"K: expected shape (3, 3), got {K.shape}")
    return np.diag([float(sx), float(sy), 1.0]) @ K


def _resize(
    gray: np.ndarray, K: np.ndarray, resize: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    if resize is None:
        return gray, K
    width, height = int(resize[0]), int(resize[1])
    if width <= 0 or height <= 0:
        raise OptionError(f"resize: expected a positive (width, height), got {resize!r}")
    h, w = gray.shape[:2]
    if (w, h) == (width, height):
        return gray, K
    small = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return small, scale_intrinsics(K, width / w, height / h)


def parse_pair_line(line: str, root: str | os.PathLike[str] = ".") -> ScanNetPair:
    """Parse one ``name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)`` line.

    Raises:
        ShapeError: the line does not have 38 fields.
        OptionError: a field is not a number, or a rotation count is not 0.

    Example:
        >>> eye = " ".join(["1 0 0 0 1 0 0 0 1"] * 2)
        >>> pose = "1 0 0 0.5 0 1 0 0 0 0 1 0 0 0 0 1"
        >>> pair = parse_pair_line(f"a.jpg b.jpg 0 0 {eye} {pose}")
        >>> pair.name, float(pair.T_0to1[0, 3])
        ('a.jpg b.jpg', 0.5)
    """
    parts = line.split()
    if len(parts) != 38:
        raise ShapeError(
            f"pair line: expected 38 fields (name0 name1 rot0 rot1 K0 K1 T_0to1), got {len(parts)}"
        )
    try:
        values = np.array([float(v) for v in parts[2:]], dtype=np.float64)
    except ValueError as exc:
        raise OptionError(
            f"pair line {parts[0]} {parts[1]}: a field is not a number: {exc}"
        ) from exc
    if values[0] != 0 or values[1] != 0:
        raise OptionError(
            f"pair {parts[0]} {parts[1]}: expected rotation counts 0 0, got "
            f"{int(values[0])} {int(values[1])} (rotated images are not supported)"
        )
    return ScanNetPair(
        root=Path(root),
        name0=parts[0],
        name1=parts[1],
        K0=values[2:11].reshape(3, 3),
        K1=values[11:20].reshape(3, 3),
        T_0to1=values[20:36].reshape(4, 4),
    )


def read_scannet_pairs(
    pairs_file: str | os.PathLike[str], images: str | os.PathLike[str] | None = None
) -> list[ScanNetPair]:
    """Every pair of a pair list (blank lines and ``#`` comments skipped).

    Args:
        pairs_file: the pair list.
        images: the images folder (default: ``scannet_sample_images`` next to the list).

    Raises:
        DataNotFoundError: the list or the images folder is missing.
        EmptyInputError: the list holds no pair.
    """
    from lookalike.core.check import check_not_empty

    path = Path(pairs_file)
    if not path.is_file():
        raise DataNotFoundError(f"pair list not found: {path}")
    folder = Path(images) if images is not None else path.parent / IMAGES_DIR
    if not folder.is_dir():
        raise DataNotFoundError(f"images folder not found: {folder} ({_HOW})")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    pairs = [parse_pair_line(ln, folder) for ln in lines if ln and not ln.startswith("#")]
    check_not_empty(pairs, f"pairs of {path}")
    return pairs


def find_scannet_pairs(
    data: str | os.PathLike[str] | None = None,
) -> tuple[Path, list[ScanNetPair]]:
    """The ``scannet-sample`` folder and its pairs.

    Args:
        data: the ``scannet-sample`` folder itself, or a data root holding it (default:
            ``LOOKALIKE_DATA``).

    Returns:
        ``(folder, pairs)``.

    Raises:
        DataNotFoundError: neither ``data`` nor ``data/scannet-sample`` holds the pair list.

    Example:
        >>> find_scannet_pairs("/nonexistent")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.DataNotFoundError: data set 'scannet-sample' not found: looked in /nonexistent and /nonexistent/scannet-sample (set LOOKALIKE_DATA or pass --data; it holds scannet_sample_pairs_with_gt.txt and scannet_sample_images/ (the assets of github.com/magicleap/SuperGluePretrainedNetwork))
    """
    from lookalike.core.data import data_root

    base = Path(data).expanduser() if data is not None else data_root()
    for folder in (base, base / DATASET_NAME):
        if (folder / PAIRS_FILE).is_file():
            return folder, read_scannet_pairs(folder / PAIRS_FILE)
    raise DataNotFoundError(
        f"data set {DATASET_NAME!r} not found: looked in {base} and {base / DATASET_NAME} "
        f"(set LOOKALIKE_DATA or pass --data; {_HOW})"
    )
