"""The index protocol: string ids, vectors, metadata; add / remove / update / search / range search.

Every backend (``flat``: our blockwise torch kNN; ``faiss``: any faiss factory string; ``milvus``: a
Milvus collection) subclasses :class:`VectorIndex`, which checks every input at the door and leaves the
backends only their storage and search.

Convention:
    - Metrics: ``"ip"`` (inner product, larger is nearer), ``"cosine"`` (rows are L2-normalised when
      added and when queried, then compared by inner product: scores are cosine similarities in
      [-1, 1]; an all-zero row stays zero and has similarity 0 to everything) and ``"l2"`` (Euclidean
      distance, smaller is nearer; scores are distances, not squared distances).
    - ``search`` returns, per query, the ``k`` nearest items best first. When fewer than ``k`` items
      can be returned (a small index, an approximate index that visited few lists), the missing
      places have label ``-1``, score NaN and no id; ``ids[q]`` lists only the found items.
    - ``range_search`` returns every item with ``score >= radius`` (``ip``/``cosine``) or
      ``distance <= radius`` (``l2``), best first.
    - Ids are non-empty strings, unique within an index. Metadata are JSON-serialisable dicts.
    - Ties between equal scores are broken arbitrarily.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.core.check import check_option
from lookalike.core.errors import (
    DTypeError,
    EmptyInputError,
    LookalikeError,
    OptionError,
    ShapeError,
    ValueRangeError,
)

__all__ = [
    "METRICS",
    "CorruptIndexError",
    "DuplicateIdError",
    "IndexMismatchError",
    "ItemNotFoundError",
    "RangeResult",
    "SearchResult",
    "TooFewVectorsError",
    "VectorIndex",
    "as_matrix",
    "normalise_rows",
]

METRICS: tuple[str, ...] = ("cosine", "ip", "l2")
MAX_ID_LENGTH = 512


class IndexMismatchError(LookalikeError):
    """An index is opened with another descriptor, dimension, metric or backend than it was built with."""


class CorruptIndexError(LookalikeError):
    """An index file is missing, truncated or does not match its checksum in the manifest."""


class ItemNotFoundError(LookalikeError, KeyError):
    """An id is not in the index."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateIdError(LookalikeError):
    """An id is added twice (in one batch, or one already in the index)."""


