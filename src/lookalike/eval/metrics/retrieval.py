"""Retrieval metrics as pure functions on ranked lists: mAP@k, GAP, revisited ROxford/RParis, recall@k, N-S.

Every function takes a ranking ``ranked``: a ``(Q, K)`` integer array (NumPy or torch) whose row ``q``
lists database indices, best first, and per-query ground truth as sequences of database indices.
Results are Python floats (or dicts of floats). Inputs are checked at the door
(:class:`~lookalike.core.errors.ShapeError`, :class:`~lookalike.core.errors.EmptyInputError`).

Definitions and their sources:

- :func:`map_at_k`: the Kaggle Google Landmark Retrieval mAP@k,
  ``1/Q sum_q 1/min(m_q, k) sum_{i <= k} P_q(i) rel_q(i)`` (``m_q`` relevant items of query ``q``);
  with ``k`` at least the database size this is the usual non-interpolated mAP.
- :func:`gap`: Global Average Precision of the Kaggle Google Landmark Recognition challenges (one
  predicted label with a confidence per query; non-landmark queries are distractors).
- :func:`revisited_map`: Radenović et al., "Revisiting Oxford and Paris", CVPR 2018 (``revisitop``'s
  ``compute_map``): junk removed from the ranking, trapezoidal AP, mP@k, for the easy / medium / hard
  protocols.
- :func:`recall_at_k`: fraction of queries with at least one relevant item in the top ``k``.
- :func:`ukbench_score`: Nistér & Stewénius, CVPR 2006: mean number of the query's group (itself
  included) in the top 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lookalike.core.check import check_positive
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError

__all__ = [
    "REVISITED_PROTOCOLS",
    "gap",
    "map_at_k",
    "recall_at_k",
    "revisited_map",
    "revisited_protocol",
    "ukbench_score",
]

#: The revisited protocols: which ground-truth lists count as positive and which as junk.
REVISITED_PROTOCOLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def _ranking(ranked: Any, name: str = "ranked") -> np.ndarray:
    if hasattr(ranked, "detach"):
        ranked = ranked.detach().cpu().numpy()
    arr = np.asarray(ranked)
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected a (Q, K) array of database indices, got {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ShapeError(f"{name}: expected integer database indices, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise EmptyInputError(f"{name}: expected at least one query, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _per_query(sets: Any, q: int, name: str) -> list[np.ndarray]:
    if sets is None:
        return [np.zeros(0, np.int64)] * q
    if len(sets) != q:
        raise ShapeError(f"{name}: expected one entry per query ({q}), got {len(sets)}")
    return [
        np.asarray(list(s) if isinstance(s, (set, frozenset)) else s, np.int64).ravel()
        for s in sets
    ]


def _check_k(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise OptionError(f"{name}: expected an integer >= 1, got {k!r}")


def _relevance(row: np.ndarray, positives: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """Bool relevance of ``row`` after dropping junk items from it."""
    if junk.size:
        row = row[~np.isin(row, junk)]
    return np.isin(row, positives)


def map_at_k(
    ranked: Any, relevant: Sequence[Any], *, k: int = 100, junk: Sequence[Any] | None = None
) -> float:
    """Kaggle mAP@k over the queries that have at least one relevant item.

    Args:
        ranked: ``(Q, K)`` database indices per query, best first (only the first ``k`` count).
        relevant: per query, the relevant database indices.
        k: cut-off.
        junk: per query, database indices removed from the ranking before scoring (optional).

    Returns:
        mAP@k in [0, 1].

    Convention:
        Queries without relevant items are left out (as in the Kaggle challenge, where they are not
        scored); if no query has any, :class:`EmptyInputError`. With ``k`` >= the database size this is
        the non-interpolated mean average precision.

    Example:
        >>> # query 0: hits at ranks 1 and 3 of 2 relevant -> (1 + 2/3) / 2; query 1: hit at rank 2 of 1
        >>> round(map_at_k([[5, 1, 7], [2, 4, 0]], [[5, 7], [4]], k=3), 4)  # ((5/6) + 1/2) / 2
        0.6667
    """
    arr = _ranking(ranked)
    _check_k(k)
    pos = _per_query(relevant, arr.shape[0], "relevant")
    bad = _per_query(junk, arr.shape[0], "junk")
    scores = []
    for row, p, j in zip(arr, pos, bad):
        m = np.unique(p).size
        if m == 0:
            continue
        rel = _relevance(row, p, j)[:k]
        hits = np.cumsum(rel)
        precision = hits / np.arange(1, rel.size + 1)
        scores.append(float((precision * rel).sum()) / min(m, k))
    if not scores:
        raise EmptyInputError(
            "relevant: expected at least one query with a relevant item, got none"
        )
    return float(np.mean(scores))


def gap(predicted: Any, confidence: Any, truth: Any) -> float:
    """Global Average Precision ``1/M sum_i P(i) rel(i)`` over predictions sorted by confidence.

    Args:
        predicted: ``(Q,)`` predicted label per query; a negative label means no prediction.
        confidence: ``(Q,)`` confidence of each prediction (higher first).
        truth: ``(Q,)`` true label per query; a negative label marks a non-landmark (distractor) query.

    Returns:
        GAP in [0, 1]; ``M`` is the number of queries with a true (non-negative) label.

    Convention:
        A prediction for a distractor query is wrong and lowers the precision of everything ranked
        after it; a query without a prediction adds nothing but still counts in ``M``. Ties in
        confidence keep the query order (stable sort).

    Example:
        >>> # sorted: correct, wrong (distractor), correct -> (1/1 + 2/3) / 3 landmark queries
        >>> round(gap([1, 2, 3, 4], [0.9, 0.8, 0.7, 0.1], [1, -1, 3, 5]), 4)
        0.5556
    """
    pred = np.asarray(getattr(predicted, "cpu", lambda: predicted)()).ravel()
    conf = np.asarray(getattr(confidence, "cpu", lambda: confidence)(), np.float64).ravel()
    true = np.asarray(getattr(truth, "cpu", lambda: truth)()).ravel()
    if not pred.shape == conf.shape == true.shape:
        raise ShapeError(
            f"predicted, confidence, truth: expected equal (Q,) shapes, got {pred.shape}, "
            f"{conf.shape}, {true.shape}"
        )
    if np.isnan(conf).any():
        raise ValueRangeError("confidence: expected no NaN")
    landmarks = int((true >= 0).sum())
    if landmarks == 0:
        raise EmptyInputError("truth: expected at least one landmark query (label >= 0), got none")
    made = pred >= 0
    order = np.argsort(-conf[made], kind="stable")
    correct = (pred[made] == true[made])[order]
    precision = np.cumsum(correct) / np.arange(1, correct.size + 1)
    return float((precision * correct).sum() / landmarks)


def _trapezoid_ap(positions: np.ndarray, count: int) -> float:
    """``revisitop.compute_ap``: 0-based ``positions`` of the positives after junk removal."""
    ap = 0.0
    for j, rank in enumerate(np.sort(positions)):
        before = 1.0 if rank == 0 else j / rank
        after = (j + 1) / (rank + 1)
        ap += (before + after) / (2.0 * count)
    return ap


def revisited_protocol(
    ground_truth: Sequence[Mapping[str, Any]], protocol: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(positives, junk)`` per query of a revisited protocol (``easy``, ``medium``, ``hard``).

    Example:
        >>> pos, junk = revisited_protocol([{"easy": [0], "hard": [1], "junk": [2]}], "hard")
        >>> pos[0].tolist(), sorted(junk[0].tolist())
        ([1], [0, 2])
    """
    if protocol not in REVISITED_PROTOCOLS:
        raise OptionError(
            f"protocol: expected one of {list(REVISITED_PROTOCOLS)}, got {protocol!r}"
        )
    ok, bad = REVISITED_PROTOCOLS[protocol]

    def gather(entry: Mapping[str, Any], keys: tuple[str, ...]) -> np.ndarray:
        parts = [np.asarray(entry.get(key, []), np.int64).ravel() for key in keys]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    return [gather(g, ok) for g in ground_truth], [gather(g, bad) for g in ground_truth]


