"""Image files to index rows: the one describing path behind ``lookalike index``, ``search`` and the service.

- :func:`list_images` finds the image files of a folder (recursively, by suffix, sorted).
- :func:`load_descriptor` builds a global image descriptor from ``name[:weights]`` and hashes its
  weights file (the index manifest keeps both; opening an index with other weights is an error).
- :func:`iter_describe` reads files with :func:`lookalike.eval.protocols.retrieval.read_rgb` and
  describes them in batches with :func:`lookalike.eval.protocols.retrieval.describe_images`;
  unreadable files are skipped and listed with the reason.
- :func:`describe_query` describes one query image (encoded bytes or a path).

Index folders built from images (resumable builds, adds) are :mod:`lookalike.index.image_index`.

Convention:
    - Ids are POSIX paths relative to the image folder (``"sub/a.jpg"``); a file outside that folder
      gets its absolute path as id. Metadata: ``{"path": absolute path, "width": W, "height": H}``
      in pixels of the original file.
    - Image files are those with a suffix of :data:`IMAGE_SUFFIXES` (any case); hidden files and
      folders (``.name``) are ignored. A listed file that cannot be read (not an image, empty,
      truncated, above the decompression-bomb limit) is skipped, never fatal.
    - Images and queries are read as RGB, shrunk to a longer side of at most ``max_size`` pixels
      (default 512) and described by the same network; the index compares rows by cosine.
    - A learned descriptor without weights (``allow_random``) is initialised with seed 0, so that
      an index build and every later query describe with the same random network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.errors import DataNotFoundError, LookalikeError, OptionError
from lookalike.index.base import check_k

__all__ = [
    "DEFAULT_MAX_SIZE",
    "IMAGE_SUFFIXES",
    "DescribedImages",
    "IndexDescriptor",
    "describe_query",
    "image_id",
    "iter_describe",
    "list_images",
    "load_descriptor",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm",
)  # fmt: skip
DEFAULT_MAX_SIZE = 512


# ---------------------------------------------------------------------- files and ids
def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files below ``folder`` (recursive), sorted by relative path (see the Convention).

    Raises:
        DataNotFoundError: ``folder`` is not an existing folder.

    Example:
        >>> list_images(tempfile.mkdtemp())
        []
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder not found: {root} is not an existing folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def image_id(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str:
    """The id of an image file: its POSIX path relative to ``root``, else its absolute path.

    Example:
        >>> image_id("/photos/sub/a.jpg", "/photos"), image_id("/elsewhere/b.png", "/photos")
        ('sub/a.jpg', '/elsewhere/b.png')
    """
    file = Path(os.path.abspath(Path(path).expanduser()))
    if root is not None:
        base = Path(os.path.abspath(Path(root).expanduser()))
        if file.is_relative_to(base) and file != base:
            return file.relative_to(base).as_posix()
    return file.as_posix()


# ---------------------------------------------------------------------- the descriptor
@dataclass(frozen=True)
class IndexDescriptor:
    """A global image descriptor ready to describe, with what the index manifest records.

    Attributes:
        model: the descriptor module (eval mode, on ``device``).
        spec: ``name`` or ``name:weights`` as stored in the manifest (weights files made absolute).
        sha256: SHA-256 of the weights file, ``None`` without weights.
        dim: row width.
        device: where the model runs.
        random_weights: a learned network without weights (seed 0, see the module Convention).
    """

    model: Any = field(repr=False)
    spec: str
    sha256: str | None
    dim: int
    device: str = "cpu"
    random_weights: bool = False


def _normalise_spec(spec: str) -> tuple[Any, str, Path | None]:
    """The registry entry, ``spec`` with a weights *file* made absolute, and the weights file."""
    from lookalike._registry import get_entry, resolve_weights, split_spec

    name, weights = split_spec(spec)
    entry = get_entry("descriptor", name)
    if weights is None:
        return entry, name, None
    path = resolve_weights(entry, weights)
    if weights in entry.weights:
        return entry, f"{name}:{weights}", path
    return entry, f"{name}:{path.resolve().as_posix()}", path


def load_descriptor(
    spec: str | None = None, *, allow_random: bool = False, device: str = "cpu"
) -> IndexDescriptor:
    """Build the global image descriptor ``spec`` (default: the best shipped one).

    Args:
        spec: ``name`` or ``name:weights`` (a shipped weights name or a weights file).
        allow_random: accept a learned network without weights (seed 0, see the Convention).
        device: torch device to describe on.

    Raises:
        RegistryError: unknown descriptor. WeightsError: unreadable weights.
        OptionError: not a global image descriptor (e.g. a patch network), or a learned network
            without weights and without ``allow_random``.
    """
    import torch

    import lookalike
    from lookalike.core.weights import sha256_file
    from lookalike.descriptors.image.shipped import best_shipped_global_descriptor

    spec = best_shipped_global_descriptor() if spec is None else spec
    if not isinstance(spec, str) or not spec:
        raise OptionError(f"descriptor: expected 'name' or 'name:weights', got {spec!r}")
    entry, full, weights_file = _normalise_spec(spec)
    random = weights_file is None and bool(getattr(entry.factory, "needs_weights", False))
    if random and not allow_random:
        raise OptionError(
            f"descriptor {full!r} is a learned network and no weights were given: use "
            f"{full}:WEIGHTS, or allow random weights for experiments"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = lookalike.create("descriptor", full)
    spec_in = getattr(model, "input_spec", None)
    ok = spec_in is not None and spec_in.channels == 3 and isinstance(spec_in.size, tuple)
    if not ok or not isinstance(getattr(model, "dim", None), int):
        raise OptionError(
            f"descriptor {full!r}: expected a global image descriptor (3-channel images of any "
            f"size to one row), got {type(model).__name__}"
        )
    model = model.to(device).eval()
    sha = None if weights_file is None else sha256_file(weights_file)
    members = getattr(model, "weights_files", None)
    files = members() if sha is None and callable(members) else []
    if files:  # a composite (an ensemble of shipped members): one digest over its members' digests
        sha = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
    return IndexDescriptor(
        model=model, spec=full, sha256=sha, dim=int(model.dim), device=device, random_weights=random
    )


@lru_cache(maxsize=4)
def _cached_descriptor(spec: str) -> IndexDescriptor:
    return load_descriptor(spec)


# ---------------------------------------------------------------------- describing
@dataclass
class DescribedImages:
    """Rows of image files, and the files that could not be read.

    Attributes:
        ids: one id per row (see :func:`image_id`).
        rows: ``(N, D)`` float32 descriptor rows.
        metadata: one ``{"path", "width", "height"}`` dict per row.
        skipped: ``(path, reason)`` of every unreadable file.
    """

    ids: list[str]
    rows: np.ndarray
    metadata: list[dict[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


_READ_ERRORS = (LookalikeError, OSError)


def _size(path: Path) -> tuple[int, int]:
    from lookalike.data.images import image_size, read_image

    size = image_size(path)  # the header, without decoding
    return size if size is not None else read_image(path, gray=False).shape[:2]


def _describe_batch(
    desc: IndexDescriptor, paths: list[Path], max_size: int, batch_size: int
) -> tuple[list[Path], np.ndarray, list[tuple[str, str]]]:
    """Rows of the readable ``paths``; when a file fails, each file is read on its own to find it."""
    from lookalike.eval.protocols.retrieval import describe_images, read_rgb

    def run(part: list[Path]) -> np.ndarray:
        rows = describe_images(
            desc.model, part, max_size=max_size, batch_size=batch_size, device=desc.device
        )
        return rows.numpy().astype(np.float32, copy=False)

    try:
        return paths, run(paths), []
    except _READ_ERRORS:
        pass
    good, skipped = [], []
    for p in paths:
        try:
            read_rgb(p, max_size=max_size)
        except _READ_ERRORS as exc:
            skipped.append((str(p), " ".join(str(exc).split()) or type(exc).__name__))
            continue
        good.append(p)
    rows = run(good) if good else np.zeros((0, desc.dim), np.float32)
    return good, rows, skipped


def iter_describe(
    desc: IndexDescriptor,
    paths: Sequence[str | os.PathLike[str]],
    *,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Iterator[DescribedImages]:
    """Describe ``paths`` in batches of ``batch_size``; yields one :class:`DescribedImages` per batch.

    Each file is read once when its batch reads cleanly (a batch with an unreadable file is read
    again file by file to tell which). Ids are relative to ``root`` (see :func:`image_id`).

    Raises:
        OptionError: a bad ``batch_size`` or ``max_size``.
    """
    check_k(batch_size)
    check_k(max_size)
    files = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
    for start in range(0, len(files), batch_size):
        good, rows, skipped = _describe_batch(
            desc, files[start : start + batch_size], max_size, batch_size
        )
        meta, keep, sizes = [], [], []
        for i, p in enumerate(good):
            try:  # the header could still be odd: a file we cannot size is skipped too
                sizes.append(_size(p))
                keep.append(i)
            except _READ_ERRORS as exc:
                skipped.append((str(p), " ".join(str(exc).split())))
        for i, (height, width) in zip(keep, sizes):
            meta.append({"path": good[i].as_posix(), "width": int(width), "height": int(height)})
        yield DescribedImages(
            ids=[image_id(good[i], root) for i in keep],
            rows=rows[keep],
            metadata=meta,
            skipped=skipped,
        )


def describe_query(
    descriptor: IndexDescriptor | str,
    image: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    max_size: int = DEFAULT_MAX_SIZE,
) -> np.ndarray:
    """The ``(dim,)`` float32 row of one query image, read as the indexed images were.

    Args:
        descriptor: an :class:`IndexDescriptor` (from :func:`load_descriptor`, or the
            ``descriptor`` of :func:`lookalike.index.image_index.open_image_index`) or a spec
            (built once and cached).
        image: the encoded file's bytes (PNG, JPEG, ...; written to a private temporary file
            that is removed afterwards) or a path.
        max_size: longer side the image is shrunk to (use the index folder's ``max_size``).

    Raises:
        ImageError: not a decodable image, empty, or above the decompression-bomb limit.
        DataNotFoundError: a path that does not exist.

    Example:
        >>> import cv2, numpy as np
        >>> png = cv2.imencode(".png", np.full((20, 30, 3), 200, np.uint8))[1].tobytes()
        >>> describe_query("color-hist", png).shape
        (512,)
    """
    from lookalike.eval.protocols.retrieval import describe_images

    desc = _cached_descriptor(descriptor) if isinstance(descriptor, str) else descriptor
    if not isinstance(desc, IndexDescriptor):
        raise OptionError(
            f"descriptor: expected an IndexDescriptor or a spec, got {type(descriptor).__name__}"
        )
    check_k(max_size)
    if isinstance(image, (bytes, bytearray, memoryview)):
        handle, name = tempfile.mkstemp(prefix="lookalike-query-")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(image)
            return describe_query(desc, name, max_size=max_size)
        finally:
            os.unlink(name)
    if not isinstance(image, (str, os.PathLike)):
        raise OptionError(f"image: expected bytes or a path, got {type(image).__name__}")
    rows = describe_images(desc.model, [Path(image)], max_size=max_size, device=desc.device)
    return rows[0].numpy().astype(np.float32, copy=False)
