"""The search engine behind the service: an opened index, its descriptor, searches, thumbnails, writes.

:class:`SearchEngine` is plain Python (no web framework): the app calls it from worker threads, and
library users can call it directly.

Convention:
    - An index with a descriptor in its manifest is opened as ``lookalike search`` opens it
      (:func:`lookalike.index.image_index.open_image_index`: the descriptor built once, its weights
      checked by SHA-256, ``max_size`` and the image folder from ``images.json``). An uploaded image
      is described exactly as the indexed files were, by
      :func:`lookalike.index.images.describe_query`, from a private temporary file whose name the
      server picks; the file is removed right after. Describing is serialised (one at a time: the
      network itself uses every core). A manifest without a descriptor serves vector queries only.
    - Scores are those of the index (cosine / inner product: larger is nearer; ``l2``: a distance).
    - Thumbnails: an item's image is the metadata ``path`` the server's own index holds (see
      :mod:`lookalike.service.settings` for relative paths); an item added through the service keeps
      a JPEG thumbnail under ``thumbnails_dir``, named by the SHA-256 of its id. Request data never
      names a file. The metadata key ``path`` is therefore reserved: writes may not set it.
    - Writes (:meth:`SearchEngine.add_item`, :meth:`SearchEngine.remove_item`) are serialised and
      saved at once through the index's atomic save; when the save fails the change is undone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from lookalike.core.errors import LookalikeError
from lookalike.index.base import IndexMismatchError, ItemNotFoundError, as_matrix
from lookalike.service.errors import BadRequestError, NotFoundError, UnreadableImageError
from lookalike.service.settings import ServiceSettings
from lookalike.service.uploads import CheckedImage

__all__ = ["RESERVED_METADATA", "SearchEngine", "thumbnail_url"]

log = logging.getLogger(__name__)

#: Metadata keys a client may not set (they would point the server at a file).
RESERVED_METADATA: tuple[str, ...] = ("path",)
_THUMBNAIL_CACHE = 512


def thumbnail_url(item_id: str) -> str:
    """The thumbnail URL of an item (the id percent-encoded, ``/`` included).

    Example:
        >>> thumbnail_url("cats/felix 1")
        '/items/cats%2Ffelix%201/thumbnail'
    """
    return f"/items/{quote(item_id, safe='')}/thumbnail"


def _short(item_id: str, limit: int = 80) -> str:
    """An id for an error message: quoted, cut to ``limit`` characters."""
    return repr(item_id) if len(item_id) <= limit else repr(item_id[:limit]) + "..."


def _check_same_descriptor(expected: str, built: Any) -> None:
    """Raise :class:`IndexMismatchError` unless the spec ``expected`` names the index's descriptor."""
    from lookalike._registry import get_entry, resolve_weights, split_spec
    from lookalike.core.weights import sha256_file

    name, weights = split_spec(expected)
    built_name, _ = split_spec(built.spec)
    sha = (
        None
        if weights is None
        else sha256_file(resolve_weights(get_entry("descriptor", name), weights))
    )
    if name != built_name or sha != built.sha256:
        raise IndexMismatchError(
            f"the index was built with descriptor {built.spec!r}, but {expected!r} was expected; "
            f"serve it with its own descriptor or rebuild the index"
        )


