"""``faiss``: any faiss factory string behind the index API ("Flat", "IVF1024,Flat", "HNSW32", "IVF256,PQ16").

Convention:
    - Metrics map to ``METRIC_INNER_PRODUCT`` (``ip``, ``cosine`` on normalised rows) and
      ``METRIC_L2`` (faiss's squared distances are returned as distances, and an ``l2`` radius is
      squared before it reaches faiss).
    - Training: an untrained index (IVF, PQ, ...) is trained on its first ``add``, from those vectors
      (a random sample of ``train_size`` rows when given), or earlier by :meth:`FaissIndex.train`.
      Fewer vectors than the index needs (``nlist`` for IVF, ``2 ** nbits`` for PQ) is a
      :class:`~lookalike.index.base.TooFewVectorsError`; fewer than faiss recommends (39 per
      centroid) is logged as a warning.
    - Search parameters: ``nprobe`` (IVF; default ``clip(nlist // 16, 16, nlist)``, never 1 silently)
      and ``ef_search`` (HNSW; default 64, at least ``k``). Both can be given per call to ``search``.
    - Removal: indexes that can delete (Flat, IVF, PQ, ...) delete at once. HNSW cannot: removed
      labels become tombstones, skipped during search through a faiss ``IDSelector``; when they reach
      ``rebuild_fraction`` of the stored vectors (default 0.2) the graph is rebuilt from the live
      vectors (reconstructed from the index). With ``shards > 1`` the affected shards are rebuilt at
      once instead.
    - Scale-out on one machine: ``shards=N`` spreads the vectors over ``N`` sub-indexes searched in
      parallel (``faiss.IndexShards``); ``FaissIndex.load(path, mmap=True)`` maps the inverted lists
      of an IVF index from the file (``faiss.IO_FLAG_MMAP``, on-disk inverted lists; read-only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.index._local import LocalIndex
from lookalike.index.base import TooFewVectorsError, check_k

__all__ = ["FaissIndex", "default_nprobe"]

log = logging.getLogger(__name__)


def default_nprobe(nlist: int) -> int:
    """Default inverted lists visited per query: ``nlist // 16`` clipped to ``[min(16, nlist), nlist]``.

    Example:
        >>> default_nprobe(1024), default_nprobe(256), default_nprobe(4)
        (64, 16, 4)
    """
    return int(min(nlist, max(16, nlist // 16)))


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is a declared extra
        raise OptionError("the faiss index needs faiss: pip install 'lookalike[faiss]'") from exc
    return faiss


@register("index", "faiss")
class FaissIndex(LocalIndex):
    """A faiss index from a factory string, with string ids, metadata and atomic saves.

    Args:
        dim: vector width.
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"``.
        factory: a faiss index factory string (without ``IDMap``; ids are handled here).
        nprobe: IVF lists visited per query (default :func:`default_nprobe`).
        ef_search: HNSW candidate list size (default 64).
        train_size: train on at most this many randomly drawn rows of the first batch (``None``: all).
        shards: number of sub-indexes (``faiss.IndexShards``), 1 for a single index.
        rebuild_fraction: HNSW tombstones, as a fraction of the stored vectors, that trigger a rebuild.
        seed: seed of the training sample.
        descriptor, descriptor_sha256: the descriptor the vectors come from (kept in the manifest).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(500, 8)).astype("float32")
        >>> index = FaissIndex(dim=8, metric="l2", factory="IVF4,Flat")
        >>> index.add([f"v{i}" for i in range(500)], x)
        >>> index.nprobe, index.search(x[:2], k=1).ids
        (4, [['v0'], ['v1']])
    """

    backend = "faiss"

    def __init__(
        self,
        *,
        dim: int,
        metric: str = "cosine",
        factory: str = "Flat",
        nprobe: int | None = None,
        ef_search: int | None = None,
        train_size: int | None = None,
        shards: int = 1,
        rebuild_fraction: float = 0.2,
        seed: int = 0,
        descriptor: str | None = None,
        descriptor_sha256: str | None = None,
    ) -> None:
        super().__init__(
            dim=dim, metric=metric, descriptor=descriptor, descriptor_sha256=descriptor_sha256
        )
        if not isinstance(factory, str) or not factory or "IDMap" in factory:
            raise OptionError(
                f"factory: expected a faiss factory string without IDMap (e.g. 'IVF1024,Flat'), "
                f"got {factory!r}"
            )
        for key, value in (("shards", shards), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (key == "shards"):
                raise OptionError(
                    f"{key}: expected an integer >= {int(key == 'shards')}, got {value!r}"
                )
        if train_size is not None:
            check_k(train_size)
        if not (isinstance(rebuild_fraction, (int, float)) and 0 < rebuild_fraction <= 1):
            raise OptionError(
                f"rebuild_fraction: expected a number in (0, 1], got {rebuild_fraction!r}"
            )
        self.factory = factory
        self.shards = shards
        self.train_size = train_size
        self.rebuild_fraction = float(rebuild_fraction)
        self.seed = seed
        self._parts = [self._new_part() for _ in range(shards)]
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._can_remove: bool | None = None
        self._sharded: tuple[Any, list[int]] | None = None
        self._set_defaults(nprobe, ef_search)

    # ------------------------------------------------------------------ construction
    def _new_part(self) -> Any:
        faiss = _faiss()
        kind = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        try:
            index = faiss.index_factory(self.dim, self.factory, kind)
        except RuntimeError as exc:
            raise OptionError(
                f"factory: faiss cannot build {self.factory!r} for dim {self.dim}: "
                f"{str(exc).splitlines()[-1]}"
            ) from exc
        ivf = self._ivf(index)
        if ivf is None:  # IVF indexes take ids themselves
            return faiss.IndexIDMap2(index)
        # Polysemous training reorders PQ codes for polysemous search only (not used here); with
        # 8-bit codes it made IVF-PQ training ~4x slower (114 s vs 27 s on a 20k sample).
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False
        return index

    @staticmethod
    def _ivf(index: Any) -> Any:
        faiss = _faiss()
        try:
            return faiss.downcast_index(faiss.extract_index_ivf(index))
        except RuntimeError:
            return None

    def _hnsw(self) -> Any:
        faiss = _faiss()
        inner = self._parts[0]
        inner = faiss.downcast_index(inner.index if isinstance(inner, faiss.IndexIDMap2) else inner)
        return inner if hasattr(inner, "hnsw") else None

    def _set_defaults(self, nprobe: int | None, ef_search: int | None) -> None:
        ivf = self._ivf(self._parts[0])
        self.nlist = None if ivf is None else int(ivf.nlist)
        if nprobe is not None:
            check_k(nprobe)
            if ivf is None:
                raise OptionError(f"nprobe: {self.factory!r} is not an IVF index")
        if ef_search is not None:
            check_k(ef_search)
            if self._hnsw() is None:
                raise OptionError(f"ef_search: {self.factory!r} is not an HNSW index")
        self.nprobe = None if ivf is None else (nprobe or default_nprobe(self.nlist))
        self.ef_search = None if self._hnsw() is None else (ef_search or 64)

    @property
    def faiss_index(self) -> Any:
        """The faiss index searched (an ``IndexShards`` over the parts when ``shards > 1``)."""
        if len(self._parts) == 1:
            return self._parts[0]
        if self._sharded is None or self._sharded[1] != [id(p) for p in self._parts]:
            faiss = _faiss()
            shards = faiss.IndexShards(self.dim, True, False)
            for part in self._parts:
                shards.add_shard(part)
            self._sharded = (shards, [id(p) for p in self._parts])
        return self._sharded[0]

    # ------------------------------------------------------------------ training
    def min_train_size(self) -> int:
        """Fewest vectors the index can be trained from (``nlist`` for IVF, ``2 ** nbits`` for PQ)."""
        faiss = _faiss()
        need = 1
        ivf = self._ivf(self._parts[0])
        if ivf is not None:
            need = max(need, int(ivf.nlist))
        base = self._parts[0]
        for candidate in (ivf, faiss.downcast_index(getattr(base, "index", base))):
            pq = getattr(candidate, "pq", None)
            if pq is not None:
                need = max(need, int(pq.ksub))
        return need

    @property
    def is_trained(self) -> bool:
        return bool(self._parts[0].is_trained)

    def train(self, vectors: Any) -> None:
        """Train the index (IVF centroids, PQ codebooks) on ``(N, dim)`` rows.

        Raises:
            TooFewVectorsError: fewer rows than :meth:`min_train_size`.
            OptionError: the index holds vectors already.
        """
        self._writable()
        rows = self._rows(vectors, "vectors")
        with self._lock:
            if len(self) or any(p.ntotal for p in self._parts):
                raise OptionError("train: the index holds vectors already; train an empty index")
            self._train(rows)

    def _train(self, rows: np.ndarray) -> None:
        need = self.min_train_size()
        if rows.shape[0] < need:
            raise TooFewVectorsError(
                f"{self.factory!r} needs at least {need} vectors to train, got {rows.shape[0]}: "
                f"add a bigger first batch, call train() with a larger sample, or use fewer lists "
                f"/ fewer PQ bits"
            )
        if self.train_size is not None and rows.shape[0] > self.train_size:
            pick = np.random.default_rng(self.seed).choice(
                rows.shape[0], self.train_size, replace=False
            )
            rows = rows[np.sort(pick)]
        if self.nlist and rows.shape[0] < 39 * self.nlist:
            log.warning(
                "training %s on %d vectors; faiss recommends at least %d (39 per list)",
                self.factory,
                rows.shape[0],
                39 * self.nlist,
            )
        self._parts[0].train(rows)
        faiss = _faiss()
        for i in range(1, len(self._parts)):  # the same trained (empty) index for every shard
            self._parts[i] = faiss.clone_index(self._parts[0])

    # ------------------------------------------------------------------ storage
    def _vec_prepare(self, rows: np.ndarray) -> None:
        if not self.is_trained:
            self._train(rows)

    def _vec_add(self, labels: np.ndarray, rows: np.ndarray) -> None:
        if len(self._parts) == 1:
            self._parts[0].add_with_ids(rows, labels)
            return
        sizes = np.array([p.ntotal for p in self._parts])
        # fill the emptiest shards first, so the shards stay balanced
        order = np.argsort(sizes, kind="stable")
        for j, chunk in enumerate(np.array_split(np.arange(rows.shape[0]), len(self._parts))):
            if chunk.size:
                self._parts[order[j]].add_with_ids(rows[chunk], labels[chunk])

    def _vec_remove(self, labels: np.ndarray) -> bool:
        if self._can_remove is None:
            try:
                self._parts[0].remove_ids(np.zeros(0, dtype=np.int64))
                self._can_remove = True
            except RuntimeError:
                self._can_remove = False
        if self._can_remove:
            removed = sum(int(p.remove_ids(labels)) for p in self._parts)
            if removed != labels.size:
                raise RuntimeError(f"faiss removed {removed} of {labels.size} vectors")
            return False
        if len(self._parts) > 1:
            self._rebuild(labels)
            return False
        self._tombstones = np.union1d(self._tombstones, labels)
        return True

    def _vec_after_tombstones(self) -> None:
        stored = sum(p.ntotal for p in self._parts)
        if self._tombstones.size >= self.rebuild_fraction * stored:
            self._rebuild(self._tombstones)
            self._store.clear_tombstones()

    def compact(self) -> None:
        """Rebuild now without the tombstoned (removed but still stored) HNSW vectors."""
        self._writable()
        with self._lock:
            if self._tombstones.size:
                self._rebuild(self._tombstones)
                self._store.clear_tombstones()

    def _rebuild(self, dead: np.ndarray) -> None:
        """Rebuild every part that holds a label of ``dead`` from its live vectors."""
        faiss = _faiss()
        for i, part in enumerate(self._parts):
            labels = faiss.vector_to_array(part.id_map)
            keep = ~np.isin(labels, dead)
            if keep.all():
                continue
            vectors = part.index.reconstruct_n(0, part.ntotal)
            fresh = self._new_part()
            if not fresh.is_trained:
                fresh.train(vectors[keep] if keep.sum() >= self.min_train_size() else vectors)
            if keep.any():
                fresh.add_with_ids(vectors[keep], labels[keep])
            self._parts[i] = fresh
        log.info("rebuilt %s without %d removed vectors", self.factory, dead.size)
        self._tombstones = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ search
    def _params(self, k: int, nprobe: int | None, ef_search: int | None) -> Any:
        faiss = _faiss()
        sel = None
        if self._tombstones.size:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._tombstones))
        if self.nprobe is not None:
            p = faiss.SearchParametersIVF()
            p.nprobe = min(self.nlist, nprobe or self.nprobe)
        elif self.ef_search is not None:
            p = faiss.SearchParametersHNSW()
            p.efSearch = max(k, ef_search or self.ef_search)
        else:
            p = faiss.SearchParameters()
        if sel is not None:
            p.sel = sel
            p._sel_ref = sel  # keep the selector alive while faiss uses it
        return p

    def _check_params(self, nprobe: Any, ef_search: Any, extra: dict[str, Any]) -> None:
        if extra:
            raise OptionError(
                f"faiss search: unknown parameters {sorted(extra)}; accepted: ef_search, nprobe"
            )
        if nprobe is not None and (check_k(nprobe) and self.nprobe is None):
            raise OptionError(f"nprobe: {self.factory!r} is not an IVF index")
        if ef_search is not None and (check_k(ef_search) and self.ef_search is None):
            raise OptionError(f"ef_search: {self.factory!r} is not an HNSW index")

    def _vec_search(
        self,
        q: np.ndarray,
        k: int,
        nprobe: int | None = None,
        ef_search: int | None = None,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_params(nprobe, ef_search, extra)
        index = self.faiss_index
        if len(self._parts) == 1:
            scores, labels = index.search(q, k, params=self._params(k, nprobe, ef_search))
        else:  # IndexShards takes no per-call parameters: set them on every shard
            self._set_parts(k, nprobe, ef_search)
            scores, labels = index.search(q, k)
        if self.metric == "l2":
            scores = np.sqrt(np.maximum(scores, 0))
        return scores, labels

    def _set_parts(self, k: int, nprobe: int | None, ef_search: int | None) -> None:
        faiss = _faiss()
        space = faiss.ParameterSpace()
        for part in self._parts:
            if self.nprobe is not None:
                space.set_index_parameter(part, "nprobe", min(self.nlist, nprobe or self.nprobe))
            if self.ef_search is not None:
                space.set_index_parameter(part, "efSearch", max(k, ef_search or self.ef_search))

    def _vec_range(
        self,
        q: np.ndarray,
        radius: float,
        nprobe: int | None = None,
        ef_search: int | None = None,
        **extra: Any,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        self._check_params(nprobe, ef_search, extra)
        r = radius * radius if self.metric == "l2" else radius
        per_part = []
        for part in self._parts:
            try:
                lims, scores, labels = part.range_search(
                    q, r, params=self._params(1, nprobe, ef_search)
                )
            except RuntimeError as exc:
                raise OptionError(
                    f"range search is not supported by faiss {self.factory!r}: {str(exc).splitlines()[-1]}"
                ) from exc
            per_part.append((lims, scores, labels))
        hits = []
        for row in range(q.shape[0]):
            labels = np.concatenate([lab[lims[row] : lims[row + 1]] for lims, _, lab in per_part])
            scores = np.concatenate([s[lims[row] : lims[row + 1]] for lims, s, _ in per_part])
            if self.metric == "l2":
                scores = np.sqrt(np.maximum(scores, 0))
            hits.append((labels, scores))
        return hits

    # ------------------------------------------------------------------ files
    def _options(self) -> dict[str, Any]:
        return {
            "factory": self.factory,
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "train_size": self.train_size,
            "shards": self.shards,
            "rebuild_fraction": self.rebuild_fraction,
            "seed": self.seed,
        }

    def _vec_writers(self) -> dict[str, tuple[str, Callable[[Path], None]]]:
        faiss = _faiss()

        def writer(part: Any) -> Callable[[Path], None]:
            return lambda path: faiss.write_index(part, str(path))

        return {f"faiss{i}": (f"index{i}.faiss", writer(p)) for i, p in enumerate(self._parts)}

    def _vec_read(self, files: dict[str, Path], *, mmap: bool) -> None:
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP if mmap else 0
        if mmap and self._ivf(self._parts[0]) is None:
            raise OptionError(
                f"mmap: only IVF indexes keep their lists on disk, not {self.factory!r}"
            )
        self._parts = [faiss.read_index(str(files[f"faiss{i}"]), flags) for i in range(self.shards)]
        self._tombstones = self._store.tombstones()  # HNSW removals not yet rebuilt away
