"""Readers of person re-identification benchmarks in the layouts of their public releases.

Every reader returns a :class:`ReidBenchmark`: ``train``, ``query`` and ``gallery`` lists of person crops
(:class:`ReidImages`: file paths, identities, cameras). Nothing is decoded until images are asked for.

========================  =====================================================================================
benchmark                 layout (``root`` is the data set folder or a folder holding it)
========================  =====================================================================================
``market1501``            ``Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query}/``
                          ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``; pid ``-1`` (junk) is dropped everywhere,
                          pid ``0000`` (distractors) stays in the gallery (never a correct match) and is
                          dropped from training.
``duke``                  ``DukeMTMC-reID/{bounding_box_train,bounding_box_test,query}/<pid>_c<cam>_f<frame>.jpg``
``msmt17``                ``MSMT17_V1/{train,test}/`` (V2: ``mask_train_v2``, ``mask_test_v2``) with
                          ``list_{train,val,query,gallery}.txt`` (``<path> <pid>`` per line; train + val
                          are the training set); camera = third ``_`` field of the file name.
``cuhk03``                the 767/700 protocol (Zhong et al. 2017) in its Market-style release
                          ``cuhk03-np/{labeled,detected}/{bounding_box_train,bounding_box_test,query}/``
``viper``                 ``viper/VIPeR_m/IIIICCCC.png`` (id, camera 1 = cam_a, 2 = cam_b) or the original
                          ``VIPeR/{cam_a,cam_b}/`` (the i-th files of both folders, sorted, are one person):
                          ``split`` k of 10 random 316/316 identity splits (seed k), cam_a probes (query),
                          cam_b gallery, the 316 training ids of the split in ``train`` (both cameras).
``folder``                ``<root>/{train,query,gallery}/<identity>/<image>`` (``train`` optional); a
                          camera ``c<k>`` or ``cam<k>`` at the start of a file name is read, otherwise query
                          images get camera 0 and gallery and train images camera 1, so no gallery image is
                          removed as "same camera".
========================  =====================================================================================

Convention:
    Identities and cameras are the integers of the file names (cameras 0-based for MSMT17 and VIPeR,
    as released otherwise). Files are listed in sorted order, so every reader is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.core.check import check_int, check_option
from lookalike.core.errors import DataNotFoundError, OptionError

__all__ = [
    "BENCHMARKS",
    "IMAGE_SUFFIXES",
    "VIPER_SPLITS",
    "ReidBenchmark",
    "ReidImages",
    "read_benchmark",
    "viper_split",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp")
#: Number of standard VIPeR splits (seeds 0..9).
VIPER_SPLITS = 10
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_FOLDER_CAMERA = re.compile(r"^c(?:am)?(\d+)[_\-.]", re.IGNORECASE)


@dataclass(frozen=True)
class ReidImages:
    """Person crops: ``paths[i]`` shows identity ``ids[i]`` seen by camera ``cams[i]``."""

    paths: tuple[Path, ...]
    ids: np.ndarray
    cams: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", np.asarray(self.ids, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "cams", np.asarray(self.cams, dtype=np.int64).reshape(-1))
        if not len(self.paths) == len(self.ids) == len(self.cams):
            raise OptionError(
                f"ReidImages: expected as many ids and cameras as paths, got {len(self.paths)} "
                f"paths, {len(self.ids)} ids, {len(self.cams)} cameras"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> ReidImages:
        """The images where the boolean mask (or index array) ``keep`` selects."""
        index = np.nonzero(keep)[0] if np.asarray(keep).dtype == bool else np.asarray(keep)
        return ReidImages(tuple(self.paths[i] for i in index), self.ids[index], self.cams[index])


@dataclass(frozen=True)
class ReidBenchmark:
    """A benchmark: training images, queries and gallery; ``single_shot`` for VIPeR-style CMC."""

    name: str
    train: ReidImages
    query: ReidImages
    gallery: ReidImages
    single_shot: bool = False

    def summary(self) -> str:
        """One line: images and identities of each part."""
        parts = [
            f"{part} {len(images)} images / {len(np.unique(images.ids))} ids"
            for part, images in (
                ("train", self.train),
                ("query", self.query),
                ("gallery", self.gallery),
            )
        ]
        return f"{self.name}: " + ", ".join(parts)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _find(root: Path, names: tuple[str, ...], marker: str, benchmark: str) -> Path:
    """``root`` itself when it holds ``marker``, else its first sub-folder among ``names`` that does."""
    root = Path(root).expanduser()
    for folder in (root, *(root / n for n in names)):
        if (folder / marker).exists():
            return folder
    looked = ", ".join(str(root / n / marker) for n in ("", *names))
    raise DataNotFoundError(
        f"{benchmark}: no {marker!r} found; looked in {looked}. Point --data (or root) at the folder "
        "of the release (see lookalike.data.reid.readers for the layouts); nothing is downloaded."
    )


def _market_folder(folder: Path, *, drop: tuple[int, ...]) -> ReidImages:
    paths, ids, cams = [], [], []
    for path in _images(folder):
        match = _MARKET_NAME.match(path.name)
        if match is None:
            continue
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid in drop:
            continue
        paths.append(path), ids.append(pid), cams.append(cam)
    return ReidImages(tuple(paths), ids, cams)


def _market_style(name: str, folder: Path) -> ReidBenchmark:
    return ReidBenchmark(
        name,
        train=_market_folder(folder / "bounding_box_train", drop=(-1, 0)),
        query=_market_folder(folder / "query", drop=(-1,)),
        gallery=_market_folder(folder / "bounding_box_test", drop=(-1,)),
    )


def read_market1501(root: str | Path) -> ReidBenchmark:
    """Market-1501 (Zheng et al. 2015): 751 training ids, 3,368 queries, 19,732 gallery images."""
    names = ("Market-1501-v15.09.15", "Market-1501", "market1501")
    return _market_style("market1501", _find(Path(root), names, "bounding_box_test", "market1501"))


def read_duke(root: str | Path) -> ReidBenchmark:
    """DukeMTMC-reID (Zheng et al. 2017): 702 training ids, 2,228 queries, 17,661 gallery images."""
    names = ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid")
    return _market_style("duke", _find(Path(root), names, "bounding_box_test", "duke"))


def read_cuhk03(root: str | Path, *, variant: str = "labeled") -> ReidBenchmark:
    """CUHK03 767/700 (``variant`` ``"labeled"`` or ``"detected"`` boxes), Market-style release."""
    check_option(variant, ("labeled", "detected"), "variant")
    base = _find(Path(root), ("cuhk03-np", "cuhk03_np", "cuhk03"), variant, "cuhk03")
    return _market_style(f"cuhk03-{variant}", base / variant)


def _msmt_list(folder: Path, list_file: Path) -> ReidImages:
    paths, ids, cams = [], [], []
    for line in list_file.read_text().splitlines():
        if not line.strip():
            continue
        rel, pid = line.split()[:2]
        paths.append(folder / rel)
        ids.append(int(pid))
        cams.append(int(Path(rel).name.split("_")[2]) - 1)
    return ReidImages(tuple(paths), ids, cams)


def read_msmt17(root: str | Path) -> ReidBenchmark:
    """MSMT17 (Wei et al. 2018): 1,041 training ids (train + val lists), 11,659 queries, 82,161 gallery."""
    base = _find(
        Path(root), ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17"), "list_query.txt", "msmt17"
    )
    train_dir = next(
        (base / n for n in ("train", "mask_train_v2") if (base / n).is_dir()), base / "train"
    )
    test_dir = next(
        (base / n for n in ("test", "mask_test_v2") if (base / n).is_dir()), base / "test"
    )
    train, val = (_msmt_list(train_dir, base / f"list_{n}.txt") for n in ("train", "val"))
    train = ReidImages(
        train.paths + val.paths, np.r_[train.ids, val.ids], np.r_[train.cams, val.cams]
    )
    query = _msmt_list(test_dir, base / "list_query.txt")
    gallery = _msmt_list(test_dir, base / "list_gallery.txt")
    return ReidBenchmark("msmt17", train, query, gallery)


def _viper_all(root: Path) -> ReidImages:
    """Every VIPeR image with id (0-based) and camera (0 = cam_a, 1 = cam_b)."""
    try:
        base = _find(root, ("viper", "VIPeR"), "VIPeR_m", "viper") / "VIPeR_m"
        paths = [p for p in _images(base) if re.fullmatch(r"\d{8}", p.stem)]
        ids = [int(p.stem[:4]) - 1 for p in paths]
        cams = [int(p.stem[4:]) - 1 for p in paths]
        return ReidImages(tuple(paths), ids, cams)
    except DataNotFoundError:
        base = _find(root, ("viper", "VIPeR"), "cam_a", "viper")
    cam_a, cam_b = _images(base / "cam_a"), _images(base / "cam_b")
    if len(cam_a) != len(cam_b):
        raise DataNotFoundError(
            f"viper: expected as many cam_a as cam_b images in {base}, got {len(cam_a)} and {len(cam_b)}"
        )
    n = len(cam_a)
    return ReidImages(tuple(cam_a + cam_b), np.r_[np.arange(n), np.arange(n)], np.repeat([0, 1], n))


def viper_split(n_ids: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_ids, test_ids)`` of VIPeR split ``split``: a permutation of ``n_ids`` by seed ``split``.

    Example:
        >>> train, test = viper_split(632, 0)
        >>> len(train), len(test), len(set(train) & set(test))
        (316, 316, 0)
    """
    check_int(split, "split", 0)
    perm = np.random.default_rng(int(split)).permutation(n_ids)
    half = n_ids // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def read_viper(root: str | Path, *, split: int = 0) -> ReidBenchmark:
    """VIPeR split ``split``: train on its 316 training ids, cam_a probes vs cam_b gallery of the rest."""
    images = _viper_all(Path(root))
    if len(images) == 0:
        raise DataNotFoundError(f"viper: no IIIICCCC images found below {root}")
    ids = np.unique(images.ids)
    train_ids, test_ids = viper_split(len(ids), split)
    train_ids, test_ids = ids[train_ids], ids[test_ids]
    test = np.isin(images.ids, test_ids)
    return ReidBenchmark(
        f"viper-split{split}",
        train=images.subset(np.isin(images.ids, train_ids)),
        query=images.subset(test & (images.cams == 0)),
        gallery=images.subset(test & (images.cams == 1)),
        single_shot=True,
    )


