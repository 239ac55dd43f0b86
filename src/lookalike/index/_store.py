"""Ids and metadata of a local index: an in-memory SQLite database mirrored by fast label look-ups.

The working copy lives in memory; :meth:`ItemStore.write` copies it into a file with SQLite's online
backup (no pickle, readable by any SQLite client) and :meth:`ItemStore.read` copies a file back in.

Tables: ``items(label INTEGER PRIMARY KEY, id TEXT UNIQUE, meta TEXT)`` (``meta`` is JSON) and
``tombstones(label INTEGER PRIMARY KEY)`` (labels removed from the items but still inside an index that
cannot delete, e.g. HNSW), plus ``info(key, value)`` holding the next free label.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.errors import DTypeError
from lookalike.index.base import CorruptIndexError, ItemNotFoundError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (label INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (label INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _dumps(meta: dict[str, Any]) -> str:
    try:
        return json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise DTypeError(
            f"metadata: expected JSON-serialisable dicts, got {meta!r} ({exc})"
        ) from exc


class ItemStore:
    """Label <-> id mapping and metadata (see the module docstring)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.executescript(_SCHEMA)
        self._label_of: dict[str, int] = {}
        self._id_of = np.empty(0, dtype=object)  # label -> id (None when free)
        self.next_label = 0

    # ------------------------------------------------------------------ look-ups
    def __len__(self) -> int:
        return len(self._label_of)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._label_of))

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._label_of

    def labels(self, ids: list[str]) -> np.ndarray:
        return np.fromiter((self._label_of[i] for i in ids), dtype=np.int64, count=len(ids))

    def all_labels(self) -> np.ndarray:
        return np.fromiter(self._label_of.values(), dtype=np.int64, count=len(self._label_of))

    def ids_of(self, labels: np.ndarray) -> np.ndarray:
        """Object array of ids for int64 labels (``None`` for -1 or a free label)."""
        out = np.full(labels.shape, None, dtype=object)
        ok = (labels >= 0) & (labels < self._id_of.shape[0])
        out[ok] = self._id_of[labels[ok]]
        return out

    def metadata(self, item_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT meta FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:  # removed by another thread after the caller's membership check
            raise ItemNotFoundError(f"id {item_id!r} is not in the index")
        return json.loads(row[0])

    def tombstones(self) -> np.ndarray:
        rows = self.db.execute("SELECT label FROM tombstones").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    # ------------------------------------------------------------------ changes
    def add(self, ids: list[str], metadata: list[dict[str, Any]]) -> np.ndarray:
        """Give ``ids`` new labels; returns them (int64)."""
        blobs = [_dumps(m) for m in metadata]
        labels = np.arange(self.next_label, self.next_label + len(ids), dtype=np.int64)
        with self.db:
            self.db.executemany(
                "INSERT INTO items (label, id, meta) VALUES (?, ?, ?)",
                zip(labels.tolist(), ids, blobs),
            )
        self.next_label += len(ids)
        if self._id_of.shape[0] < self.next_label:
            grown = np.full(max(self.next_label, 2 * self._id_of.shape[0]), None, dtype=object)
            grown[: self._id_of.shape[0]] = self._id_of
            self._id_of = grown
        self._id_of[labels] = np.array(ids, dtype=object)
        self._label_of.update(zip(ids, labels.tolist()))
        return labels

    def remove(self, ids: list[str], *, tombstone: bool = False) -> np.ndarray:
        """Forget ``ids``; returns their labels (recorded as tombstones when asked)."""
        labels = self.labels(ids)
        with self.db:
            self.db.executemany("DELETE FROM items WHERE id = ?", ((i,) for i in ids))
            if tombstone:
                self.db.executemany(
                    "INSERT INTO tombstones (label) VALUES (?)", ((int(x),) for x in labels)
                )
        for i in ids:
            del self._label_of[i]
        self._id_of[labels] = None
        return labels

    def set_metadata(self, ids: list[str], metadata: list[dict[str, Any]]) -> None:
        blobs = [_dumps(m) for m in metadata]
        with self.db:
            self.db.executemany("UPDATE items SET meta = ? WHERE id = ?", zip(blobs, ids))

    def clear_tombstones(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM tombstones")

    # ------------------------------------------------------------------ files
    def write(self, path: Path) -> None:
        """Copy the database into a new file ``path``."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO info (key, value) VALUES ('next_label', ?)",
                (str(self.next_label),),
            )
        dst = sqlite3.connect(path)
        try:
            self.db.backup(dst)
        finally:
            dst.close()

    @classmethod
    def read(cls, path: Path) -> ItemStore:
        """Load a database file written by :meth:`write`.

        Raises:
            CorruptIndexError: not a readable items database.
        """
        store = cls()
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                src.backup(store.db)
            finally:
                src.close()
            rows = store.db.execute("SELECT label, id FROM items ORDER BY label").fetchall()
            info = dict(store.db.execute("SELECT key, value FROM info").fetchall())
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"{path}: not a readable items database ({exc})") from exc
        store.next_label = int(info.get("next_label", 0))
        labels = np.array([r[0] for r in rows], dtype=np.int64)
        size = max(store.next_label, int(labels.max()) + 1 if labels.size else 0)
        store.next_label = size
        store._id_of = np.full(size, None, dtype=object)
        store._id_of[labels] = np.array([r[1] for r in rows], dtype=object)
        store._label_of = {r[1]: r[0] for r in rows}
        return store
