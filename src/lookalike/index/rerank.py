"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) as a pure function of distance matrices.

:func:`k_reciprocal_rerank` takes the query-gallery, query-query and gallery-gallery distances and
returns the re-ranked query-gallery distances ``(1 - lambda) * d_Jaccard + lambda * d_original``. It
computes exactly what the authors' reference implementation (``zhunzhong07/person-re-ranking``,
``re_ranking``) computes, without its ``(Q + G)^2`` dense matrices: the k-reciprocal neighbour sets are
built from the top-``(k1 + 1)`` neighbours of every image, the encodings ``V`` are sparse (a few hundred
non-zeros per row), local query expansion is a sparse product and the Jaccard distance sums
``min(V_q, V_g)`` over the shared non-zeros only. At Market-1501 scale it needs a fraction of the
reference's ~9 GB.

Convention:
    - Distances, as in the paper: the original distance is the SQUARED Euclidean distance of the
      features, each row divided by its maximum over all ``Q + G`` images. With ``squared=False``
      (default) the inputs are Euclidean distances and are squared here, like the reference
      implementation does with the features' ``cdist``. torchreid's ``re_ranking`` squares its inputs
      too, but torchreid's engine feeds it distances that are already squared (its ``euclidean`` metric
      returns squared distances), so torchreid ranks with the 4th power. To re-rank squared distances
      as the paper does, pass ``squared=True``; to reproduce torchreid, pass squared distances with
      ``squared=False``.
    - ``q_q`` and ``g_g`` must be symmetric with zero diagonals (distances of a set to itself).
    - Ties among neighbours are broken by index (a stable sort); with ties, the reference's unstable
      ``argsort`` may pick other neighbours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError

__all__ = ["k_reciprocal_rerank"]


