"""Person re-identification metrics on a query x gallery distance matrix: CMC, mAP, mINP.

Two protocols, both vectorised over queries (blocks of queries are sorted and scored at once; there is
no per-query Python loop):

- :func:`reid_metrics`: the Market-1501 protocol (torchreid's ``eval_market1501``): for every query,
  gallery images of the same identity AND the same camera are removed (they are not re-identifications
  across cameras); CMC rank-k is the fraction of queries whose first correct match is within the top k,
  AP the non-interpolated average precision of the remaining list and INP (Ye et al., TPAMI 2021) the
  number of correct matches divided by the rank of the last (hardest) one.
- :func:`single_shot_cmc`: the single-gallery-shot CMC of VIPeR/CUHK03-classic style protocols
  (torchreid's ``eval_cuhk03``): after the same removal, ONE image of every gallery identity is drawn at
  random and the query is ranked among those; averaged over ``repeats`` draws.

Convention:
    - Distances: smaller is closer; ties are broken by gallery index (as a stable sort would).
    - A query whose identity has no gallery image left after the removal is not scored (it counts in
      neither the CMC nor the mAP), as in torchreid; ``num_valid_queries`` says how many were scored,
      and a matrix with none raises :class:`~lookalike.core.errors.EmptyInputError`.
    - Identities and cameras are integers; data set conventions (Market's junk ``-1``) are applied by the
      loaders, not here: an identity ``-1`` is an ordinary identity to these functions.
    - CMC values are fractions in [0, 1] (``cmc[k - 1]`` is rank-k); ``cmc`` has ``max_rank`` entries
      (ranks beyond the gallery size repeat the last value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.core.check import check_int
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError

__all__ = ["RANKS", "ReidScores", "reid_metrics", "single_shot_cmc"]

#: Ranks reported in tables (rank-1/5/10/20).
RANKS: tuple[int, ...] = (1, 5, 10, 20)


@dataclass(frozen=True)
class ReidScores:
    """The scores of one evaluation.

    Attributes:
        cmc: ``(max_rank,)`` float64, ``cmc[k - 1]`` = fraction of scored queries matched within rank k.
        mean_ap: mean average precision (mAP) over the scored queries.
        mean_inp: mean inverse negative penalty (mINP; NaN for :func:`single_shot_cmc`, which does not define it).
        num_valid_queries: queries scored (their identity is in the gallery after the removal).
    """

    cmc: np.ndarray
    mean_ap: float
    mean_inp: float
    num_valid_queries: int

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based)."""
        if not isinstance(k, int) or not 1 <= k <= len(self.cmc):
            raise OptionError(f"rank: expected an integer in [1, {len(self.cmc)}], got {k!r}")
        return float(self.cmc[k - 1])

    def as_dict(self, ranks: tuple[int, ...] = RANKS) -> dict[str, float]:
        """``{"rank1": .., "rank5": .., ..., "mAP": .., "mINP": ..}`` (ranks beyond ``max_rank`` left out)."""
        out = {f"rank{k}": self.rank(k) for k in ranks if k <= len(self.cmc)}
        out["mAP"] = float(self.mean_ap)
        if not np.isnan(self.mean_inp):
            out["mINP"] = float(self.mean_inp)
        return out


def _as_tensor(x: Any, name: str, *, floating: bool):
    import torch

    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    elif not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.numel() == 0:
        return x.detach().cpu().to(torch.float32 if floating else torch.int64)
    if floating:
        if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
            raise ValueRangeError(f"{name}: expected floating distances, got {x.dtype}")
        return x.detach().cpu()
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueRangeError(f"{name}: expected integer identities or cameras, got {x.dtype}")
    return x.detach().cpu().to(torch.int64)


def _check_inputs(dist, query_ids, gallery_ids, query_cams, gallery_cams, max_rank):
    """Tensors on the CPU: dist (Q, G) float, ids and cameras (Q,) / (G,) int64."""
    import torch

    dist = _as_tensor(dist, "dist", floating=True)
    if dist.ndim != 2:
        raise ShapeError(f"dist: expected shape (Q, G), got {tuple(dist.shape)}")
    q, g = dist.shape
    out = [dist]
    for value, name, n in (
        (query_ids, "query_ids", q),
        (gallery_ids, "gallery_ids", g),
        (query_cams, "query_cams", q),
        (gallery_cams, "gallery_cams", g),
    ):
        t = _as_tensor(value, name, floating=False)
        if tuple(t.shape) != (n,):
            raise ShapeError(
                f"{name}: expected shape ({n},) to match dist {(q, g)}, got {tuple(t.shape)}"
            )
        out.append(t)
    if q == 0 or g == 0:
        raise EmptyInputError(
            f"dist: expected at least one query and one gallery image, got {(q, g)}"
        )
    if dist.numel() and not bool(torch.isfinite(dist).all()):
        bad = int((~torch.isfinite(dist)).sum())
        raise ValueRangeError(
            f"dist: expected finite values, got {bad} NaN or infinite of {dist.numel()}"
        )
    check_int(max_rank, "max_rank")
    return out


