"""Atomic persistence of a local index: one directory, a manifest, checksummed files.

Layout of an index directory::

    INDEX/
      manifest.json           format, version, backend, dim, metric, descriptor, count, files + sha256
      items-000007.sqlite     ids and metadata (SQLite)
      index-000007.faiss      the vectors (a faiss index, or vectors-000007.npy for ``flat``)
      .lock                   taken by a writer while it saves

A save writes the files of version ``v + 1`` next to the current ones (each first as ``NAME.partial``,
flushed with ``fsync`` and renamed), then writes ``manifest.json.partial``, fsyncs it and renames it
over ``manifest.json`` (an atomic ``rename``), fsyncs the directory, and only then deletes the files of
version ``v``. Until that rename, ``manifest.json`` names version ``v``, whose files are untouched: a
writer killed at any moment leaves the previous version loadable (leftovers are removed by the next
save). Loading checks every file against the SHA-256 in the manifest.

Convention:
    - ``format_version`` changes when the layout changes; a newer format is refused with a clear error.
    - Nothing is pickled: JSON, SQLite, ``.npy`` (``allow_pickle=False``) and faiss's own format.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lookalike.core.errors import DataNotFoundError, OptionError
from lookalike.index.base import CorruptIndexError, IndexMismatchError

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "read_manifest", "verify_files", "write_version"]

log = logging.getLogger(__name__)

FORMAT = "lookalike-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_VERSIONED = re.compile(r"^[a-z0-9_.]+-(\d{6})\.[a-z0-9]+(\.partial)?$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time per index directory (an advisory ``flock`` on ``.lock``)."""
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OptionError(f"index path: expected a directory, got an existing file {path}")
    if not path.parent.is_dir():
        raise DataNotFoundError(f"index path: the parent folder {path.parent} does not exist")
    foreign = [c for c in path.iterdir() if not _ours(c.name)] if path.is_dir() else []
    if foreign and not (path / MANIFEST).is_file():
        raise OptionError(
            f"index path: {path} is a non-empty folder without {MANIFEST}; refusing to write an "
            f"index into it"
        )
    path.mkdir(exist_ok=True)
    return path


def write_version(
    path: str | os.PathLike[str],
    writers: dict[str, tuple[str, Callable[[Path], None]]],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Write a new version of an index directory atomically (see the module docstring).

    Args:
        path: the index directory (created if missing; its parent must exist).
        writers: role -> ``(file name stem and suffix, e.g. "index.faiss", write(path))``; each
            callable writes one new file at the given path.
        manifest: the backend's fields (backend, dim, metric, count, options, ...).

    Returns:
        The manifest written (with ``format``, ``format_version``, ``version`` and ``files``).
    """
    folder = _prepare_dir(Path(path))
    with _locked(folder):
        old = _read_json(folder / MANIFEST) if (folder / MANIFEST).is_file() else {}
        version = int(old.get("version", 0)) + 1
        _remove_unreferenced(folder, old)  # leftovers of an interrupted save
        files: dict[str, dict[str, Any]] = {}
        for role, (name, write) in writers.items():
            stem, _, suffix = name.partition(".")
            final = folder / f"{stem}-{version:06d}.{suffix}"
            partial = final.with_name(final.name + ".partial")
            write(partial)
            _fsync_file(partial)
            os.replace(partial, final)
            files[role] = {
                "name": final.name,
                "sha256": sha256_file(final),
                "bytes": final.stat().st_size,
            }
        _fsync_dir(folder)
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            **manifest,
            "files": files,
        }
        tmp = folder / (MANIFEST + ".partial")
        with open(tmp, "w") as f:
            json.dump(full, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / MANIFEST)  # the commit point
        _fsync_dir(folder)
        _remove_unreferenced(folder, full)
    log.info("saved index version %d to %s", version, folder)
    return full


def _ours(name: str) -> bool:
    """A file name an index save writes (leftovers of an interrupted first save count too)."""
    return name in (".lock", MANIFEST + ".partial") or bool(_VERSIONED.match(name))


def _remove_unreferenced(folder: Path, manifest: dict[str, Any]) -> None:
    keep = {f["name"] for f in manifest.get("files", {}).values()}
    for child in folder.iterdir():
        if child.name == MANIFEST + ".partial" or (
            _VERSIONED.match(child.name) and child.name not in keep
        ):
            with contextlib.suppress(FileNotFoundError):
                child.unlink()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptIndexError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an index directory, checked for format and version.

    Raises:
        DataNotFoundError: no index at ``path``.
        CorruptIndexError: an unreadable manifest, or another format.
        IndexMismatchError: a newer format version than this lookalike reads.
    """
    folder = Path(path).expanduser()
    file = folder / MANIFEST
    if not file.is_file():
        raise DataNotFoundError(f"no index at {folder}: {MANIFEST} not found")
    data = _read_json(file)
    if data.get("format") != FORMAT:
        raise CorruptIndexError(f"{file}: expected format {FORMAT!r}, got {data.get('format')!r}")
    if int(data.get("format_version", -1)) > FORMAT_VERSION:
        raise IndexMismatchError(
            f"{file}: index format version {data.get('format_version')} is newer than this "
            f"lookalike reads ({FORMAT_VERSION}); upgrade lookalike"
        )
    return data


def verify_files(path: str | os.PathLike[str], manifest: dict[str, Any]) -> dict[str, Path]:
    """Check every file of the manifest against its SHA-256; returns role -> path.

    Raises:
        CorruptIndexError: a file is missing or its checksum differs.
    """
    folder = Path(path).expanduser()
    out = {}
    for role, entry in manifest.get("files", {}).items():
        file = folder / entry["name"]
        if not file.is_file():
            raise CorruptIndexError(f"{folder}: the {role} file {entry['name']} is missing")
        digest = sha256_file(file)
        if digest != entry["sha256"]:
            raise CorruptIndexError(
                f"{file}: checksum mismatch (expected sha256 {entry['sha256'][:16]}..., got "
                f"{digest[:16]}...): the file is corrupted or was changed after saving"
            )
        out[role] = file
    return out


def check_expected(
    manifest: dict[str, Any],
    *,
    backend: str | None = None,
    dim: int | None = None,
    descriptor: str | None = None,
    descriptor_sha256: str | None = None,
) -> None:
    """Raise :class:`IndexMismatchError` when the manifest disagrees with what the caller expects."""
    expected = {
        "backend": backend,
        "dim": dim,
        "descriptor": descriptor,
        "descriptor_sha256": descriptor_sha256,
    }
    for key, value in expected.items():
        if value is not None and manifest.get(key) != value:
            raise IndexMismatchError(
                f"the index was built with {key} {manifest.get(key)!r}, but {value!r} was expected; "
                f"rebuild the index for this {key}"
            )