def revisited_map(
    ranked: Any, ground_truth: Sequence[Mapping[str, Any]], *, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """ROxford / RParis easy, medium and hard mAP and mP@k (``revisitop``'s ``compute_map``).

    Args:
        ranked: ``(Q, N)`` full ranking of the database per query.
        ground_truth: per query a mapping with ``easy``, ``hard`` and ``junk`` database indices
            (the ``gnd`` entries of ``gnd_roxford5k.pkl``).
        ks: cut-offs of the mean precision.

    Returns:
        ``{"easy/map": ..., "easy/mp@1": ..., "medium/map": ..., "hard/mp@10": ...}``.

    Convention:
        Junk items are removed from the ranking first. AP is the trapezoidal area of ``revisitop``;
        mP@k divides the positives in the top ``k`` by ``min(k, rank of the last positive)``.
        Queries without positives in a protocol are left out of its means.

    Example:
        >>> gt = [{"easy": [0], "hard": [2], "junk": [1]}]
        >>> r = revisited_map([[1, 0, 2, 3]], gt, ks=(1,))  # junk 1 dropped: 0 at rank 0, 2 at rank 1
        >>> r["medium/map"], r["hard/map"], r["hard/mp@1"]  # hard: easy 0 is junk too
        (1.0, 1.0, 1.0)
    """
    arr = _ranking(ranked)
    if len(ground_truth) != arr.shape[0]:
        raise ShapeError(
            f"ground_truth: expected one entry per query ({arr.shape[0]}), got {len(ground_truth)}"
        )
    for k in ks:
        _check_k(k, "ks")
    out: dict[str, float] = {}
    for protocol in REVISITED_PROTOCOLS:
        positives, junk = revisited_protocol(ground_truth, protocol)
        aps, precisions = [], []
        for row, p, j in zip(arr, positives, junk):
            if p.size == 0:
                continue
            positions = np.flatnonzero(_relevance(row, p, j))
            aps.append(_trapezoid_ap(positions, p.size))
            last = positions.max() + 1 if positions.size else 0
            ones = positions + 1
            precisions.append([(ones <= min(last, k)).sum() / max(min(last, k), 1) for k in ks])
        if not aps:
            raise EmptyInputError(f"ground_truth: no query has {protocol} positives")
        out[f"{protocol}/map"] = float(np.mean(aps))
        for i, k in enumerate(ks):
            out[f"{protocol}/mp@{k}"] = float(np.mean([p[i] for p in precisions]))
    return out


def recall_at_k(
    ranked: Any, relevant: Sequence[Any], *, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """Fraction of queries (with at least one relevant item) that find one in their top ``k``.

    Example:
        >>> recall_at_k([[3, 1], [0, 2]], [[1], [9]], ks=(1, 2))
        {1: 0.0, 2: 0.5}
    """
    arr = _ranking(ranked)
    pos = _per_query(relevant, arr.shape[0], "relevant")
    for k in ks:
        _check_k(k, "ks")
    rows = [(row, p) for row, p in zip(arr, pos) if p.size]
    if not rows:
        raise EmptyInputError(
            "relevant: expected at least one query with a relevant item, got none"
        )
    first = np.array(
        [int(np.argmax(hit)) if (hit := np.isin(row, p)).any() else arr.shape[1] for row, p in rows]
    )
    return {int(k): float((first < k).mean()) for k in ks}


def ukbench_score(ranked: Any, query_groups: Any, database_groups: Any, *, k: int = 4) -> float:
    """UKBench N-S score: mean number of items of the query's group in its top ``k`` (itself included).

    Args:
        ranked: ``(Q, K >= k)`` database indices per query; the query itself is in the database.
        query_groups: ``(Q,)`` group of each query.
        database_groups: ``(N,)`` group of each database item.
        k: the cut-off (4 for UKBench: a perfect score is 4).

    Example:
        >>> ukbench_score([[0, 1, 5, 2], [1, 7, 8, 9]], [0, 0], [0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
        2.0
    """
    arr = _ranking(ranked)
    _check_k(k)
    check_positive(k, "k")
    if arr.shape[1] < k:
        raise ShapeError(f"ranked: expected at least k={k} columns, got {arr.shape[1]}")
    q = np.asarray(getattr(query_groups, "cpu", lambda: query_groups)()).ravel()
    db = np.asarray(getattr(database_groups, "cpu", lambda: database_groups)()).ravel()
    if q.shape[0] != arr.shape[0]:
        raise ShapeError(f"query_groups: expected ({arr.shape[0]},), got {q.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= db.shape[0]):
        raise ValueRangeError(
            f"ranked: expected indices in [0, {db.shape[0]}), got out-of-range ones"
        )
    return float((db[arr[:, :k]] == q[:, None]).sum(axis=1).mean())