def _chunk_rows(g: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size")
        return chunk_size
    return max(1, (1 << 22) // max(g, 1))  # about 4 M entries per block


def _score_block(dist, qid, qcam, gid, gcam):
    """Per-query first hit (kept rank, 0-based), AP, INP and validity for one block of queries.

    No sort of the gallery: the correct matches of each query (few) are sorted by (distance, index),
    every gallery image is placed among them with ``searchsorted`` (exact ties resolved by index),
    and the kept images before each correct match are counted from a per-query histogram.
    """
    import torch

    c = dist.shape[0]
    same = gid[None, :] == qid[:, None]
    junk = same & (gcam[None, :] == qcam[:, None])
    pos = same & ~junk
    n_rel = pos.sum(1)
    valid = n_rel > 0
    p = int(n_rel.max()) if c else 0
    if p == 0:
        zero = torch.zeros(c, dtype=torch.float64)
        return torch.zeros(c, dtype=torch.int64), zero, zero, valid
    masked = torch.where(pos, dist, torch.inf)
    pv, pi = torch.topk(masked, p, dim=1, largest=False, sorted=True)
    key = torch.argsort(pi, dim=1, stable=True)  # order the correct matches by (distance, index)
    pv, pi = pv.gather(1, key), pi.gather(1, key)
    key = torch.argsort(pv, dim=1, stable=True)
    pv, pi = pv.gather(1, key).contiguous(), pi.gather(1, key)
    ok = torch.arange(p)[None, :] < n_rel[:, None]
    left = torch.searchsorted(pv, dist.contiguous(), right=False)  # correct matches closer
    # equal to a correct match's distance (every correct match itself): resolve by index
    tie = pv.gather(1, left.clamp_max(p - 1)) == dist
    r, j = tie.nonzero(as_tuple=True)
    if len(r):
        before = (pv[r] == dist[r, j][:, None]) & (pi[r] < j[:, None]) & ok[r]
        left[r, j] += before.sum(1)
    hist = torch.zeros(c, p + 1, dtype=torch.int64)
    hist.scatter_add_(1, left, (~junk).to(torch.int64))
    rank = hist.cumsum(1)[:, :p] - 1  # kept images before the k-th correct match
    hits = torch.arange(1, p + 1, dtype=torch.float64)[None, :]
    rel = n_rel.clamp_min(1).to(torch.float64)
    ap = torch.where(ok, hits / (rank + 1).to(torch.float64), 0.0).sum(1) / rel
    last = rank.gather(1, (n_rel - 1).clamp_min(0)[:, None])[:, 0]
    inp = rel / (last + 1).to(torch.float64)
    return rank[:, 0], ap, inp, valid


def reid_metrics(
    dist: Any,
    query_ids: Any,
    gallery_ids: Any,
    query_cams: Any,
    gallery_cams: Any,
    *,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> ReidScores:
    """CMC, mAP and mINP of the Market-1501 protocol (same identity and camera removed).

    Args:
        dist: ``(Q, G)`` distances (NumPy or torch), smaller is closer.
        query_ids: ``(Q,)`` integer identities; ``gallery_ids``: ``(G,)``.
        query_cams: ``(Q,)`` integer cameras; ``gallery_cams``: ``(G,)``.
        max_rank: length of the CMC curve.
        chunk_size: queries scored at once (default: about 4 M matrix entries per block).

    Returns:
        :class:`ReidScores` (equal to torchreid's ``eval_market1501`` CMC and mAP).

    Raises:
        ShapeError: inconsistent shapes. ValueRangeError: non-finite distances, float identities.
        EmptyInputError: no query has a correct match left in the gallery.

    Example:
        >>> import numpy as np
        >>> dist = np.array([[0.1, 0.5, 0.3], [0.1, 0.4, 0.2]])
        >>> s = reid_metrics(dist, [1, 2], [1, 2, 1], [0, 0], [1, 1, 1], max_rank=3)
        >>> s.cmc.tolist(), round(s.mean_ap, 4), round(s.mean_inp, 4)
        ([0.5, 0.5, 1.0], 0.6667, 0.6667)
    """
    import torch

    dist, qid, gid, qcam, gcam = _check_inputs(
        dist, query_ids, gallery_ids, query_cams, gallery_cams, max_rank
    )
    q, g = dist.shape
    rows = _chunk_rows(g, chunk_size)
    counts = torch.zeros(max_rank + 1, dtype=torch.int64)
    ap_sum = inp_sum = 0.0
    n_valid = 0
    for start in range(0, q, rows):
        sl = slice(start, start + rows)
        first, ap, inp, valid = _score_block(dist[sl], qid[sl], qcam[sl], gid, gcam)
        n_valid += int(valid.sum())
        counts += torch.bincount(first[valid].clamp_max(max_rank), minlength=max_rank + 1)
        ap_sum += float(ap[valid].sum())
        inp_sum += float(inp[valid].sum())
    if n_valid == 0:
        raise EmptyInputError(
            "reid_metrics: no query has a correct match in the gallery after removing same-identity "
            f"same-camera images ({q} queries, {g} gallery images)"
        )
    cmc = counts[:max_rank].cumsum(0).to(torch.float64).numpy() / n_valid
    return ReidScores(cmc, ap_sum / n_valid, inp_sum / n_valid, n_valid)


def single_shot_cmc(
    dist: Any,
    query_ids: Any,
    gallery_ids: Any,
    query_cams: Any,
    gallery_cams: Any,
    *,
    max_rank: int = 50,
    repeats: int = 10,
    seed: int = 0,
) -> ReidScores:
    """Single-gallery-shot CMC (one random gallery image per identity), mean over ``repeats`` draws.

    Args:
        dist, query_ids, gallery_ids, query_cams, gallery_cams, max_rank: as :func:`reid_metrics`.
        repeats: random draws of one image per gallery identity (torchreid uses 10).
        seed: seed of the draws.

    Returns:
        :class:`ReidScores` with the mean single-shot CMC; ``mean_ap`` is the full-gallery mAP of
        :func:`reid_metrics` (as torchreid's ``eval_cuhk03`` reports), ``mean_inp`` is NaN.

    Convention:
        Draw ``r`` uses ``numpy.random.default_rng(seed)``'s ``r``-th ``random((Q, G))`` matrix of keys:
        for every query and gallery identity, the remaining image with the largest key is the one kept.
        With one gallery image per identity and camera (VIPeR) every draw is the same and the result is
        the plain CMC of :func:`reid_metrics`.

    Example:
        >>> dist = [[0.1, 0.2, 0.3]]
        >>> single_shot_cmc(dist, [1], [2, 1, 2], [0], [1, 1, 1], max_rank=2, repeats=200).rank(1) > 0.4
        True
    """
    import torch

    dist, qid, gid, qcam, gcam = _check_inputs(
        dist, query_ids, gallery_ids, query_cams, gallery_cams, max_rank
    )
    check_int(repeats, "repeats")
    full = reid_metrics(dist, qid, gid, qcam, gcam, max_rank=max_rank)
    q, g = dist.shape
    _, group = torch.unique(gid, return_inverse=True)
    n_groups = int(group.max()) + 1
    order = torch.argsort(dist, dim=1, stable=True)
    same_id = gid[order] == qid[:, None]
    keep_sorted = ~(same_id & (gcam[order] == qcam[:, None]))
    valid = (same_id & keep_sorted).any(1)
    keep = torch.empty_like(keep_sorted).scatter_(1, order, keep_sorted)  # gallery order
    rng = np.random.default_rng(seed)
    counts = torch.zeros(max_rank + 1, dtype=torch.float64)
    big = torch.iinfo(torch.int64).max
    for _ in range(repeats):
        keys = torch.from_numpy(rng.random((q, g))).masked_fill_(~keep, -1.0)
        best = torch.full((q, n_groups), -1.0, dtype=torch.float64)
        best.scatter_reduce_(1, group.expand(q, g), keys, reduce="amax")
        chosen = (keys == best.gather(1, group.expand(q, g))) & keep
        chosen_sorted = chosen.gather(1, order)
        rank = chosen_sorted.cumsum(1, dtype=torch.int64) - 1
        first = torch.where(chosen_sorted & same_id, rank, big).amin(1)
        counts += torch.bincount(first[valid].clamp_max(max_rank), minlength=max_rank + 1)
    cmc = counts[:max_rank].cumsum(0).numpy() / (repeats * full.num_valid_queries)
    return ReidScores(cmc, full.mean_ap, float("nan"), full.num_valid_queries)
