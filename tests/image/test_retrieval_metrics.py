"""Retrieval metrics against hand-computed toy cases and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.errors import EmptyInputError, OptionError, ShapeError
from lookalike.eval.metrics.retrieval import (
    gap,
    map_at_k,
    recall_at_k,
    revisited_map,
    revisited_protocol,
    ukbench_score,
)


def test_map_at_k_hand_computed():
    ranked = [[5, 1, 7, 2], [2, 4, 0, 1], [9, 8, 3, 0]]
    relevant = [[5, 7], [4], []]  # the third query has nothing relevant: not scored
    # q0: P(1)=1, P(3)=2/3 over min(2, k) ; q1: P(2)=1/2 over 1.
    assert map_at_k(ranked, relevant, k=4) == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    # k = 1: q0 1/1 (one hit over min(2, 1) = 1), q1 0.
    assert map_at_k(ranked, relevant, k=1) == pytest.approx(0.5)
    # a relevant item never retrieved still counts in m_q (q0: 3 relevant, 2 found).
    assert map_at_k([[5, 1, 7]], [[5, 7, 11]], k=3) == pytest.approx((1 + 2 / 3) / 3)
    # junk is removed before scoring: 7 moves from rank 3 to rank 2.
    assert map_at_k([[5, 1, 7]], [[5, 7]], k=3, junk=[[1]]) == pytest.approx(1.0)
    assert map_at_k(torch.tensor(ranked), relevant, k=4) == pytest.approx(
        ((1 + 2 / 3) / 2 + 0.5) / 2
    )


def test_map_at_k_equals_sklearn_average_precision_when_k_covers_the_database():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 30))
    labels = rng.random((6, 30)) < 0.3
    labels[:, 0] = True
    ranked = np.argsort(-scores, axis=1)
    relevant = [np.flatnonzero(row) for row in labels]
    expected = np.mean([average_precision_score(labels[i], scores[i]) for i in range(6)])
    assert map_at_k(ranked, relevant, k=30) == pytest.approx(expected, rel=1e-12)


def test_gap_hand_computed_with_distractors():
    # sorted by confidence: q0 right, q1 (distractor) wrong, q2 right, q3 wrong.
    assert gap([1, 2, 3, 4], [0.9, 0.8, 0.7, 0.1], [1, -1, 3, 5]) == pytest.approx((1 + 2 / 3) / 3)
    # no prediction for q3 (-1): same numerator, still 3 landmark queries.
    assert gap([1, 2, 3, -1], [0.9, 0.8, 0.7, 0.0], [1, -1, 3, 5]) == pytest.approx((1 + 2 / 3) / 3)
    # the distractor predicted last instead: precision 1, 1, then the wrong one adds nothing.
    assert gap([1, 2, 3], [0.9, 0.1, 0.7], [1, -1, 3]) == pytest.approx(1.0)
    with pytest.raises(EmptyInputError):
        gap([1], [0.5], [-1])
    with pytest.raises(ShapeError):
        gap([1, 2], [0.5], [1, 2])


def _revisitop_compute_map(ranks_db_by_q, gnd, kappas):
    """A line-by-line transcription of revisitop's compute_map (ranks as (N, Q)), the oracle."""
    nq = len(gnd)
    aps, prs, nempty = np.zeros(nq), np.zeros((nq, len(kappas))), 0
    for i in range(nq):
        qgnd = np.array(gnd[i]["ok"])
        if qgnd.shape[0] == 0:
            aps[i], prs[i] = np.nan, np.nan
            nempty += 1
            continue
        qgndj = np.array(gnd[i].get("junk", []), dtype=int)
        pos = np.arange(ranks_db_by_q.shape[0])[np.isin(ranks_db_by_q[:, i], qgnd)]
        junk = np.arange(ranks_db_by_q.shape[0])[np.isin(ranks_db_by_q[:, i], qgndj)]
        k, ij = 0, 0
        if len(junk):
            ip = 0
            while ip < len(pos):
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        ap, recall_step = 0.0, 1.0 / len(qgnd)
        for j, rank in enumerate(pos):
            precision_0 = 1.0 if rank == 0 else j / rank
            precision_1 = (j + 1) / (rank + 1)
            ap += (precision_0 + precision_1) * recall_step / 2.0
        aps[i] = ap
        pos = pos + 1
        for j, kappa in enumerate(kappas):
            kq = min(max(pos), kappa)
            prs[i, j] = (pos <= kq).sum() / kq
    return np.nanmean(aps), np.nanmean(prs, axis=0)


def test_revisited_map_equals_the_revisitop_transcription():
    rng = np.random.default_rng(1)
    n, q = 40, 5
    gt = []
    for _ in range(q):
        perm = rng.permutation(n)
        gt.append({"easy": perm[:4], "hard": perm[4:9], "junk": perm[9:13]})
    gt[2]["easy"] = np.zeros(0, int)  # a query without easy positives: left out of easy
    ranked = np.stack([rng.permutation(n) for _ in range(q)])
    ours = revisited_map(ranked, gt, ks=(1, 5, 10))
    for protocol in ("easy", "medium", "hard"):
        pos, junk = revisited_protocol(gt, protocol)
        oracle_gnd = [{"ok": p, "junk": j} for p, j in zip(pos, junk)]
        mean_ap, mean_pr = _revisitop_compute_map(ranked.T, oracle_gnd, [1, 5, 10])
        assert ours[f"{protocol}/map"] == pytest.approx(mean_ap, rel=1e-12)
        for k, value in zip((1, 5, 10), mean_pr):
            assert ours[f"{protocol}/mp@{k}"] == pytest.approx(value, rel=1e-12)


def test_revisited_map_toy_with_junk():
    gt = [{"easy": [0], "hard": [3], "junk": [1]}]
    r = revisited_map([[1, 2, 0, 3]], gt, ks=(1, 2))
    # easy: junk {1, 3}; ranking without junk = [2, 0]: positive at rank 1 -> (1/2 ... trapezoid)
    # ap = (p0 + p1) / 2 with p0 = 0/1, p1 = 1/2 -> 0.25
    assert r["easy/map"] == pytest.approx(0.25)
    # medium: junk {1}; ranking [2, 0, 3]: positives at ranks 1, 2 of 2.
    # j=0: (0/1 + 1/2)/2 * 1/2 = 0.125; j=1: (1/2 + 2/3)/2 * 1/2 = 0.291666...
    assert r["medium/map"] == pytest.approx(0.125 + (0.5 + 2 / 3) / 4)
    # mP@1 medium: last positive at rank 3 (1-based) -> kq = 1, none in top 1.
    assert r["medium/mp@1"] == 0.0 and r["medium/mp@2"] == pytest.approx(0.5)
    with pytest.raises(OptionError):
        revisited_protocol(gt, "extreme")


def test_recall_and_ukbench():
    assert recall_at_k([[3, 1], [0, 2]], [[1], [9]], ks=(1, 2)) == {1: 0.0, 2: 0.5}
    groups = np.arange(8) // 4
    ranked = [[0, 1, 2, 3], [1, 0, 4, 5], [2, 6, 7, 5]]
    assert ukbench_score(ranked, groups[[0, 1, 2]], groups) == pytest.approx((4 + 2 + 1) / 3)
    with pytest.raises(ShapeError):
        ukbench_score([[0, 1, 2]], [0], groups)
    with pytest.raises(ShapeError):
        map_at_k([0, 1, 2], [[1]])
    with pytest.raises(EmptyInputError):
        map_at_k([[0, 1]], [[]])
    with pytest.raises(OptionError):
        map_at_k([[0, 1]], [[1]], k=0)
