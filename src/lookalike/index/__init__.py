"""Vector indexes (kind ``index``): ``flat`` (exact, torch), ``faiss`` (any factory string), ``milvus``.

Every backend shares the API of :class:`lookalike.index.base.VectorIndex` (string ids, metadata, add /
remove / update, batch and range search); local backends save to and load from one directory
atomically (:mod:`lookalike.index.io`). This package imports nothing heavy: the backends are imported
by the registry on first look-up (``lookalike.create("index", "faiss", dim=128)``), and
``load_index`` on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_index"]


def __getattr__(name: str) -> Any:
    if name == "load_index":
        from lookalike.index._local import load_index

        return load_index
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
