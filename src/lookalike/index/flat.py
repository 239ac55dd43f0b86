"""``flat``: exact kNN in torch, blockwise (the same top-k as the matcher), on any device.

The vectors live in one torch tensor on ``device``; a search multiplies blocks of queries with the
whole base (about 32 MB of scores per block, see :mod:`lookalike.matching.matchers`), so memory stays
bounded for any number of queries. Exact, so no training and no search parameters.

Convention:
    Removal deletes rows at once (no tombstones). Saved as ``vectors-V.npy`` and ``labels-V.npy``
    (``allow_pickle=False``) beside the items database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike._registry import register
from lookalike.core.errors import OptionError
from lookalike.index._local import LocalIndex

__all__ = ["FlatIndex"]

_BLOCK_BYTES = 32 * 1024 * 1024


@register("index", "flat")
class FlatIndex(LocalIndex):
    """Exact kNN index in torch (blockwise), with string ids, metadata and atomic saves.

    Args:
        dim: vector width.
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"`` (see :mod:`lookalike.index.base`).
        device: torch device holding the vectors (``"cpu"``, ``"cuda"``, ...).
        descriptor, descriptor_sha256: the descriptor the vectors come from (kept in the manifest).

    Example:
        >>> import numpy as np
        >>> index = FlatIndex(dim=2, metric="l2")
        >>> index.add(["a", "b", "c"], np.array([[0, 0], [1, 0], [5, 5]]), [{"n": 1}, {}, {}])
        >>> result = index.search(np.array([[0.9, 0.1]]), k=2)
        >>> result.ids, [round(float(s), 3) for s in result.scores[0]]
        ([['b', 'a']], [0.141, 0.906])
        >>> index.remove("b"); len(index), sorted(index)
        (2, ['a', 'c'])
    """

    backend = "flat"

    def __init__(
        self,
        *,
        dim: int,
        metric: str = "cosine",
        device: str = "cpu",
        descriptor: str | None = None,
        descriptor_sha256: str | None = None,
    ) -> None:
        import torch

        super().__init__(
            dim=dim, metric=metric, descriptor=descriptor, descriptor_sha256=descriptor_sha256
        )
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise OptionError(f"device: expected a torch device name, got {device!r}") from exc
        self._vectors = torch.zeros(0, dim, device=self.device)
        self._labels = torch.zeros(0, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ storage
    def _vec_add(self, labels: np.ndarray, rows: np.ndarray) -> None:
        import torch

        self._vectors = torch.cat([self._vectors, torch.from_numpy(rows).to(self.device)])
        self._labels = torch.cat([self._labels, torch.from_numpy(labels).to(self.device)])

    def _vec_remove(self, labels: np.ndarray) -> bool:
        import torch

        gone = torch.isin(self._labels, torch.from_numpy(labels).to(self.device))
        self._vectors, self._labels = self._vectors[~gone], self._labels[~gone]
        return False

    # ------------------------------------------------------------------ search
    def _vec_search(self, q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from lookalike.matching.matchers import _top_torch

        if params:
            raise OptionError(f"flat index: exact search takes no parameters, got {sorted(params)}")
        x = torch.from_numpy(q).to(self.device)
        y = self._vectors
        n = y.shape[0]
        kk = min(k, n)
        if self.metric == "l2":
            d2, idx, _, _ = _top_torch(x, y, (x * x).sum(1), (y * y).sum(1), kk, 0, None)
            scores = d2.sqrt()
        else:  # equal (zero) norms make the blockwise top-k rank by the dot product
            zx, zy = x.new_zeros(x.shape[0]), y.new_zeros(n)
            _, idx, _, _ = _top_torch(x, y, zx, zy, kk, 0, None)
            scores = torch.einsum("qd,qkd->qk", x, y[idx])  # exact scores of the chosen rows
        labels = self._labels[idx]
        out_s = np.full((q.shape[0], k), np.nan, dtype=np.float32)
        out_l = np.full((q.shape[0], k), -1, dtype=np.int64)
        out_s[:, :kk] = scores.float().cpu().numpy()
        out_l[:, :kk] = labels.cpu().numpy()
        return out_s, out_l

    def _vec_range(
        self, q: np.ndarray, radius: float, **params: Any
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        if params:
            raise OptionError(f"flat index: exact search takes no parameters, got {sorted(params)}")
        x = torch.from_numpy(q).to(self.device)
        y = self._vectors
        block = max(1, _BLOCK_BYTES // max(1, 4 * y.shape[0]))
        hits: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, x.shape[0], block):
            xb = x[start : start + block]
            if self.metric == "l2":
                score = torch.cdist(xb, y, compute_mode="donot_use_mm_for_euclid_dist")
                keep = score <= radius
            else:
                score = xb @ y.t()
                keep = score >= radius
            for row in range(xb.shape[0]):
                cols = keep[row].nonzero().squeeze(1)
                hits.append(
                    (self._labels[cols].cpu().numpy(), score[row, cols].float().cpu().numpy())
                )
        return hits

    # ------------------------------------------------------------------ files
    def _options(self) -> dict[str, Any]:
        return {"device": str(self.device)}

    def _vec_writers(self) -> dict[str, tuple[str, Callable[[Path], None]]]:
        vectors = self._vectors.cpu().numpy()
        labels = self._labels.cpu().numpy()

        def save(array: np.ndarray) -> Callable[[Path], None]:
            def write(path: Path) -> None:
                with open(path, "wb") as f:
                    np.save(f, array, allow_pickle=False)

            return write

        return {"vectors": ("vectors.npy", save(vectors)), "labels": ("labels.npy", save(labels))}

    def _vec_read(self, files: dict[str, Path], *, mmap: bool) -> None:
        import torch

        if mmap:
            raise OptionError("flat index: mmap is for faiss IVF indexes only")
        vectors = np.load(files["vectors"], allow_pickle=False)
        labels = np.load(files["labels"], allow_pickle=False)
        if vectors.shape != (labels.shape[0], self.dim):
            from lookalike.index.base import CorruptIndexError

            raise CorruptIndexError(
                f"{files['vectors']}: expected vectors of shape ({labels.shape[0]}, {self.dim}), "
                f"got {vectors.shape}"
            )
        self._vectors = torch.from_numpy(vectors).to(self.device)
        self._labels = torch.from_numpy(labels).to(self.device)