class TooFewVectorsError(LookalikeError):
    """An approximate index cannot be trained from so few vectors."""


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` nearest items of ``Q`` queries (see the module Convention).

    Attributes:
        ids: per query, the ids found, best first (at most ``k``).
        scores: ``(Q, k)`` float32 similarities (``ip``/``cosine``) or distances (``l2``); NaN where
            nothing was found.
        labels: ``(Q, k)`` int64 internal labels, ``-1`` where nothing was found.
    """

    ids: list[list[str]]
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class RangeResult:
    """Every item within the radius of each query, best first.

    Attributes:
        ids: per query, the ids within the radius.
        scores: per query, their float32 scores (same order).
    """

    ids: list[list[str]]
    scores: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise DTypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def as_matrix(x: Any, dim: int, name: str = "vectors", *, allow_empty: bool = False) -> np.ndarray:
    """Checked float32 C-contiguous ``(N, dim)`` rows from an array, tensor or nested list.

    A single ``(dim,)`` vector becomes one row.

    Raises:
        ShapeError: not 1-D/2-D, or the wrong width.
        DTypeError: not a real number type.
        ValueRangeError: NaN or infinite values.
        EmptyInputError: no row (unless ``allow_empty``).

    Example:
        >>> as_matrix([1, 2], 2).shape
        (1, 2)
    """
    a = _to_numpy(x, name)
    if a.dtype.kind not in "biuf":
        raise DTypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != dim:
        raise ShapeError(f"{name}: expected shape (N, {dim}), got {tuple(a.shape)}")
    if a.shape[0] == 0 and not allow_empty:
        raise EmptyInputError(f"{name}: expected at least one row, got shape {tuple(a.shape)}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    # a finite sum means every value is finite (NaN and inf propagate); look closer only if not
    if not np.isfinite(a.sum(dtype=np.float64)) and not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=1).sum())
        raise ValueRangeError(f"{name}: expected finite values, got NaN or inf in {bad} row(s)")
    return a


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalised copy of float32 rows; all-zero rows stay zero.

    Example:
        >>> normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def check_ids(ids: Any, n: int | None = None, name: str = "ids") -> list[str]:
    """A list of non-empty, unique string ids (a single string is one id).

    Raises:
        DTypeError: an id that is not a string.
        OptionError: an empty or too long id.
        DuplicateIdError: an id given twice.
        ShapeError: ``n`` is given and the count differs.
    """
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, Iterable):
        raise DTypeError(
            f"{name}: expected a string or a sequence of strings, got {type(ids).__name__}"
        )
    out = list(ids)
    for item in out:
        if not isinstance(item, str):
            raise DTypeError(f"{name}: expected strings, got {type(item).__name__} ({item!r})")
        if not item or len(item) > MAX_ID_LENGTH:
            raise OptionError(
                f"{name}: expected non-empty ids of at most {MAX_ID_LENGTH} characters, got {item[:40]!r} "
                f"(length {len(item)})"
            )
    if n is not None and len(out) != n:
        raise ShapeError(f"{name}: expected {n} ids (one per vector), got {len(out)}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(i for i in out if i in seen or seen.add(i))
        raise DuplicateIdError(f"{name}: id {dup!r} is given more than once")
    return out


def check_metadata(metadata: Any, n: int) -> list[dict[str, Any]]:
    """One dict per item (``None`` gives empty dicts)."""
    if metadata is None:
        return [{} for _ in range(n)]
    if isinstance(metadata, Mapping):
        metadata = [metadata]
    if not isinstance(metadata, Sequence) or isinstance(metadata, str):
        raise DTypeError(f"metadata: expected a sequence of dicts, got {type(metadata).__name__}")
    if len(metadata) != n:
        raise ShapeError(f"metadata: expected {n} dicts (one per vector), got {len(metadata)}")
    out = []
    for m in metadata:
        if m is None:
            m = {}
        if not isinstance(m, Mapping):
            raise DTypeError(f"metadata: expected dicts, got {type(m).__name__}")
        out.append(dict(m))
    return out


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise OptionError(f"k: expected a positive integer, got {k!r}")
    return int(k)


class VectorIndex:
    """Base of every index backend: input checks, metric handling and the public API.

    Subclasses implement ``_add``, ``_remove``, ``_update``, ``_search``, ``_range_search``,
    ``_contains``, ``_metadata``, ``__len__`` and ``__iter__``; they receive checked float32 rows,
    already normalised for ``cosine``.

    Args:
        dim: vector width.
        metric: ``"cosine"``, ``"ip"`` or ``"l2"`` (see the module Convention).
        descriptor: registry name of the descriptor the vectors come from (kept in the manifest;
            opening with another descriptor is an error).
        descriptor_sha256: SHA-256 of that descriptor's weights file, or ``None``.
    """

    backend: str = ""

    def __init__(
        self,
        *,
        dim: int,
        metric: str = "cosine",
        descriptor: str | None = None,
        descriptor_sha256: str | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise OptionError(f"dim: expected a positive integer, got {dim!r}")
        check_option(metric, METRICS, "metric")
        for key, value in (("descriptor", descriptor), ("descriptor_sha256", descriptor_sha256)):
            if value is not None and not isinstance(value, str):
                raise OptionError(f"{key}: expected a string or None, got {type(value).__name__}")
        self.dim = dim
        self.metric = metric
        self.descriptor = descriptor
        self.descriptor_sha256 = descriptor_sha256

    # ------------------------------------------------------------------ helpers
    def _rows(self, x: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
        rows = as_matrix(x, self.dim, name, allow_empty=allow_empty)
        return normalise_rows(rows) if self.metric == "cosine" else rows

    def _present(self, ids: list[str]) -> set[str]:
        """The ids of ``ids`` already in the index (backends may answer in one batch)."""
        return {i for i in ids if self._contains(i)}

    def _missing(self, ids: list[str]) -> list[str]:
        present = self._present(ids)
        return [i for i in ids if i not in present]

    def _check_radius(self, radius: Any) -> float:
        ok = isinstance(radius, (int, float, np.floating)) and not isinstance(radius, bool)
        if not ok or not math.isfinite(float(radius)) or (self.metric == "l2" and radius < 0):
            need = "a finite number >= 0" if self.metric == "l2" else "a finite number"
            raise OptionError(f"radius: expected {need} for metric {self.metric!r}, got {radius!r}")
        return float(radius)

    # ------------------------------------------------------------------ public API
    def add(self, ids: Any, vectors: Any, metadata: Any = None) -> None:
        """Add items.

        Args:
            ids: ``N`` new unique string ids.
            vectors: ``(N, dim)`` float array or tensor (a ``(dim,)`` vector for one item).
            metadata: ``N`` JSON-serialisable dicts, or ``None``.

        Raises:
            DuplicateIdError: an id given twice or already in the index.
            ShapeError, DTypeError, ValueRangeError: bad vectors.
        """
        rows = self._rows(vectors, "vectors")
        id_list = check_ids(ids, rows.shape[0])
        meta = check_metadata(metadata, rows.shape[0])
        present = self._present(id_list)
        taken = [i for i in id_list if i in present]
        if taken:
            raise DuplicateIdError(
                f"ids already in the index: {taken[:5]!r}{' ...' if len(taken) > 5 else ''} "
                f"(use update() to replace them)"
            )
        self._add(id_list, rows, meta)

    def remove(self, ids: Any) -> None:
        """Remove items by id.

        Raises:
            ItemNotFoundError: an id is not in the index (nothing is removed then).
        """
        id_list = check_ids(ids)
        missing = self._missing(id_list)
        if missing:
            raise ItemNotFoundError(f"ids not in the index: {missing[:5]!r}; nothing was removed")
        if id_list:
            self._remove(id_list)

    def update(self, ids: Any, vectors: Any = None, metadata: Any = None) -> None:
        """Replace the vectors and/or the metadata of existing items.

        Raises:
            ItemNotFoundError: an id is not in the index (nothing is changed then).
            OptionError: neither vectors nor metadata given.
        """
        if vectors is None and metadata is None:
            raise OptionError("update: expected vectors, metadata or both, got neither")
        id_list = check_ids(ids)
        rows = None if vectors is None else self._rows(vectors, "vectors")
        if rows is not None and rows.shape[0] != len(id_list):
            raise ShapeError(
                f"ids: expected {rows.shape[0]} ids (one per vector), got {len(id_list)}"
            )
        meta = None if metadata is None else check_metadata(metadata, len(id_list))
        missing = self._missing(id_list)
        if missing:
            raise ItemNotFoundError(f"ids not in the index: {missing[:5]!r}; nothing was updated")
        self._update(id_list, rows, meta)

    def search(self, queries: Any, k: int = 10, **params: Any) -> SearchResult:
        """The ``k`` nearest items of each query (see the module Convention).

        Args:
            queries: ``(Q, dim)`` rows (or one ``(dim,)`` vector); ``Q = 0`` gives an empty result.
            k: neighbours per query.
            **params: backend search parameters (``nprobe``, ``ef_search`` for faiss).

        Returns:
            :class:`SearchResult`.
        """
        q = self._rows(queries, "queries", allow_empty=True)
        k = check_k(k)
        if q.shape[0] == 0 or len(self) == 0:
            return SearchResult(
                [[] for _ in range(q.shape[0])],
                np.full((q.shape[0], k), np.nan, dtype=np.float32),
                np.full((q.shape[0], k), -1, dtype=np.int64),
            )
        return self._search(q, k, **params)

    def range_search(self, queries: Any, radius: float, **params: Any) -> RangeResult:
        """Every item within ``radius`` of each query (see the module Convention).

        Args:
            queries: ``(Q, dim)`` rows (or one ``(dim,)`` vector).
            radius: the least similarity (``ip``/``cosine``) or the largest distance (``l2``).
            **params: backend search parameters.
        """
        q = self._rows(queries, "queries", allow_empty=True)
        radius = self._check_radius(radius)
        if q.shape[0] == 0 or len(self) == 0:
            return RangeResult(
                [[] for _ in range(q.shape[0])],
                [np.zeros(0, np.float32) for _ in range(q.shape[0])],
            )
        return self._range_search(q, radius, **params)

    def get_metadata(self, item_id: str) -> dict[str, Any]:
        """The metadata dict of one item.

        Raises:
            ItemNotFoundError: unknown id.
        """
        (item_id,) = check_ids(item_id, 1, "item_id")
        if not self._contains(item_id):
            raise ItemNotFoundError(f"id {item_id!r} is not in the index")
        return self._metadata(item_id)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._contains(item_id)

    def info(self) -> dict[str, Any]:
        """Backend, metric, dim, count and descriptor, as a JSON-serialisable dict."""
        return {
            "backend": self.backend,
            "metric": self.metric,
            "dim": self.dim,
            "count": len(self),
            "descriptor": self.descriptor,
            "descriptor_sha256": self.descriptor_sha256,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}, count={len(self)}, "
            f"descriptor={self.descriptor!r})"
        )

    # ------------------------------------------------------------------ backend hooks
    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def _contains(self, item_id: str) -> bool:
        raise NotImplementedError

    def _metadata(self, item_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def _add(self, ids: list[str], rows: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _remove(self, ids: list[str]) -> None:
        raise NotImplementedError

    def _update(
        self, ids: list[str], rows: np.ndarray | None, metadata: list[dict[str, Any]] | None
    ) -> None:
        raise NotImplementedError

    def _search(self, q: np.ndarray, k: int, **params: Any) -> SearchResult:
        raise NotImplementedError

    def _range_search(self, q: np.ndarray, radius: float, **params: Any) -> RangeResult:
        raise NotImplementedError
