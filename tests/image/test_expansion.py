"""αQE, DBA and label voting against per-row loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lookalike.core.errors import LookalikeError, OptionError, ShapeError
from lookalike.index.expansion import (
    alpha_query_expansion,
    database_augmentation,
    knn_labels,
    label_voting,
)


def _unit(n, d, seed):
    return F.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1
    )


def _expand_loop(q, db, k, alpha, exclude=None):
    out = []
    for i, row in enumerate(q.numpy()):
        sims = db.numpy() @ row
        order = [j for j in np.argsort(-sims, kind="stable") if j != (i if exclude else -1)][:k]
        total = row.copy()
        for j in order:
            total += max(sims[j], 0.0) ** alpha * db.numpy()[j]
        out.append(total / np.linalg.norm(total))
    return torch.tensor(np.array(out))


@pytest.mark.parametrize("k, alpha", [(1, 3.0), (3, 3.0), (5, 0.0)])
def test_aqe_and_dba_match_a_loop(k, alpha):
    q, db = _unit(4, 8, 0), _unit(20, 8, 1)
    torch.testing.assert_close(
        alpha_query_expansion(q, db, k=k, alpha=alpha), _expand_loop(q, db, k, alpha)
    )
    torch.testing.assert_close(
        database_augmentation(db, k=k, alpha=alpha), _expand_loop(db, db, k, alpha, exclude=True)
    )


def test_expansion_edge_cases():
    q, db = _unit(3, 4, 2), _unit(5, 4, 3)
    assert torch.equal(alpha_query_expansion(q, db, k=0), q)
    zero = torch.zeros(1, 4, dtype=torch.float64)
    assert torch.equal(alpha_query_expansion(zero, db, k=2), zero)
    # k larger than the database: every row used.
    torch.testing.assert_close(alpha_query_expansion(q, db, k=50), _expand_loop(q, db, 5, 3.0))
    with pytest.raises(ShapeError):
        alpha_query_expansion(q, _unit(5, 3, 0))
    with pytest.raises(OptionError):
        database_augmentation(db, k=-1)
    with pytest.raises(LookalikeError):
        alpha_query_expansion(q, db, alpha=-1.0)


def test_aqe_pulls_a_query_towards_its_cluster():
    centre = F.normalize(torch.ones(1, 8, dtype=torch.float64), dim=1)
    cluster = F.normalize(centre + 0.3 * _unit(6, 8, 5), dim=1)
    q = F.normalize(centre + 0.6 * _unit(1, 8, 9), dim=1)
    expanded = alpha_query_expansion(q, cluster, k=3, alpha=1.0)
    assert (expanded @ centre.T).item() > (q @ centre.T).item()


def test_knn_labels_and_label_voting_hand_computed():
    ref = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    labels, conf = knn_labels(
        torch.tensor([[0.0, 1.0], [1.0, 0.0]]), ref, torch.tensor([0, 0, 1, 1]), k=2
    )
    # row 0: neighbours 2 (1.0, label 1) and 3 (0.8, label 1) -> label 1, (1.8) / 2
    # row 1: neighbours 0 (1.0, label 0) and 1 (0.8, label 0) -> label 0, 0.9
    assert labels.tolist() == [1, 0]
    torch.testing.assert_close(conf, torch.tensor([0.9, 0.9]))
    scores = torch.tensor([[0.5, 0.7, 0.1], [0.2, 0.3, 0.9]])
    out = label_voting(
        scores,
        torch.tensor([1, -1]),
        torch.tensor([1.0, 1.0]),
        torch.tensor([1, 2, 1]),
        torch.tensor([0.5, 1.0, 0.2]),
        weight=0.5,
    )
    expected = torch.tensor([[0.5 + 0.25, 0.7 - 0.5, 0.1 + 0.1], [0.2, 0.3, 0.9]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ShapeError):
        label_voting(
            scores, torch.tensor([1]), torch.tensor([1.0]), torch.tensor([1, 2, 1]), torch.ones(3)
        )
