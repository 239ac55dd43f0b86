"""Writers of tiny re-ID data sets in the public layouts (file names are the ground truth).

Every image is a small random colour crop; a person's crops share a base colour so descriptors can
find them again. ``write_market_style`` serves Market-1501, DukeMTMC-reID and CUHK03 (767/700).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def crop(pid: int, k: int, size=(128, 48)) -> np.ndarray:
    """An RGB uint8 crop of person ``pid`` (variant ``k``): top and bottom colours plus noise."""
    rng = np.random.default_rng(pid * 1000 + k)
    colours = np.random.default_rng(pid).integers(0, 256, (2, 3))
    img = np.empty((*size, 3), np.float64)
    img[: size[0] // 2], img[size[0] // 2 :] = colours[0], colours[1]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_market_style(folder: Path, *, duke: bool = False, n_ids: int = 4) -> Path:
    """``bounding_box_train`` (ids 1..n), ``query`` and ``bounding_box_test`` (ids n+1..2n, plus junk
    ``-1`` and distractors ``0000``), each person seen by cameras 1 and 2."""

    def name(pid: int, cam: int, k: int) -> str:
        stem = f"{pid:04d}" if pid >= 0 else "-1"
        return f"{stem}_c{cam}_f{k:07d}.jpg" if duke else f"{stem}_c{cam}s1_{k:06d}_00.jpg"

    for pid in range(1, n_ids + 1):
        for cam in (1, 2):
            _write(folder / "bounding_box_train" / name(pid, cam, 1), crop(pid, cam))
    for pid in range(n_ids + 1, 2 * n_ids + 1):
        _write(folder / "query" / name(pid, 1, 1), crop(pid, 1))
        for cam, k in ((2, 2), (2, 3), (1, 4)):
            _write(folder / "bounding_box_test" / name(pid, cam, k), crop(pid, k))
    _write(folder / "bounding_box_test" / name(0, 3, 9), crop(99, 0))
    _write(folder / "bounding_box_test" / name(-1, 3, 9), crop(98, 0))
    return folder


def write_msmt17(folder: Path, *, n_ids: int = 3) -> Path:
    """MSMT17_V1: ``train/``, ``test/`` and the four list files."""
    lists = {"train": [], "val": [], "query": [], "gallery": []}
    for pid in range(n_ids):
        for cam in (1, 2):
            rel = f"{pid:04d}/{pid:04d}_{cam:03d}_{cam:02d}_0303morning_0001_0.jpg"
            _write(folder / "train" / rel, crop(pid, cam))
            lists["train" if cam == 1 else "val"].append(f"{rel} {pid}")
        for cam, part in ((3, "query"), (4, "gallery"), (5, "gallery")):
            rel = f"{pid:04d}/{pid:04d}_{cam:03d}_{cam:02d}_0303noon_0002_1.jpg"
            _write(folder / "test" / rel, crop(pid + 50, cam))
            lists[part].append(f"{rel} {pid}")
    for part, lines in lists.items():
        (folder / f"list_{part}.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_viper(folder: Path, *, n_ids: int = 8) -> Path:
    """``VIPeR_m/IIIICCCC.png``: one crop per person and camera."""
    for pid in range(1, n_ids + 1):
        for cam in (1, 2):
            _write(folder / "VIPeR_m" / f"{pid:04d}{cam:04d}.png", crop(pid, cam))
    return folder


def write_reid_folder(folder: Path, *, n_ids: int = 3, cameras: bool = False) -> Path:
    """``{train,query,gallery}/<identity>/<image>``, cameras in the names when ``cameras``."""
    for pid in range(n_ids):
        prefix = "c1_" if cameras else ""
        _write(folder / "train" / f"t{pid}" / "a.png", crop(pid + 20, 0))
        _write(folder / "query" / f"p{pid}" / f"{prefix}q.png", crop(pid, 0))
        for k in (1, 2):
            gprefix = f"c{k}_" if cameras else ""
            _write(folder / "gallery" / f"p{pid}" / f"{gprefix}g{k}.png", crop(pid, k))
    return folder
