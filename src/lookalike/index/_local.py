"""Local indexes (``flat``, ``faiss``): vectors in this process, ids and metadata in SQLite, saved atomically.

:class:`LocalIndex` does the id bookkeeping, locking and persistence; a backend stores vectors under
int64 labels and searches them (``_vec_*`` hooks).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.errors import OptionError
from lookalike.index import io
from lookalike.index._store import ItemStore
from lookalike.index.base import RangeResult, SearchResult, VectorIndex

__all__ = ["LocalIndex", "load_index"]


class LocalIndex(VectorIndex):
    """An index whose vectors live in this process; :meth:`save` / :meth:`load` a directory.

    All public methods take one re-entrant lock, so an index can be shared between threads.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._store = ItemStore()
        self._lock = threading.RLock()
        self.read_only = False

    # ------------------------------------------------------------------ VectorIndex hooks
    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(self._store)

    def _contains(self, item_id: str) -> bool:
        return item_id in self._store

    def _metadata(self, item_id: str) -> dict[str, Any]:
        with self._lock:
            return self._store.metadata(item_id)

    def _writable(self) -> None:
        if self.read_only:
            raise OptionError(
                "this index was loaded read-only (mmap=True, inverted lists on disk); load it "
                "without mmap to change it"
            )

    def _add(self, ids: list[str], rows: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        self._writable()
        with self._lock:
            self._vec_prepare(rows)
            labels = self._store.add(ids, metadata)
            try:
                self._vec_add(labels, rows)
            except BaseException:
                self._store.remove(ids)
                raise

    def _remove(self, ids: list[str]) -> None:
        self._writable()
        with self._lock:
            labels = self._store.labels(ids)
            tombstoned = self._vec_remove(labels)
            self._store.remove(ids, tombstone=tombstoned)
            if tombstoned:
                self._vec_after_tombstones()

    def _update(
        self, ids: list[str], rows: np.ndarray | None, metadata: list[dict[str, Any]] | None
    ) -> None:
        self._writable()
        with self._lock:
            if metadata is None:
                metadata = [self._store.metadata(i) for i in ids]
            if rows is None:
                self._store.set_metadata(ids, metadata)
                return
            self._remove(ids)
            self._add(ids, rows, metadata)

    def _search(self, q: np.ndarray, k: int, **params: Any) -> SearchResult:
        with self._lock:
            scores, labels = self._vec_search(q, k, **params)
            ids = self._store.ids_of(labels)
        found = labels >= 0
        if found.all():  # the common case: one conversion for the whole batch
            return SearchResult(ids.tolist(), scores.astype(np.float32, copy=False), labels)
        scores = np.where(found, scores, np.float32(np.nan)).astype(np.float32, copy=False)
        return SearchResult([row[ok].tolist() for row, ok in zip(ids, found)], scores, labels)

    def _range_search(self, q: np.ndarray, radius: float, **params: Any) -> RangeResult:
        with self._lock:
            hits = self._vec_range(q, radius, **params)
            out_ids, out_scores = [], []
            for labels, scores in hits:
                order = np.argsort(scores if self.metric == "l2" else -scores, kind="stable")
                out_ids.append(self._store.ids_of(labels[order]).tolist())
                out_scores.append(scores[order].astype(np.float32, copy=False))
        return RangeResult(out_ids, out_scores)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save atomically into the directory ``path`` (see :mod:`lookalike.index.io`).

        A crash during the save leaves the previously saved version loadable.

        Returns:
            The index directory.
        """
        with self._lock:
            writers: dict[str, tuple[str, Callable[[Path], None]]] = {
                "items": ("items.sqlite", self._store.write)
            }
            writers.update(self._vec_writers())
            manifest = {
                "backend": self.backend,
                "dim": self.dim,
                "metric": self.metric,
                "descriptor": self.descriptor,
                "descriptor_sha256": self.descriptor_sha256,
                "count": len(self),
                "options": self._options(),
            }
            io.write_version(path, writers, manifest)
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        dim: int | None = None,
        descriptor: str | None = None,
        descriptor_sha256: str | None = None,
        mmap: bool = False,
    ) -> LocalIndex:
        """Open a saved index, verifying every file's checksum.

        Args:
            path: the index directory.
            dim, descriptor, descriptor_sha256: what the caller expects (``None``: anything).
            mmap: ``faiss`` IVF indexes only: map the inverted lists from the file instead of
                reading them into memory (read-only index).

        Raises:
            DataNotFoundError: no index there.
            IndexMismatchError: another backend, dimension or descriptor than expected.
            CorruptIndexError: a missing or changed file.
        """
        for attempt in range(3):
            manifest = io.read_manifest(path)
            try:
                return cls._open(path, manifest, dim, descriptor, descriptor_sha256, mmap)
            except io.CorruptIndexError:
                # a writer may have committed a new version and removed the files we were reading
                if attempt == 2 or io.read_manifest(path).get("version") == manifest.get("version"):
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _open(
        cls,
        path: str | os.PathLike[str],
        manifest: dict[str, Any],
        dim: int | None,
        descriptor: str | None,
        descriptor_sha256: str | None,
        mmap: bool,
    ) -> LocalIndex:
        backend = None if cls is LocalIndex else cls.backend
        io.check_expected(
            manifest,
            backend=backend,
            dim=dim,
            descriptor=descriptor,
            descriptor_sha256=descriptor_sha256,
        )
        files = io.verify_files(path, manifest)
        factory = cls if backend else _backend_class(manifest["backend"])
        index = factory(
            dim=int(manifest["dim"]),
            metric=manifest["metric"],
            descriptor=manifest.get("descriptor"),
            descriptor_sha256=manifest.get("descriptor_sha256"),
            **manifest.get("options", {}),
        )
        index._store = ItemStore.read(files["items"])
        index._vec_read(files, mmap=mmap)
        index.read_only = bool(mmap)
        if len(index) != int(manifest.get("count", -1)):
            raise io.CorruptIndexError(
                f"{path}: the manifest counts {manifest.get('count')} items, the database holds "
                f"{len(index)}"
            )
        return index

    # ------------------------------------------------------------------ backend hooks
    def _options(self) -> dict[str, Any]:
        """Constructor keywords (besides dim, metric, descriptor) to rebuild this index on load."""
        return {}

    def _vec_prepare(self, rows: np.ndarray) -> None:
        """Called before new rows are given labels (e.g. to train): may raise to refuse the add."""

    def _vec_add(self, labels: np.ndarray, rows: np.ndarray) -> None:
        raise NotImplementedError

    def _vec_remove(self, labels: np.ndarray) -> bool:
        """Remove labels; return True when they were only tombstoned (filtered at search time)."""
        raise NotImplementedError

    def _vec_after_tombstones(self) -> None:
        """Called after tombstones were recorded (e.g. to rebuild when too many)."""

    def _vec_search(self, q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _vec_range(
        self, q: np.ndarray, radius: float, **params: Any
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def _vec_writers(self) -> dict[str, tuple[str, Callable[[Path], None]]]:
        raise NotImplementedError

    def _vec_read(self, files: dict[str, Path], *, mmap: bool) -> None:
        raise NotImplementedError


def _backend_class(name: str) -> type[LocalIndex]:
    from lookalike._registry import get_entry

    factory = get_entry("index", name).factory
    if not (isinstance(factory, type) and issubclass(factory, LocalIndex)):
        raise OptionError(f"index backend {name!r} is not a local (saved to a directory) index")
    return factory


def load_index(path: str | os.PathLike[str], **kwargs: Any) -> LocalIndex:
    """Open a saved index of any local backend (the manifest names it); see :meth:`LocalIndex.load`.

    Example:
        >>> import tempfile, numpy as np, lookalike
        >>> index = lookalike.create("index", "flat", dim=2, metric="l2")
        >>> index.add(["a", "b"], np.array([[0.0, 0.0], [1.0, 0.0]]))
        >>> folder = index.save(tempfile.mkdtemp() + "/idx")
        >>> load_index(folder).search([0.9, 0.0], k=1).ids
        [['b']]
    """
    return LocalIndex.load(path, **kwargs)