def _folder_part(folder: Path, default_cam: int, id_of: dict[str, int]) -> ReidImages:
    paths, ids, cams = [], [], []
    if folder.is_dir():
        for person in sorted(p for p in folder.iterdir() if p.is_dir()):
            pid = id_of.setdefault(person.name, len(id_of))
            for path in _images(person):
                match = _FOLDER_CAMERA.match(path.name)
                paths.append(path), ids.append(pid)
                cams.append(int(match.group(1)) if match else default_cam)
    return ReidImages(tuple(paths), ids, cams)


def read_reid_folder(root: str | Path) -> ReidBenchmark:
    """A custom layout: ``query/`` and ``gallery/`` (and optional ``train/``) of per-identity folders."""
    base = _find(Path(root), (), "gallery", "folder")
    id_of: dict[str, int] = {}
    query = _folder_part(base / "query", 0, id_of)
    gallery = _folder_part(base / "gallery", 1, id_of)
    train = _folder_part(base / "train", 1, {})
    if len(query) == 0 or len(gallery) == 0:
        raise DataNotFoundError(
            f"folder: expected images in {base / 'query'} and {base / 'gallery'}"
        )
    return ReidBenchmark(f"folder:{base.name}", train, query, gallery)


#: Benchmark name -> reader (``read_benchmark`` passes ``split`` to VIPeR, ``variant`` to CUHK03).
BENCHMARKS: dict[str, Callable[..., ReidBenchmark]] = {
    "market1501": read_market1501,
    "duke": read_duke,
    "msmt17": read_msmt17,
    "cuhk03": read_cuhk03,
    "viper": read_viper,
    "folder": read_reid_folder,
}


def read_benchmark(
    name: str, root: str | Path, *, split: int = 0, variant: str = "labeled"
) -> ReidBenchmark:
    """Read benchmark ``name`` (a key of :data:`BENCHMARKS`) from ``root``.

    Raises:
        OptionError: unknown name. DataNotFoundError: the layout is not found below ``root``.
    """
    check_option(name, list(BENCHMARKS), "benchmark")
    if name == "viper":
        return read_viper(root, split=split)
    if name == "cuhk03":
        return read_cuhk03(root, variant=variant)
    return BENCHMARKS[name](root)
