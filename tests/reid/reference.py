"""Straightforward per-query loops used as oracles of the vectorised re-ID code (written for the tests).

- :func:`market_loop`: CMC / AP / INP of the Market-1501 protocol, one query at a time, as torchreid's
  ``eval_market1501`` (and AGW's mINP) define them.
- :func:`single_shot_loop`: the single-gallery-shot CMC with the random keys of
  :func:`lookalike.eval.metrics.reid.single_shot_cmc` (so the two can be compared exactly).
- :func:`rerank_loop`: k-reciprocal re-ranking, the published algorithm (Zhong et al., CVPR 2017) step by
  step with dense ``(N, N)`` matrices, as in the authors' reference implementation.
- :func:`torchreid_module`: torchreid's own ``metrics/rank.py`` or ``utils/rerank.py`` loaded from the
  installed distribution's files when torchreid is installed (the package itself needs extra
  dependencies to import), else ``None``.
"""

from __future__ import annotations

import importlib.util
import warnings
from importlib import metadata
from types import ModuleType

import numpy as np


def market_loop(dist, qids, gids, qcams, gcams, max_rank):
    """(cmc (max_rank,), mAP, mINP, valid queries) by a loop over queries."""
    dist, qids, gids, qcams, gcams = (np.asarray(a) for a in (dist, qids, gids, qcams, gcams))
    cmcs, aps, inps = [], [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((gids[order] == qids[i]) & (gcams[order] == qcams[i]))
        hits = (gids[order][keep] == qids[i]).astype(np.int64)
        if hits.sum() == 0:
            continue
        cmc = np.ones(max_rank)
        first = int(np.argmax(hits))
        cmc[:first] = 0
        cmcs.append(cmc)
        precisions = [hits[: r + 1].sum() / (r + 1) for r in range(len(hits)) if hits[r]]
        aps.append(np.mean(precisions))
        last = int(np.nonzero(hits)[0].max())
        inps.append(hits.sum() / (last + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps)), len(cmcs)


def single_shot_loop(dist, qids, gids, qcams, gcams, max_rank, repeats, seed):
    """Mean single-shot CMC: same keys as ``single_shot_cmc`` (``rng.random((Q, G))`` per repeat)."""
    dist, qids, gids, qcams, gcams = (np.asarray(a) for a in (dist, qids, gids, qcams, gcams))
    q, g = dist.shape
    rng = np.random.default_rng(seed)
    keys = [rng.random((q, g)) for _ in range(repeats)]
    total, valid = np.zeros(max_rank), 0
    for i in range(q):
        keep = ~((gids == qids[i]) & (gcams == qcams[i]))
        if not np.any(keep & (gids == qids[i])):
            continue
        valid += 1
        for r in range(repeats):
            chosen = []
            for pid in np.unique(gids[keep]):
                members = np.nonzero(keep & (gids == pid))[0]
                chosen.append(members[np.argmax(keys[r][i, members])])
            chosen = np.array(sorted(chosen))
            order = chosen[np.argsort(dist[i, chosen], kind="stable")]
            first = int(np.nonzero(gids[order] == qids[i])[0][0])
            cmc = np.ones(max_rank)
            cmc[:first] = 0
            total += cmc
    return total / (valid * repeats)


def _k_reciprocal(rank, i, k):
    forward = rank[i, : k + 1]
    return np.array([j for j in forward if i in rank[j, : k + 1]], dtype=np.int64)


def rerank_loop(q_g, q_q, g_g, k1, k2, lambda_value):
    """The published algorithm with dense matrices; inputs are Euclidean distances (squared here)."""
    q = q_g.shape[0]
    full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    full = full / full.max(axis=1, keepdims=True)
    n = full.shape[0]
    rank = np.argsort(full, axis=1, kind="stable")
    v = np.zeros((n, n))
    half = int(np.around(k1 / 2.0))
    for i in range(n):
        recip = _k_reciprocal(rank, i, k1)
        expansion = set(recip.tolist())
        for c in recip:
            candidate = _k_reciprocal(rank, c, half)
            if len(set(candidate.tolist()) & set(recip.tolist())) > 2.0 / 3.0 * len(candidate):
                expansion |= set(candidate.tolist())
        idx = np.array(sorted(expansion))
        weight = np.exp(-full[i, idx])
        v[i, idx] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jaccard = np.zeros((q, n))
    for i in range(q):
        for j in range(n):
            m = np.minimum(v[i], v[j]).sum()
            jaccard[i, j] = 1.0 - m / (2.0 - m)
    final = jaccard * (1 - lambda_value) + full[:q] * lambda_value
    return final[:, q:]


def torchreid_module(relative: str) -> ModuleType | None:
    """torchreid's ``reid/<relative>`` (e.g. ``metrics/rank.py``) loaded from its file, or None."""
    try:
        files = metadata.files("torchreid") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/").endswith(f"torchreid/reid/{relative}"):
            spec = importlib.util.spec_from_file_location(f"_torchreid_{relative}", f.locate())
            module = importlib.util.module_from_spec(spec)
            with warnings.catch_warnings():  # "Cython evaluation is unavailable"
                warnings.simplefilter("ignore")
                spec.loader.exec_module(module)
            return module
    return None
