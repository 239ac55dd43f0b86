"""Index folders built from image files: resumable ``build``, ``add``, and opening with the descriptor.

An index folder is a :class:`~lookalike.index.faiss.FaissIndex` saved atomically
(:mod:`lookalike.index.io`; the manifest names the descriptor and its weights' SHA-256) plus two
files written after each save:

- ``images.json``: how images were read (descriptor spec, ``max_size``, the image folder ids are
  relative to, index type, whether the descriptor has random weights, how many files were skipped);
- ``skipped.txt``: one ``path<TAB>reason`` line per file the last build could not read.

Convention:
    - Index types (:func:`index_factory`): ``flat`` (exact faiss ``Flat``), ``hnsw`` (``HNSW32``),
      ``ivf`` (``IVF{nlist},Flat``) and ``ivfpq`` (``IVF{nlist},PQ{m}``, 8-bit codes, ``m`` the
      largest divisor of the width at most ``width / 8``). ``nlist`` is the power of two nearest
      ``4 sqrt(N)``, at most ``N / 39`` (faiss's 39 training vectors per list); ``ivf`` needs at
      least 156 images (4 lists) and ``ivfpq`` 9,984 (39 per PQ centroid). Fewer is a
      :class:`~lookalike.index.base.TooFewVectorsError` that names ``flat``: never a silent fallback.
      Every type compares rows by cosine. IVF-PQ skips faiss's polysemous training (a reordering
      of the PQ codes that only polysemous search uses; it took minutes on a 20k sample here).
    - Resuming: :func:`build_index` saves after every ``save_every`` new images, or every 10% of
      the index's size when that is more (each save rewrites the whole index, so a large build
      writes about 11 times its final size, not ``N / save_every`` times), and when interrupted
      (``KeyboardInterrupt`` or an error); a rerun describes only the images whose id is not in the
      index. A hard kill loses at most the images described since the last save. ``ivf``/``ivfpq`` first
      collect 39 images per centroid (or all of them) to train, and save only once trained.
    - Ids and metadata are those of :mod:`lookalike.index.images`. An image whose id is already in
      the index is never described again (``build`` and ``add`` count it as present).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.check import check_option
from lookalike.core.errors import DataNotFoundError, EmptyInputError, OptionError
from lookalike.index.base import IndexMismatchError, TooFewVectorsError, check_k
from lookalike.index.images import (
    DEFAULT_MAX_SIZE,
    IMAGE_SUFFIXES,
    IndexDescriptor,
    _normalise_spec,
    image_id,
    iter_describe,
    list_images,
    load_descriptor,
)

__all__ = [
    "INDEX_TYPES",
    "BuildReport",
    "ImageIndex",
    "add_images",
    "build_index",
    "index_factory",
    "open_image_index",
    "read_settings",
]

INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw", "ivfpq")
SETTINGS = "images.json"
SKIPPED = "skipped.txt"
_PER_LIST = 39  # faiss's least training vectors per centroid
_MIN_LISTS = 4
_PQ_CENTROIDS = 256  # 8-bit codes


def index_factory(kind: str, n: int, dim: int) -> str:
    """The faiss factory string of index type ``kind`` for ``n`` images of ``dim`` values.

    Raises:
        OptionError: unknown type, or a bad count or width.
        TooFewVectorsError: too few images to train ``ivf`` / ``ivfpq`` (see the Convention).

    Example:
        >>> index_factory("flat", 10, 512), index_factory("ivf", 10_000, 512)
        ('Flat', 'IVF256,Flat')
        >>> index_factory("ivfpq", 1_000_000, 128)
        'IVF4096,PQ16'
    """
    check_option(kind, INDEX_TYPES, "index type")
    check_k(dim)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise OptionError(f"n: expected a count >= 0, got {n!r}")
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return "HNSW32"
    need = _PER_LIST * (_PQ_CENTROIDS if kind == "ivfpq" else _MIN_LISTS)
    if n < need:
        raise TooFewVectorsError(
            f"index type {kind!r} needs at least {need} images to train ({_PER_LIST} per "
            f"{'PQ centroid' if kind == 'ivfpq' else 'inverted list, at least 4 lists'}), got {n}: "
            f"use --type flat (exact, fast up to about a million images) or --type hnsw"
        )
    near = 2 ** round(math.log2(4 * math.sqrt(n)))
    nlist = max(_MIN_LISTS, min(near, 2 ** int(math.log2(n // _PER_LIST))))
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    m = max(d for d in range(1, max(1, dim // 8) + 1) if dim % d == 0)
    return f"IVF{nlist},PQ{m}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """How the images of an index folder were read (``images.json``); ``{}`` when absent.

    Keys: ``descriptor``, ``max_size``, ``root`` (the image folder, or ``None``), ``type``,
    ``random_weights``, ``skipped`` (files the last build could not read).
    """
    file = Path(path).expanduser() / SETTINGS
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise IndexMismatchError(f"{file}: unreadable image settings ({exc})") from exc
    if not isinstance(data, dict):
        raise IndexMismatchError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


@dataclass
class ImageIndex:
    """An index folder of images: the index, its descriptor and how its images are read.

    Attributes:
        path: the index folder.
        index: the :class:`~lookalike.index._local.LocalIndex`.
        descriptor: the descriptor its rows come from.
        max_size: longer side images (and queries) are shrunk to.
        root: the image folder ids are relative to (``None``: absolute paths).
        type: the index type it was built as (:data:`INDEX_TYPES`), if known.
        random_weights: built with a learned descriptor without weights.
    """

    path: Path
    index: Any
    descriptor: IndexDescriptor
    max_size: int = DEFAULT_MAX_SIZE
    root: Path | None = None
    type: str | None = None
    random_weights: bool = False

    def save(self, skipped: list[tuple[str, str]] | None = None) -> None:
        """Save the index atomically, then its image settings (:meth:`save_settings`)."""
        self.index.save(self.path)
        self.save_settings(skipped)

    def save_settings(self, skipped: list[tuple[str, str]] | None = None) -> None:
        """Write ``images.json`` (and ``skipped.txt`` when ``skipped`` is given) atomically."""
        settings = {
            "descriptor": self.descriptor.spec,
            "max_size": self.max_size,
            "root": None if self.root is None else self.root.as_posix(),
            "type": self.type,
            "random_weights": self.random_weights,
        }
        old = read_settings(self.path)
        settings["skipped"] = old.get("skipped", 0) if skipped is None else len(skipped)
        _write_atomic(self.path / SETTINGS, json.dumps(settings, indent=2) + "\n")
        if skipped is not None:
            _write_atomic(self.path / SKIPPED, "".join(f"{p}\t{r}\n" for p, r in skipped))


def open_image_index(
    path: str | os.PathLike[str], *, allow_random: bool = False, device: str = "cpu"
) -> ImageIndex:
    """Open an index folder with the descriptor its manifest names (weights checked by SHA-256).

    Raises:
        DataNotFoundError: no index there.
        IndexMismatchError: no descriptor recorded, or weights whose SHA-256 differs.
        CorruptIndexError: a damaged file.
    """
    from lookalike.index._local import load_index
    from lookalike.index.io import read_manifest

    folder = Path(path).expanduser()
    manifest = read_manifest(folder)
    settings = read_settings(folder)
    spec = manifest.get("descriptor")
    if not spec:
        raise IndexMismatchError(
            f"the index at {folder} records no descriptor, so queries cannot be described: "
            f"build it with 'lookalike index build'"
        )
    allow = allow_random or bool(settings.get("random_weights"))
    desc = load_descriptor(spec, allow_random=allow, device=device)
    index = load_index(folder, descriptor=desc.spec, descriptor_sha256=desc.sha256)
    root = settings.get("root")
    return ImageIndex(
        path=folder,
        index=index,
        descriptor=desc,
        max_size=int(settings.get("max_size", DEFAULT_MAX_SIZE)),
        root=None if root is None else Path(root),
        type=settings.get("type"),
        random_weights=bool(settings.get("random_weights", False)),
    )


@dataclass(frozen=True)
class BuildReport:
    """What a build or an add did.

    Attributes:
        path: the index folder.
        found: image files considered.
        present: of those, already in the index (not described again).
        added: newly described and added.
        skipped: ``(path, reason)`` of the files that could not be read.
        count: items in the index now.
    """

    path: Path
    found: int
    present: int
    added: int
    skipped: list[tuple[str, str]]
    count: int


def _fill(
    target: ImageIndex,
    paths: list[Path],
    *,
    batch_size: int,
    save_every: int,
    progress: Callable[[int, int], None] | None,
    record_skipped: bool,
) -> tuple[int, list[tuple[str, str]]]:
    """Describe ``paths`` into the index, saving every ``save_every`` images and on an interrupt."""
    index = target.index
    ids: list[str] = []
    rows: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    state = {"added": 0, "need": 0 if index.is_trained else _PER_LIST * index.min_train_size()}

    def flush(final: bool) -> None:
        every = max(save_every, state["need"], len(index) // 10)
        if not ids or (not final and len(ids) < every):
            return
        index.add(list(ids), np.concatenate(rows), list(meta))
        state["added"] += len(ids)
        state["need"] = 0
        ids.clear(), rows.clear(), meta.clear()
        target.save(skipped if record_skipped else None)

    done = 0
    try:
        for chunk in iter_describe(
            target.descriptor,
            paths,
            root=target.root,
            batch_size=batch_size,
            max_size=target.max_size,
        ):
            ids.extend(chunk.ids), rows.append(chunk.rows), meta.extend(chunk.metadata)
            skipped.extend(chunk.skipped)
            done += len(chunk) + len(chunk.skipped)
            flush(final=False)
            if progress is not None:
                progress(done, len(paths))
    except BaseException:
        if index.is_trained:  # keep what is described (an untrained index waits for a full sample)
            with contextlib.suppress(Exception):
                flush(final=True)
        raise
    flush(final=True)
    if record_skipped and len(index) and not state["added"]:
        target.save_settings(skipped)  # nothing new: record this run's skipped files anyway
    return state["added"], skipped


def _resume(
    out: Path,
    root: Path,
    descriptor: str | None,
    kind: str | None,
    max_size: int | None,
    device: str,
) -> ImageIndex:
    target = open_image_index(out, device=device)
    wanted = {
        "image folder": (root, target.root),
        "index type": (kind, target.type),
        "max size": (max_size, target.max_size),
        "descriptor": (
            None if descriptor is None else _normalise_spec(descriptor)[1],
            target.descriptor.spec,
        ),
    }
    for what, (asked, built) in wanted.items():
        if asked is not None and asked != built:
            raise IndexMismatchError(
                f"{out} was built with {what} {str(built)!r}, not {str(asked)!r}: resume with the "
                f"same options, use 'lookalike index add' for other images, or build a new index"
            )
    return target


def _new_index(factory: str, desc: IndexDescriptor) -> Any:
    """A cosine faiss index (IVF-PQ skips faiss's polysemous training: see ``FaissIndex``)."""
    import lookalike

    return lookalike.create(
        "index",
        "faiss",
        dim=desc.dim,
        metric="cosine",
        factory=factory,
        descriptor=desc.spec,
        descriptor_sha256=desc.sha256,
    )


def build_index(
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    descriptor: str | None = None,
    kind: str | None = None,
    batch_size: int = 16,
    max_size: int | None = None,
    save_every: int = 1000,
    allow_random: bool = False,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build (or resume building) the index folder ``out`` from the images below ``images_dir``.

    Args:
        images_dir: the image folder (searched recursively; ids are paths relative to it).
        out: the index folder; an existing index is resumed (same folder, type and descriptor).
        descriptor: ``name[:weights]`` (default: the index's, or the best shipped descriptor).
        kind: :data:`INDEX_TYPES` (default: the index's, or ``flat``).
        batch_size: images described at once.
        max_size: longer side images are shrunk to (default: the index's, or 512).
        save_every: save after this many newly described images, or 10% of the index when more
            (and on an interrupt).
        allow_random: accept a learned descriptor without weights.
        device: torch device to describe on.
        progress: called with ``(done, total)`` after each batch.

    Raises:
        EmptyInputError: no image file, or none readable, in a new index.
        IndexMismatchError: resuming with another folder, type, max size or descriptor.
        TooFewVectorsError: too few images for ``ivf`` / ``ivfpq``.
    """
    from lookalike.index.io import MANIFEST

    root = Path(os.path.abspath(Path(images_dir).expanduser()))
    out = Path(out).expanduser()
    inside = Path(os.path.abspath(out))  # an index folder inside the images is not indexed
    paths = [p for p in list_images(root) if not p.is_relative_to(inside)]
    check_k(save_every)
    if kind is not None:
        check_option(kind, INDEX_TYPES, "index type")
    if max_size is not None:
        check_k(max_size)
    if not paths:
        raise EmptyInputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found below {root}")
    if (out / MANIFEST).is_file():
        target = _resume(out, root, descriptor, kind, max_size, device)
    else:
        desc = load_descriptor(descriptor, allow_random=allow_random, device=device)
        kind = kind or "flat"
        index = _new_index(index_factory(kind, len(paths), desc.dim), desc)
        target = ImageIndex(
            out, index, desc, max_size or DEFAULT_MAX_SIZE, root, kind, desc.random_weights
        )
    todo = [p for p in paths if image_id(p, root) not in target.index]
    added, skipped = _fill(
        target,
        todo,
        batch_size=batch_size,
        save_every=save_every,
        progress=progress,
        record_skipped=True,
    )
    if not len(target.index):
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise EmptyInputError(f"no readable image below {root} ({len(skipped)} skipped: {reasons})")
    count = len(target.index)
    return BuildReport(out, len(paths), len(paths) - len(todo), added, skipped, count)


def add_images(
    index_dir: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 16,
    save_every: int = 1000,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Describe image files and folders into an existing index (ids as in the module Convention).

    Images whose id is already in the index are left alone (counted in ``present``).

    Raises:
        DataNotFoundError: a missing input, or no index at ``index_dir``.
        EmptyInputError: no input, or no image file in them.
    """
    if isinstance(inputs, (str, os.PathLike)) or not inputs:
        raise EmptyInputError(f"inputs: expected a list of image files or folders, got {inputs!r}")
    target = open_image_index(index_dir, device=device)
    paths: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            paths.extend(list_images(p))
        elif p.is_file():
            paths.append(p)
        else:
            raise DataNotFoundError(f"image file or folder not found: {p}")
    unique = list(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))
    if not unique:
        raise EmptyInputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {list(inputs)}")
    todo = [p for p in unique if image_id(p, target.root) not in target.index]
    added, skipped = _fill(
        target,
        todo,
        batch_size=batch_size,
        save_every=save_every,
        progress=progress,
        record_skipped=False,
    )
    count = len(target.index)
    return BuildReport(target.path, len(unique), len(unique) - len(todo), added, skipped, count)
