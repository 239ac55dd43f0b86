"""Google Landmarks Dataset v2 (Weyand et al., CVPR 2020): the training set layout (``gldv2``).

Layout of the public release: ``<root>/train.csv`` with the columns ``id,landmark_id`` and the images at
``<root>/train/<a>/<b>/<c>/<id>.jpg`` where ``a, b, c`` are the first three characters of the id
(``<root>/<a>/<b>/<c>/<id>.jpg`` is accepted too). Landmark ids are mapped to contiguous labels in
increasing order of id; rows whose image file is missing are skipped (with a count in the log) so a
partial download can be used.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from lookalike._registry import register
from lookalike.core.errors import DataNotFoundError, OptionError
from lookalike.data.image_folders import LabelledImages

__all__ = ["GLDv2", "gldv2_image_path", "read_train_csv"]

log = logging.getLogger(__name__)


def gldv2_image_path(root: str | os.PathLike[str], image_id: str, folder: str = "train") -> Path:
    """``<root>/<folder>/<a>/<b>/<c>/<id>.jpg`` (or without ``<folder>`` when only that exists).

    Example:
        >>> gldv2_image_path("/data/gldv2", "abcdef").as_posix()
        '/data/gldv2/train/a/b/c/abcdef.jpg'
    """
    if len(image_id) < 3:
        raise OptionError(f"image id: expected at least 3 characters, got {image_id!r}")
    base = Path(root)
    path = base / folder / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"
    flat = base / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"
    return flat if not path.exists() and flat.exists() else path


def read_train_csv(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``(id, landmark_id)`` rows of a GLDv2 ``train.csv`` (header ``id,landmark_id``).

    Raises:
        DataNotFoundError: no such file.
        OptionError: the header lacks ``id`` or ``landmark_id``, or a landmark id is not an integer.
    """
    file = Path(path)
    if not file.is_file():
        raise DataNotFoundError(f"gldv2: no train.csv at {file}")
    with file.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"id", "landmark_id"} <= set(reader.fieldnames or []):
            raise OptionError(
                f"{file}: expected the columns id,landmark_id, got {reader.fieldnames}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((row["id"].strip(), int(row["landmark_id"])))
            except (TypeError, ValueError) as exc:
                raise OptionError(f"{file}:{line}: landmark_id is not an integer ({exc})") from exc
    return rows


@register("dataset", "gldv2")
class GLDv2(LabelledImages):
    """The GLDv2 training set (or any set in its layout) as labelled images.

    Args:
        root: folder holding ``train.csv`` and the images.
        csv_file: the csv, relative to ``root`` (default ``train.csv``).
        image_size: side of the square samples.
        augment: apply the training augmentation.
        min_images: leave out landmarks with fewer images (the 2021 winners used the "clean" subset).
        seed: the training seed the engine passes (augmentation draws from the torch RNG, which
            the engine seeds with it).

    Attributes:
        landmark_ids: ``landmark_ids[label]`` is the original landmark id.

    Raises:
        DataNotFoundError: no csv, or none of its images found.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        csv_file: str = "train.csv",
        image_size: int = 224,
        augment: bool = False,
        min_images: int = 1,
        seed: int = 0,
    ) -> None:
        folder = Path(root).expanduser()
        rows = read_train_csv(folder / csv_file)
        found = [(p, lid) for i, lid in rows if (p := gldv2_image_path(folder, i)).is_file()]
        if len(found) < len(rows):
            log.warning(
                "gldv2: %d of %d images listed in %s are missing",
                len(rows) - len(found),
                len(rows),
                csv_file,
            )
        counts: dict[int, int] = {}
        for _, lid in found:
            counts[lid] = counts.get(lid, 0) + 1
        if not found:
            raise DataNotFoundError(
                f"gldv2: none of the images listed in {folder / csv_file} was found"
            )
        kept = sorted(lid for lid, n in counts.items() if n >= max(1, min_images))
        if not kept:
            raise DataNotFoundError(
                f"gldv2: no landmark has min_images={min_images} images or more"
            )
        label = {lid: i for i, lid in enumerate(kept)}
        found = [(p, label[lid]) for p, lid in found if lid in label]
        self.root = folder
        self.seed = int(seed)
        self.landmark_ids = kept
        super().__init__(
            [p for p, _ in found],
            [y for _, y in found],
            [str(lid) for lid in kept],
            image_size=image_size,
            augment=augment,
        )