class SearchEngine:
    """An opened index with its descriptor (see the module Convention).

    Args:
        settings: the service settings.

    Raises:
        DataNotFoundError, CorruptIndexError: no readable index at ``settings.index_dir``.
        IndexMismatchError: ``settings.descriptor`` differs from the manifest's, or the weights
            file changed since the build (SHA-256).
    """

    def __init__(self, settings: ServiceSettings) -> None:
        from lookalike.index.io import read_manifest

        self.settings = settings
        self.image_index: Any = None
        self.descriptor: Any = None
        if read_manifest(settings.index_dir).get("descriptor"):
            self._open_with_descriptor()
        else:
            from lookalike.index import load_index

            # a manifest without a descriptor: asking for one is a mismatch (load_index says so)
            self.index = load_index(settings.index_dir, descriptor=settings.descriptor)
            log.info("the index names no descriptor: serving vector queries only")
        self.max_size = getattr(self.image_index, "max_size", None)
        root = settings.images_root or getattr(self.image_index, "root", None)
        self.images_root = None if root is None else Path(root).resolve()
        self._model_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._thumbs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._thumbs_lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="lookalike-serve-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)

    def _open_with_descriptor(self) -> None:
        """Open the index with its descriptor, as ``lookalike search`` does (weights checked)."""
        from lookalike.index.image_index import open_image_index

        opened = open_image_index(self.settings.index_dir, device=self.settings.device)
        expected = self.settings.descriptor
        if expected is not None:
            _check_same_descriptor(expected, opened.descriptor)
        self.image_index = opened
        self.index = opened.index
        self.descriptor = opened.descriptor

    @property
    def accepts_images(self) -> bool:
        """Whether image queries can be described (the manifest names a descriptor)."""
        return self.descriptor is not None

    @contextlib.contextmanager
    def _temporary(self, image: CheckedImage) -> Iterator[Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=image.suffix)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(image.data)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _describe_file(self, path: Path) -> np.ndarray:
        from lookalike.data.images import ImageError
        from lookalike.index.images import describe_query

        try:
            with self._model_lock:
                return describe_query(self.descriptor, path, max_size=self.max_size)
        except ImageError as exc:
            raise UnreadableImageError(
                f"unreadable image: {str(exc).replace(str(path), 'the upload')}"
            ) from exc

    def describe(self, image: CheckedImage) -> np.ndarray:
        """``(dim,)`` float32 row of a checked upload.

        Raises:
            BadRequestError: the index names no descriptor (vector queries only).
            UnreadableImageError: the bytes cannot be decoded.
        """
        self._require_descriptor()
        with self._temporary(image) as path:
            return self._describe_file(path)

    def _require_descriptor(self) -> None:
        if self.descriptor is None:
            raise BadRequestError(
                "this index names no descriptor, so it can only be searched with vectors: "
                'POST /search with JSON {"vector": [...], "k": 10}'
            )

    # ------------------------------------------------------------------ reads
    def check_vector(self, vector: Any) -> np.ndarray:
        """A JSON vector as a checked ``(dim,)`` float32 row.

        Raises:
            BadRequestError: not a flat list of ``dim`` finite numbers.
        """
        ok = isinstance(vector, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector
        )
        if not ok:
            raise BadRequestError(
                f"vector: expected a list of {self.index.dim} numbers, got {type(vector).__name__}"
                + ("" if not isinstance(vector, list) else " with non-numeric entries")
            )
        try:
            return as_matrix(np.asarray(vector, dtype=np.float64), self.index.dim, "vector")[0]
        except LookalikeError as exc:
            raise BadRequestError(str(exc)) from exc

    def search(self, row: np.ndarray, k: int) -> list[dict[str, Any]]:
        """The ``k`` nearest items of one row: ``[{"id", "score", "metadata", "thumbnail"}]`` best first."""
        result = self.index.search(row[None, :], k=k)
        hits = []
        for item_id, score in zip(result.ids[0], result.scores[0]):
            meta = self._metadata_or_none(item_id)
            if meta is None:  # removed by a concurrent write between search and look-up
                continue
            hits.append(
                {
                    "id": item_id,
                    "score": float(score),
                    "metadata": meta,
                    "thumbnail": thumbnail_url(item_id),
                }
            )
        return hits

    def search_image(self, image: CheckedImage, k: int) -> tuple[list[dict[str, Any]], float]:
        """Describe and search an upload; returns the hits and the time taken in milliseconds."""
        start = time.perf_counter()
        hits = self.search(self.describe(image), k)
        return hits, (time.perf_counter() - start) * 1000.0

    def search_vector(self, vector: Any, k: int) -> tuple[list[dict[str, Any]], float]:
        """Search a JSON vector; returns the hits and the time taken in milliseconds."""
        start = time.perf_counter()
        hits = self.search(self.check_vector(vector), k)
        return hits, (time.perf_counter() - start) * 1000.0

    def _metadata_or_none(self, item_id: str) -> dict[str, Any] | None:
        try:
            return self.index.get_metadata(item_id)
        except ItemNotFoundError:
            return None

    def item(self, item_id: str) -> dict[str, Any]:
        """``{"id", "metadata", "thumbnail"}`` of one item.

        Raises:
            NotFoundError: unknown id.
        """
        meta = self._metadata_or_none(item_id) if item_id in self.index else None
        if meta is None:
            raise NotFoundError(f"no item with id {_short(item_id)}")
        return {"id": item_id, "metadata": meta, "thumbnail": thumbnail_url(item_id)}

    # ------------------------------------------------------------------ thumbnails
    def _stored_thumbnail(self, item_id: str) -> Path:
        digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()
        return self.settings.thumbnails_dir / f"{digest}.jpg"

    def _image_path(self, meta: dict[str, Any]) -> Path | None:
        raw = meta.get("path")
        if not isinstance(raw, str) or not raw:
            return None
        path = Path(raw)
        if path.is_absolute():
            return path
        root = self.images_root
        if root is None:
            return None
        path = (root / path).resolve()
        return path if path.is_relative_to(root) else None

    def _encode_thumbnail(self, path: Path) -> bytes:
        import cv2

        from lookalike.data.images import read_image

        rgb = read_image(path, gray=False)
        scale = self.settings.thumbnail_size / max(rgb.shape[:2])
        if scale < 1:
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(
            ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85]
        )
        if not ok:  # pragma: no cover - OpenCV always encodes JPEG
            raise UnreadableImageError("could not encode the thumbnail")
        return buf.tobytes()

    def thumbnail(self, item_id: str) -> bytes:
        """JPEG thumbnail of an item.

        Raises:
            NotFoundError: unknown id, or an item without a readable image.
        """
        from lookalike.core.errors import DataNotFoundError
        from lookalike.data.images import ImageError

        meta = self.item(item_id)["metadata"]
        stored = self._stored_thumbnail(item_id)
        path = self._image_path(meta)
        if path is None:
            if stored.is_file():
                return stored.read_bytes()
            raise NotFoundError(f"item {_short(item_id)} has no image for a thumbnail")
        key = (item_id, str(path))
        with self._thumbs_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        try:
            data = self._encode_thumbnail(path)
        except (DataNotFoundError, ImageError) as exc:
            log.warning("thumbnail of %r: %s", item_id, exc)
            raise NotFoundError(f"the image of item {_short(item_id)} is not readable") from exc
        with self._thumbs_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > _THUMBNAIL_CACHE:
                self._thumbs.popitem(last=False)
        return data

    # ------------------------------------------------------------------ writes
    def add_item(self, item_id: str, image: CheckedImage, metadata: dict[str, Any]) -> int:
        """Describe an upload and add it under ``item_id``, saving the index; returns the new count.

        Raises:
            BadRequestError: a bad id, a reserved key or a value JSON cannot hold in ``metadata``.
            DuplicateIdError: the id is taken.
        """
        from lookalike.core.errors import DTypeError
        from lookalike.index.base import DuplicateIdError, check_ids

        self._require_descriptor()
        try:
            (item_id,) = check_ids(item_id, 1, "id")
        except LookalikeError as exc:
            raise BadRequestError(str(exc)) from exc
        reserved = sorted(set(metadata) & set(RESERVED_METADATA))
        if reserved:
            raise BadRequestError(f"metadata: the keys {reserved} are reserved for the server")
        if item_id in self.index:
            raise DuplicateIdError(f"id {_short(item_id)} is already in the index")
        with self._temporary(image) as path:
            row = self._describe_file(path)
            thumb = self._encode_thumbnail(path)
        with self._write_lock:
            try:
                self.index.add([item_id], row[None, :], [metadata])
            except DTypeError as exc:
                raise BadRequestError(str(exc)) from exc
            try:
                self.settings.thumbnails_dir.mkdir(parents=True, exist_ok=True)
                self._stored_thumbnail(item_id).write_bytes(thumb)
                self._save()
            except BaseException:
                self._stored_thumbnail(item_id).unlink(missing_ok=True)
                self._reload()
                raise
            return len(self.index)

    def remove_item(self, item_id: str) -> int:
        """Remove an item and save the index; returns the new count.

        Raises:
            NotFoundError: unknown id.
        """
        with self._write_lock:
            if item_id not in self.index:
                raise NotFoundError(f"no item with id {_short(item_id)}")
            self.index.remove([item_id])
            try:
                self._save()
            except BaseException:
                self._reload()
                raise
            self._stored_thumbnail(item_id).unlink(missing_ok=True)
            with self._thumbs_lock:
                for key in [k for k in self._thumbs if k[0] == item_id]:
                    del self._thumbs[key]
            return len(self.index)

    def _save(self) -> None:
        if self.image_index is not None:
            self.image_index.save()  # the index, then its images.json
        else:
            self.index.save(self.settings.index_dir)

    def _reload(self) -> None:
        """Undo an unsaved change: reopen the last saved version (the atomic save left it intact)."""
        from lookalike.index import load_index

        log.error("saving the index failed; reopening the last saved version")
        desc = self.descriptor
        self.index = load_index(
            self.settings.index_dir,
            descriptor=None if desc is None else desc.spec,
            descriptor_sha256=None if desc is None else desc.sha256,
        )
        if self.image_index is not None:
            self.image_index.index = self.index

    def close(self) -> None:
        """Remove the private temporary folder (also done when the engine is garbage collected)."""
        self._cleanup()
