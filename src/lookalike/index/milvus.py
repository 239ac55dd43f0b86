"""``milvus``: a Milvus collection behind the index API, for indexes that outgrow one machine.

``uri`` is a Milvus server (``http://host:19530``) or a local file (``items.db``), which runs the
embedded Milvus Lite inside this process (no server to start; ``pip install pymilvus milvus-lite``).

Convention:
    - One collection per index with the fields ``id`` (VARCHAR primary key: our string ids),
      ``vector`` (FLOAT_VECTOR) and ``meta`` (JSON). The metric, dimension and descriptor are kept in
      the collection's properties; opening an existing collection with another one is an
      :class:`~lookalike.index.base.IndexMismatchError`.
    - Metrics map to Milvus ``IP`` (``ip``), ``COSINE`` (``cosine``, rows also normalised here) and
      ``L2`` (Milvus's squared distances are returned as distances, the radius squared).
    - Milvus stores and persists the data itself: there is no ``save``; open the same ``uri`` and
      ``collection`` again to reconnect. Every write is visible to the next search (Milvus's
      "Strong" consistency).
    - Range search returns at most 16384 hits per query (Milvus's limit); more is an error.
    - ``SearchResult.labels`` holds each hit's rank (Milvus has no integer labels), -1 where none.
    - ``index_type`` / ``index_params`` / ``search_params`` are Milvus's (Milvus Lite only runs FLAT).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.index.base import IndexMismatchError, RangeResult, SearchResult, VectorIndex

__all__ = ["MilvusIndex"]

_METRIC = {"ip": "IP", "cosine": "COSINE", "l2": "L2"}
_MAX_HITS = 16384
_BATCH = 1000


@register("index", "milvus")
class MilvusIndex(VectorIndex):
    """An index stored in a Milvus collection (a server, or Milvus Lite in a local ``.db`` file).

    Args:
        dim: vector width.
        uri: ``http://host:port`` of a Milvus server, or a ``.db`` file path (Milvus Lite).
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"``.
        collection: collection name (created if missing).
        index_type: Milvus index type (``"FLAT"``, ``"IVF_FLAT"``, ``"HNSW"``, ...).
        index_params: Milvus index build parameters (e.g. ``{"nlist": 1024}``).
        search_params: Milvus search parameters (e.g. ``{"nprobe": 64}``).
        token: authentication token of a Milvus server.
        descriptor, descriptor_sha256: the descriptor the vectors come from.

    Example:
        >>> import tempfile, numpy as np
        >>> index = MilvusIndex(dim=2, metric="l2", uri=tempfile.mkdtemp() + "/items.db")
        >>> index.add(["a", "b"], np.array([[0.0, 0.0], [1.0, 0.0]]), [{"n": 1}, {"n": 2}])
        >>> index.search([0.9, 0.0], k=1).ids, index.get_metadata("b")
        ([['b']], {'n': 2})
        >>> index.close()
    """

    backend = "milvus"

    def __init__(
        self,
        *,
        dim: int,
        uri: str,
        metric: str = "cosine",
        collection: str = "lookalike",
        index_type: str = "FLAT",
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        token: str = "",
        descriptor: str | None = None,
        descriptor_sha256: str | None = None,
    ) -> None:
        super().__init__(
            dim=dim, metric=metric, descriptor=descriptor, descriptor_sha256=descriptor_sha256
        )
        if not isinstance(uri, str) or not uri:
            raise OptionError(f"uri: expected a Milvus server URL or a .db file path, got {uri!r}")
        if not isinstance(collection, str) or not collection.replace("_", "a").isalnum():
            raise OptionError(f"collection: expected letters, digits and '_', got {collection!r}")
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise OptionError(
                "the milvus index needs pymilvus: pip install pymilvus milvus-lite"
            ) from exc
        self.uri = uri
        self.collection = collection
        self.search_params = dict(search_params or {})
        self._client = MilvusClient(uri, token=token)
        if self._client.has_collection(collection):
            self._check_existing()
        else:
            self._create(index_type, dict(index_params or {}))

    # ------------------------------------------------------------------ collection
    def _properties(self) -> dict[str, str]:
        return {
            "lookalike.dim": str(self.dim),
            "lookalike.metric": self.metric,
            "lookalike.descriptor": self.descriptor or "",
            "lookalike.descriptor_sha256": self.descriptor_sha256 or "",
        }

    def _create(self, index_type: str, index_params: dict[str, Any]) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("meta", DataType.JSON)
        params = self._client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type=index_type,
            metric_type=_METRIC[self.metric],
            params=index_params,
        )
        self._client.create_collection(
            self.collection, schema=schema, index_params=params, properties=self._properties()
        )

    def _check_existing(self) -> None:
        found = self._client.describe_collection(self.collection).get("properties", {})
        for key, value in self._properties().items():
            have = found.get(key)
            if have is None:
                raise IndexMismatchError(
                    f"Milvus collection {self.collection!r} was not created by lookalike (no {key})"
                )
            if have != value and not (key.startswith("lookalike.descriptor") and value == ""):
                raise IndexMismatchError(
                    f"Milvus collection {self.collection!r} was built with {key[10:]} {have!r}, "
                    f"but {value!r} was asked; use another collection or rebuild it"
                )
        self.descriptor = found.get("lookalike.descriptor") or None
        self.descriptor_sha256 = found.get("lookalike.descriptor_sha256") or None

    def close(self) -> None:
        """Close the connection (Milvus Lite writes its file)."""
        self._client.close()

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ VectorIndex hooks
    def __len__(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __iter__(self) -> Iterator[str]:
        iterator = self._client.query_iterator(
            self.collection, batch_size=_BATCH, filter="", output_fields=["id"]
        )
        try:
            while batch := iterator.next():
                yield from (row["id"] for row in batch)
        finally:
            iterator.close()

    def _present(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _BATCH):
            rows = self._client.get(
                self.collection, ids=ids[start : start + _BATCH], output_fields=["id"]
            )
            found.update(row["id"] for row in rows)
        return found

    def _contains(self, item_id: str) -> bool:
        return bool(self._present([item_id]))

    def _metadata(self, item_id: str) -> dict[str, Any]:
        rows = self._client.get(self.collection, ids=[item_id], output_fields=["meta"])
        return dict(rows[0]["meta"] or {})

    def _rows_for(self, ids: list[str], rows: np.ndarray, meta: list[dict[str, Any]]) -> list[dict]:
        for m in meta:
            json.dumps(m, allow_nan=False)  # fail before Milvus does, with Python's message
        return [{"id": i, "vector": v, "meta": m} for i, v, m in zip(ids, rows.tolist(), meta)]

    def _add(self, ids: list[str], rows: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        data = self._rows_for(ids, rows, metadata)
        for start in range(0, len(data), _BATCH):
            self._client.insert(self.collection, data[start : start + _BATCH])

    def _remove(self, ids: list[str]) -> None:
        self._client.delete(self.collection, ids=ids)

    def _update(
        self, ids: list[str], rows: np.ndarray | None, metadata: list[dict[str, Any]] | None
    ) -> None:
        old = {
            r["id"]: r
            for r in self._client.get(self.collection, ids=ids, output_fields=["vector", "meta"])
        }
        if rows is None:
            rows = np.array([old[i]["vector"] for i in ids], dtype=np.float32)
        if metadata is None:
            metadata = [dict(old[i]["meta"] or {}) for i in ids]
        self._client.upsert(self.collection, self._rows_for(ids, rows, metadata))

    # ------------------------------------------------------------------ search
    def _params(self, extra: dict[str, Any], radius: float | None = None) -> dict[str, Any]:
        params = {**self.search_params, **extra}
        if radius is not None:
            if self.metric == "l2":  # Milvus keeps range_filter <= distance < radius
                params.update(radius=math.nextafter(radius * radius, math.inf))
            else:  # similarities: Milvus keeps radius < score <= range_filter
                params.update(radius=math.nextafter(radius, -math.inf), range_filter=math.inf)
        return {"metric_type": _METRIC[self.metric], "params": params}

    def _scores(self, hits: list[dict[str, Any]]) -> np.ndarray:
        scores = np.array([h["distance"] for h in hits], dtype=np.float32)
        return np.sqrt(np.maximum(scores, 0)) if self.metric == "l2" else scores

    def _search(self, q: np.ndarray, k: int, **params: Any) -> SearchResult:
        result = self._client.search(
            self.collection,
            data=q.tolist(),
            limit=k,
            anns_field="vector",
            output_fields=[],
            search_params=self._params(params),
        )
        scores = np.full((q.shape[0], k), np.nan, dtype=np.float32)
        labels = np.full((q.shape[0], k), -1, dtype=np.int64)
        ids = []
        for row, hits in enumerate(result):
            ids.append([h["id"] for h in hits])
            scores[row, : len(hits)] = self._scores(hits)
            labels[row, : len(hits)] = np.arange(len(hits))  # Milvus has no integer labels
        return SearchResult(ids, scores, labels)

    def _range_search(self, q: np.ndarray, radius: float, **params: Any) -> RangeResult:
        result = self._client.search(
            self.collection,
            data=q.tolist(),
            limit=_MAX_HITS,
            anns_field="vector",
            output_fields=[],
            search_params=self._params(params, radius),
        )
        ids, scores = [], []
        for hits in result:
            if len(hits) >= _MAX_HITS:
                raise OptionError(
                    f"range search: {_MAX_HITS} or more hits for one query (Milvus's limit); "
                    f"use a tighter radius"
                )
            ids.append([h["id"] for h in hits])
            scores.append(self._scores(hits))
        return RangeResult(ids, scores)