def _matrix(x: Any, name: str, shape: tuple[int | None, int | None]):
    """``x`` as a float32 CPU tensor of ``shape`` (values are checked during the neighbour pass)."""
    import torch

    t = torch.from_numpy(x) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.ndim != 2 or any(want is not None and want != got for want, got in zip(shape, t.shape)):
        want = tuple("*" if s is None else s for s in shape)
        raise ShapeError(f"{name}: expected shape {want}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueRangeError(f"{name}: expected floating distances, got {t.dtype}")
    return t.detach().cpu().to(torch.float32)


def _smallest(parts, k: int):
    """The ``k`` smallest entries of the rows of ``[part_0, part_1, ...]`` (``(values, column)``
    pairs, column offsets given), ordered by (value, column); plus the row maxima."""
    import torch

    vals, idx, maxima = [], [], []
    for block, offset in parts:
        v, i = torch.topk(block, min(k, block.shape[1]), dim=1, largest=False, sorted=False)
        vals.append(v)
        idx.append(i + offset)
        maxima.append(block.amax(1))
    vals, idx = torch.cat(vals, 1), torch.cat(idx, 1)
    key = torch.argsort(idx, dim=1, stable=True)  # ties: the smaller column first
    vals, idx = vals.gather(1, key), idx.gather(1, key)
    key = torch.argsort(vals, dim=1, stable=True)[:, :k]
    return vals.gather(1, key), idx.gather(1, key), torch.stack(maxima, 1).amax(1)


class _Blocks:
    """The ``(N, N)`` matrix ``[[q_q, q_g], [q_g^T, g_g]]`` read by blocks, never built.

    One pass over the blocks finds every row's maximum and its ``k`` nearest images (the order of
    squared distances is the order of distances, so nothing is squared there) and checks the values.
    """

    def __init__(self, q_g, q_q, g_g, *, squared: bool, k: int) -> None:
        import torch

        self.q, self.g = q, g = q_g.shape
        self.n = n = q + g
        self.q_g, self.q_q, self.g_g, self.squared = q_g, q_q, g_g, squared
        step = max(1, (1 << 23) // n)
        ranks, maxima, minima = [], [], []
        for start in range(0, n, step):
            stop = min(start + step, n)
            if stop <= q:
                parts = [(q_q[start:stop], 0), (q_g[start:stop], q)]
            elif start >= q:
                parts = [(q_g[:, start - q : stop - q].T, 0), (g_g[start - q : stop - q], q)]
            else:  # a block across the query/gallery boundary: two halves
                top = _smallest([(q_q[start:q], 0), (q_g[start:q], q)], k)
                low = _smallest([(q_g[:, : stop - q].T, 0), (g_g[: stop - q], q)], k)
                v, i, m = (torch.cat(pair, 0) for pair in zip(top, low))
                ranks.append(i), maxima.append(m), minima.append(v[:, 0])
                continue
            v, i, m = _smallest(parts, k)
            ranks.append(i), maxima.append(m), minima.append(v[:, 0])
        self.ranks = torch.cat(ranks, 0)
        row_max = torch.cat(maxima)
        if not bool(torch.isfinite(row_max).all()) or float(torch.cat(minima).min()) < 0:
            raise ValueRangeError(
                "q_g, q_q, g_g: expected finite distances >= 0, got NaN, infinite or negative values"
            )
        row_max = row_max if squared else row_max * row_max
        self.row_max = row_max.clamp_min(torch.finfo(torch.float32).tiny)

    def gather(self, i, j):
        """Squared, row-normalised entries ``(i[k], j[k])`` of the full matrix."""
        import torch

        q = self.q
        out = torch.empty(i.shape, dtype=torch.float32)
        iq, jq = i < q, j < q
        for mask, block, di, dj in (
            (iq & jq, self.q_q, 0, 0),
            (iq & ~jq, self.q_g, 0, q),
            (~iq & ~jq, self.g_g, q, q),
        ):
            out[mask] = block[i[mask] - di, j[mask] - dj]
        mask = ~iq & jq
        out[mask] = self.q_g[j[mask], i[mask] - q]
        if not self.squared:
            out = out * out
        return out / self.row_max[i]


def _reciprocal(ranks, k: int):
    """``(N, k)`` mask: ``ranks[i, a]`` is a k-reciprocal neighbour of ``i`` (``i`` in its top k)."""
    import torch

    top = ranks[:, :k]
    n = top.shape[0]
    own = torch.arange(n)[:, None, None]
    return (top[top] == own).any(-1)


def _encodings(blocks: _Blocks, ranks, k1: int):
    """Sparse ``V`` (COO indices and values): Gaussian weights on the expanded k-reciprocal sets."""
    import torch

    n = blocks.n
    half = int(np.around(k1 / 2.0)) + 1
    recip = _reciprocal(ranks, k1 + 1)  # (N, k1+1)
    recip_half = _reciprocal(ranks, half)  # (N, half)
    top = ranks[:, : k1 + 1]
    rows, cols = [], []
    step = max(1, (1 << 22) // ((k1 + 1) * half * (k1 + 1)))
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        cand = top[sl]  # (b, k1+1): candidates c
        cand_ok = recip[sl]
        sets = top[cand][..., :half]  # (b, k1+1, half): R(c, k1/2)
        sets_ok = recip_half[cand]
        inter = (sets[..., None] == cand[:, None, None, :]) & cand_ok[:, None, None, :]
        inter = (inter.any(-1) & sets_ok).sum(-1)
        add = cand_ok & (inter > 2.0 / 3.0 * sets_ok.sum(-1))
        members = torch.cat([cand, sets.flatten(1)], 1)
        ok = torch.cat([cand_ok, (sets_ok & add[..., None]).flatten(1)], 1)
        b = members.shape[0]
        members = torch.where(ok, members, n)  # n marks "absent"
        members = torch.sort(members, dim=1).values
        dup = torch.zeros_like(ok)
        dup[:, 1:] = members[:, 1:] == members[:, :-1]
        present = (members < n) & ~dup
        r = torch.arange(start, start + b)[:, None].expand_as(members)
        rows.append(r[present])
        cols.append(members[present])
    rows, cols = torch.cat(rows), torch.cat(cols)
    weight = torch.exp(-blocks.gather(rows, cols))
    total = torch.zeros(n, dtype=torch.float32).index_add_(0, rows, weight)
    return rows, cols, weight / total[rows]


def _expand(rows, cols, vals, ranks, n: int, k2: int):
    """Local query expansion: row ``i`` becomes the mean of the rows of its ``k2`` nearest images."""
    import torch

    order = torch.argsort(rows, stable=True)
    rows, cols, vals = rows[order], cols[order], vals[order]
    row_len = torch.bincount(rows, minlength=n)
    row_ptr = torch.cumsum(row_len, 0) - row_len
    src = ranks[:, :k2].reshape(-1)  # neighbour r of target i = arange(n).repeat_interleave(k2)
    target = torch.arange(n).repeat_interleave(k2)
    cnt = row_len[src]
    rep = torch.repeat_interleave(torch.arange(len(src)), cnt)
    offset = torch.arange(int(cnt.sum())) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
    k = row_ptr[src[rep]] + offset
    key = target[rep] * n + cols[k]
    unique, inverse = torch.unique(key, return_inverse=True)
    out = torch.zeros(len(unique), dtype=torch.float32).index_add_(0, inverse, vals[k])
    return unique // n, unique % n, out / k2


def _jaccard(rows, cols, vals, q: int, n: int):
    """``(Q, G)`` Jaccard distances ``1 - m / (2 - m)``, ``m = sum_c min(V[i, c], V[j, c])``.

    ``rows`` must be sorted (the query rows, ``< q``, first). Every (query non-zero, gallery non-zero)
    pair sharing a column adds its minimum to ``m``; pairs are enumerated in query-row order, in
    blocks of about 8 M, so the scatter stays local.
    """
    import torch

    g = n - q
    nq = int(torch.searchsorted(rows, torch.tensor(q)))
    q_rows, q_cols, q_vals = rows[:nq], cols[:nq], vals[:nq]
    g_order = torch.argsort(cols[nq:])
    g_cols = cols[nq:][g_order]
    g_rows, g_vals = rows[nq:][g_order] - q, vals[nq:][g_order]
    col_len = torch.bincount(g_cols, minlength=n)
    col_ptr = torch.cumsum(col_len, 0) - col_len
    overlap = torch.zeros(q * g, dtype=torch.float32)
    pairs = col_len[q_cols]
    ends = torch.cumsum(pairs, 0)
    start, budget = 0, 1 << 23
    while start < nq:
        done = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, done + budget, right=True)))
        cnt = pairs[start:stop]
        rep = torch.repeat_interleave(torch.arange(start, stop), cnt)
        first = torch.cumsum(cnt, 0) - cnt
        k = col_ptr[q_cols[rep]] + (torch.arange(len(rep)) - torch.repeat_interleave(first, cnt))
        m = torch.minimum(q_vals[rep], g_vals[k])
        overlap.scatter_add_(0, q_rows[rep] * g + g_rows[k], m)
        start = stop
    overlap = overlap.view(q, g)
    return 1.0 - overlap / (2.0 - overlap)


