"""Independent oracles for the index tests: brute-force numpy kNN / range search, clustered data."""

from __future__ import annotations

import numpy as np


def brute_scores(base: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(Q, N) similarities (ip, cosine) or Euclidean distances (l2), in float64, by a plain loop."""
    base = base.astype(np.float64)
    queries = queries.astype(np.float64)
    if metric == "cosine":
        base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    out = np.empty((queries.shape[0], base.shape[0]))
    for i, q in enumerate(queries):
        if metric == "l2":
            out[i] = np.sqrt(((base - q) ** 2).sum(1))
        else:
            out[i] = base @ q
    return out


def brute_knn(base, queries, k, metric):
    """(scores (Q, k), indices (Q, k)) best first."""
    s = brute_scores(base, queries, metric)
    order = np.argsort(s if metric == "l2" else -s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


def assert_knn_equal(ids, scores, ref_scores, ref_idx, names, *, rtol=1e-4, atol=1e-4):
    """Tie-tolerant comparison (as faiss contrib's ``check_ref_knn_with_draws``).

    Scores must agree; the ids must agree as sets except those tied with the k-th score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    np.testing.assert_allclose(scores, ref_scores, rtol=rtol, atol=atol)
    for q in range(ref_idx.shape[0]):
        kth = ref_scores[q, -1]
        tied = np.isclose(ref_scores[q], kth, rtol=rtol, atol=atol)
        want = {names[j] for j, t in zip(ref_idx[q], tied) if not t}
        got = set(ids[q])
        assert want <= got, f"query {q}: missing {sorted(want - got)}"
        assert len(ids[q]) == ref_idx.shape[1]


def clustered(
    n: int, d: int, *, clusters: int = 100, spread: float = 0.3, intrinsic: int = 8, seed: int = 0
):
    """``n`` float32 rows around ``clusters`` random unit centres, spread mostly along an
    ``intrinsic``-dimensional subspace (descriptors have a low intrinsic dimension), plus 1 % noise.

    The centres and the subspace depend on ``seed // 1000`` only, so seeds 0..999 draw base and
    query sets from the same distribution.
    """
    shared = np.random.default_rng(seed // 1000)
    centres = shared.normal(size=(clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = np.linalg.qr(shared.normal(size=(d, intrinsic)))[0].T  # (intrinsic, d)
    rng = np.random.default_rng(seed + 1)
    z = rng.normal(size=(n, intrinsic)) @ basis
    x = centres[rng.integers(0, clusters, n)] + spread * z / np.sqrt(intrinsic)
    x += 0.01 * rng.normal(size=(n, d)) / np.sqrt(d)
    return x.astype(np.float32)


def recall_at_k(found_ids: list[list[str]], ref_idx: np.ndarray, names: list[str]) -> float:
    hits = sum(len(set(f) & {names[j] for j in r}) for f, r in zip(found_ids, ref_idx))
    return hits / ref_idx.size
