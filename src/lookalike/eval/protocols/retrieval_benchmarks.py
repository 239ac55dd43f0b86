"""Retrieval benchmarks read from their folders: UKBench, scenes (homography sequences), ROxford/RParis
(revisited), GLDv2. :func:`load_benchmark` returns a :class:`RetrievalBenchmark` for the ``retrieval``
protocol (:mod:`lookalike.eval.protocols.retrieval`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.check import check_option
from lookalike.core.errors import DataNotFoundError, OptionError, ShapeError

__all__ = [
    "BENCHMARKS",
    "SCENE_ALIASES",
    "CroppedImages",
    "RetrievalBenchmark",
    "load_benchmark",
    "scene_key",
]

BENCHMARKS = ("ukbench", "scenes", "revisited", "gldv2")


@dataclass
class RetrievalBenchmark:
    """What a retrieval protocol needs: images, which queries, and their ground truth.

    Attributes:
        name: ``ukbench``, ``scenes``, ``roxford5k``, ``rparis6k``.
        kind: ``ukbench``, ``scenes`` or ``revisited`` (selects the metrics).
        database: database image files.
        queries: query image files; ``None`` when every database image is also a query.
        labels: ``(N,)`` group of each database image (ukbench, scenes).
        ground_truth: per query ``{"easy", "hard", "junk"}`` (revisited).
        boxes: per query ``(x1, y1, x2, y2)`` crop box or ``None`` (revisited).
    """

    name: str
    kind: str
    database: list[Path]
    queries: list[Path] | None = None
    labels: np.ndarray | None = None
    ground_truth: list[dict[str, Any]] | None = None
    boxes: list[Any] | None = field(default=None, repr=False)

    @property
    def num_queries(self) -> int:
        return len(self.database) if self.queries is None else len(self.queries)

    def query_images(self) -> Sequence[Any]:
        """One image per query: its file, or (revisited) a lazy sequence of RGB crops to its box."""
        if self.queries is None:
            return self.database
        if self.boxes is not None and any(b is not None for b in self.boxes):
            return CroppedImages(self.queries, self.boxes)
        return self.queries


class CroppedImages(Sequence):
    """``(H, W, 3)`` uint8 RGB crops of image files to ``(x1, y1, x2, y2)`` boxes, read on access.

    A ``None`` box keeps the whole image; the crop is the one :func:`~lookalike.eval.protocols.retrieval.read_rgb`
    makes (rounded box, at least one pixel).
    """

    def __init__(self, paths: Sequence[Path], boxes: Sequence[Any]) -> None:
        if len(paths) != len(boxes):
            raise ShapeError(f"boxes: expected one per image ({len(paths)}), got {len(boxes)}")
        self.paths, self.boxes = list(paths), list(boxes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, (int, np.integer)):
            raise OptionError(f"CroppedImages: expected an integer index, got {i!r}")
        from lookalike.data.images import read_image

        rgb, box = read_image(self.paths[i], gray=False), self.boxes[i]
        if box is None:
            return rgb
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        crop = rgb[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
        return np.ascontiguousarray(crop)


# ----------------------------------------------------------------------------------- loading
def _ukbench(root: Path) -> RetrievalBenchmark:
    files = sorted(root.rglob("ukbench*.jpg"))
    pattern = re.compile(r"ukbench(\d+)\.jpg$")
    numbered = [(int(m.group(1)), p) for p in files if (m := pattern.search(p.name))]
    if not numbered:
        raise DataNotFoundError(f"ukbench: no ukbenchNNNNN.jpg below {root}")
    numbered.sort()
    return RetrievalBenchmark(
        name="ukbench",
        kind="ukbench",
        database=[p for _, p in numbered],
        labels=np.array([i // 4 for i, _ in numbered]),
    )


#: Sequences of different releases that show the same scene (after dropping HPatches' ``v_``/``i_``
#: prefix): HPatches' ``v_graffiti`` is Oxford's ``graf`` (its SOURCE.txt says so), and EVD's ``graf``
#: pair is Oxford's ``graf`` images 1 and 6. Without this, retrieving a copy of the scene counted as
#: an error.
SCENE_ALIASES: dict[str, str] = {"graffiti": "graf"}


def scene_key(name: str) -> str:
    """The scene a sequence shows, from its name (``"hpatches-sequences/v_graffiti"`` -> ``"graf"``).

    Example:
        >>> scene_key("hpatches-sequences/v_graffiti"), scene_key("evd/graf"), scene_key("oxford-affine/boat")
        ('graf', 'graf', 'boat')
    """
    base = re.sub(r"^[vi]_", "", str(name).replace("\\", "/").rsplit("/", 1)[-1])
    return SCENE_ALIASES.get(base, base)


def _scenes(root: Path) -> RetrievalBenchmark:
    from lookalike.data.sequences import find_sequences

    sequences = find_sequences(root)
    images, labels, scenes = [], [], {}
    for seq in sequences:
        paths = [Path(p) for p in seq.images]
        label = scenes.setdefault(scene_key(seq.name), len(scenes))
        images += paths
        labels += [label] * len(paths)
    if not images:
        raise DataNotFoundError(f"scenes: no homography sequence below {root}")
    return RetrievalBenchmark(
        name="scenes", kind="scenes", database=images, labels=np.array(labels)
    )


def _revisited(root: Path) -> RetrievalBenchmark:
    from lookalike.data.revisited import read_revisited

    names = [n for n in ("roxford5k", "rparis6k") if (root / n / f"gnd_{n}.pkl").is_file()]
    if not names:
        raise DataNotFoundError(
            f"revisited: no roxford5k/gnd_roxford5k.pkl or rparis6k/gnd_rparis6k.pkl below {root}"
        )
    data = read_revisited(root, names[0])
    return RetrievalBenchmark(
        name=data.name,
        kind="revisited",
        database=data.images,
        queries=data.queries,
        ground_truth=data.ground_truth,
        boxes=[g.get("bbx") for g in data.ground_truth],
    )


def _gldv2(root: Path) -> RetrievalBenchmark:
    import csv

    from lookalike.data.gldv2 import gldv2_image_path

    solution = next(iter(sorted(root.glob("retrieval_solution*.csv"))), None)
    if solution is None:
        raise DataNotFoundError(f"gldv2: no retrieval_solution*.csv in {root}")
    index_csv = root / "index.csv"
    if index_csv.is_file():
        with index_csv.open(newline="") as fh:
            ids = [row["id"] for row in csv.DictReader(fh)]
        database = [gldv2_image_path(root, i, "index") for i in ids]
    else:
        database = sorted((root / "index").rglob("*.jpg"))
    position = {p.stem: i for i, p in enumerate(database)}
    queries, truth = [], []
    with solution.open(newline="") as fh:
        for row in csv.DictReader(fh):
            images = (row.get("images") or "").split()
            if not images or images == ["None"]:
                continue  # non-landmark query: not scored in the retrieval challenge
            queries.append(gldv2_image_path(root, row["id"], "test"))
            truth.append(
                {"relevant": np.array([position[i] for i in images if i in position], np.int64)}
            )
    if not database or not queries:
        raise DataNotFoundError(f"gldv2: no index images or no scored test query below {root}")
    return RetrievalBenchmark(
        name="gldv2", kind="gldv2", database=database, queries=queries, ground_truth=truth
    )


def load_benchmark(
    benchmark: str, data: str | os.PathLike[str] | None = None
) -> RetrievalBenchmark:
    """Find a benchmark below ``data`` (default: ``LOOKALIKE_DATA``); see the module table.

    Raises:
        OptionError: unknown benchmark.
        DataNotFoundError: the folder or the benchmark's files are missing.
    """
    from lookalike.core.data import data_root

    check_option(benchmark, BENCHMARKS, "benchmark")
    root = Path(data).expanduser() if data is not None else data_root()
    if not root.is_dir():
        raise DataNotFoundError(f"no such folder: {root}; set LOOKALIKE_DATA or pass --data")
    loaders = {"ukbench": _ukbench, "scenes": _scenes, "revisited": _revisited, "gldv2": _gldv2}
    return loaders[benchmark](root)


# ----------------------------------------------------------------------------------- describing