def k_reciprocal_rerank(
    q_g: Any,
    q_q: Any,
    g_g: Any,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    squared: bool = False,
):
    """Re-ranked ``(Q, G)`` distances by k-reciprocal encoding (Zhong et al., CVPR 2017).

    Args:
        q_g: ``(Q, G)`` query-gallery distances (NumPy or torch; Euclidean unless ``squared``).
        q_q: ``(Q, Q)`` query-query distances; ``g_g``: ``(G, G)`` gallery-gallery distances.
        k1: size of the k-reciprocal neighbourhoods (paper: 20).
        k2: neighbours of the local query expansion (paper: 6; 1 disables it).
        lambda_value: weight of the original distance (paper: 0.3).
        squared: the inputs are squared Euclidean distances already (see the module Convention).

    Returns:
        ``(Q, G)`` float32 torch tensor of re-ranked distances (smaller is closer).

    Raises:
        ShapeError: inconsistent shapes. ValueRangeError: non-finite or integer distances.
        OptionError: ``k1``/``k2`` not integers >= 1, ``k1 + 1 > Q + G``, ``lambda_value`` outside
        [0, 1]. EmptyInputError: no query or no gallery image.

    Example:
        >>> import torch
        >>> x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
        >>> d = torch.cdist(x, x)
        >>> out = k_reciprocal_rerank(d[:3, 3:], d[:3, :3], d[3:, 3:], k1=4, k2=2)
        >>> tuple(out.shape), bool(((out >= 0) & (out <= 1)).all())
        ((3, 7), True)
    """

    q_g = _matrix(q_g, "q_g", (None, None))
    q, g = q_g.shape
    if q == 0 or g == 0:
        raise EmptyInputError(
            f"q_g: expected at least one query and one gallery image, got {(q, g)}"
        )
    q_q, g_g = _matrix(q_q, "q_q", (q, q)), _matrix(g_g, "g_g", (g, g))
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{name}: expected an integer >= 1, got {value!r}")
    if k1 + 1 > q + g or k2 > q + g:
        raise OptionError(f"k1 + 1 and k2: expected at most Q + G = {q + g}, got k1={k1}, k2={k2}")
    if not isinstance(lambda_value, (int, float)) or not 0.0 <= float(lambda_value) <= 1.0:
        raise OptionError(f"lambda_value: expected a number in [0, 1], got {lambda_value!r}")
    blocks = _Blocks(q_g, q_q, g_g, squared=bool(squared), k=max(k1 + 1, k2))
    n, ranks = blocks.n, blocks.ranks
    rows, cols, vals = _encodings(blocks, ranks, k1)
    if k2 != 1:
        rows, cols, vals = _expand(rows, cols, vals, ranks, n, k2)
    jaccard = _jaccard(rows, cols, vals, q, n)
    original = q_g if squared else q_g * q_g
    original = original / blocks.row_max[:q, None]
    lam = float(lambda_value)
    return jaccard * (1.0 - lam) + original * lam
