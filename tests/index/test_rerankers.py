"""Re-rankers (kind ``reranker``): the shortlist, each step against its pure function and a brute-force
search, label voting on a hand-computed toy case, chains and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike._registry import RegistryError
from lookalike.core.errors import LookalikeError, OptionError, ShapeError
from lookalike.index.expansion import alpha_query_expansion, database_augmentation
from lookalike.index.rerank import k_reciprocal_rerank
from lookalike.index.rerankers import (
    LabelVoting,
    RerankContext,
    Shortlist,
    build_rerankers,
    parse_rerank,
)


def _rows(n: int, seed: int, d: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def _brute_rank(q: torch.Tensor, db: torch.Tensor, exclude=None) -> list[list[int]]:
    """Per query, database indices by decreasing dot product, ties by index (a Python sort)."""
    s = (q.double() @ db.double().T).tolist()
    out = []
    for i, row in enumerate(s):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        out.append([j for j in order if exclude is None or j != exclude[i]])
    return out


def test_search_equals_a_brute_force_sort_with_and_without_self():
    q, db = _rows(4, 0), _rows(9, 1)
    sl = Shortlist.search(q, db)
    assert sl.ranked.tolist() == _brute_rank(q, db)
    assert torch.all(sl.scores[:, :-1] >= sl.scores[:, 1:])
    top = Shortlist.search(q, db, k=3)
    assert top.ranked.tolist() == [r[:3] for r in _brute_rank(q, db)] and top.width == 3
    own = Shortlist.search(db, db, self_index=torch.arange(9), exclude_self=True)
    assert own.ranked.tolist() == _brute_rank(db, db, exclude=list(range(9)))
    assert own.width == 8


def test_search_rejects_bad_input():
    q, db = _rows(2, 0), _rows(5, 1)
    with pytest.raises(ShapeError):
        Shortlist.search(q, _rows(5, 1, d=4))
    with pytest.raises(OptionError):
        Shortlist.search(q, db, exclude_self=True)
    with pytest.raises(OptionError):
        Shortlist.search(q, db, self_index=torch.tensor([0, 7]))
    with pytest.raises(OptionError):
        Shortlist.search(q, db, k=0)
    nan = q.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(LookalikeError):
        Shortlist.search(nan, db)


@pytest.mark.parametrize("shared", [False, True])
def test_aqe_and_dba_equal_the_pure_functions_then_a_new_search(shared):
    db = _rows(12, 2)
    q = db if shared else _rows(3, 3)
    index = torch.arange(12) if shared else None
    start = Shortlist.search(q, db, self_index=index, exclude_self=shared)
    out = lookalike.create("reranker", "aqe", k=2, alpha=3.0)(start)
    expanded = alpha_query_expansion(q, db, k=3 if shared else 2, alpha=3.0)
    assert out.ranked.tolist() == _brute_rank(expanded, db, exclude=index)
    torch.testing.assert_close(out.queries, expanded)
    out = lookalike.create("reranker", "dba", k=2, alpha=1.0)(start)
    augmented = database_augmentation(db, k=2, alpha=1.0)
    expected_q = augmented if shared else q
    assert out.ranked.tolist() == _brute_rank(expected_q, augmented, exclude=index)
    torch.testing.assert_close(out.database, augmented)


def test_k_reciprocal_equals_the_pure_function_on_euclidean_distances():
    q, db = _rows(3, 4), _rows(10, 5)
    out = lookalike.create("reranker", "k_reciprocal", k1=4, k2=2)(Shortlist.search(q, db))
    d = lambda a, b: torch.cdist(a.double(), b.double()).float()  # noqa: E731
    dist = k_reciprocal_rerank(d(q, db), d(q, q), d(db, db), k1=4, k2=2)
    expected = [sorted(range(10), key=lambda j: (float(dist[i, j]), j)) for i in range(3)]
    assert out.ranked.tolist() == expected
    torch.testing.assert_close(out.scores, -dist.gather(1, out.ranked), atol=1e-5, rtol=0)


def test_label_voting_on_a_hand_computed_toy_case():
    # database rows e0, e1, e2; query close to e0 then e1; reference: two e1-like rows labelled 5,
    # one e0-like row labelled 7.
    db = torch.eye(3)
    q = torch.nn.functional.normalize(torch.tensor([[0.8, 0.6, 0.0]]), dim=1)
    reference = torch.nn.functional.normalize(
        torch.tensor([[0.0, 1.0, 0.0], [0.1, 1.0, 0.0], [1.0, 0.0, 0.0]]), dim=1
    )
    context = RerankContext(reference=reference, reference_labels=torch.tensor([5, 5, 7]))
    out = LabelVoting(k=2, weight=1.0)(Shortlist.search(q, db), context)
    # k = 2 votes (confidence = winning vote / 2):
    # query (0.8, 0.6, 0): sims to reference 0.6, 0.677, 0.8 -> top 2: ref 2 (label 7, 0.8) and
    #   ref 1 (label 5, 0.677) -> label 7 wins, confidence 0.8 / 2 = 0.4.
    # e0: sims 0, 0.0995, 1 -> label 7 (1.0) vs 5 (0.0995): label 7, confidence 0.5.
    # e1: sims 1, 0.995, 0 -> label 5 with 1.995 / 2 = 0.9975.
    # e2: sims 0, 0, 0 -> ties: the first two rows (label 5), vote 0, confidence 0.
    # scores 0.8 (e0), 0.6 (e1), 0 (e2) -> e0: 0.8 + 0.4 * 0.5 = 1.0; e1: 0.6 - 0.4 * 0.9975 = 0.201;
    # e2: 0 - 0.4 * 0 = 0.
    assert out.ranked.tolist() == [[0, 1, 2]]
    torch.testing.assert_close(out.scores, torch.tensor([[1.0, 0.201, 0.0]]), atol=1e-4, rtol=0)
    strong = LabelVoting(k=2, weight=2.0)(Shortlist.search(q, db), context)
    # e1: 0.6 - 0.8 * 0.9975 = -0.198 falls below e2 (0): soft down-ranking reorders the list
    assert strong.ranked.tolist() == [[0, 2, 1]]
    torch.testing.assert_close(
        strong.scores[0, 2], torch.tensor(0.6 - 0.8 * 0.9975), atol=1e-4, rtol=0
    )


def test_label_voting_up_ranks_an_agreeing_candidate():
    db = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [1.0, 0.0]]), dim=1)
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1]]), dim=1)
    sl = Shortlist.search(q, db)
    assert sl.ranked.tolist() == [[0, 1]]  # 0.9952 vs 0.9950
    context = RerankContext(
        reference=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), reference_labels=torch.tensor([1, 2])
    )
    # every row's nearest reference is (1, 0) with label 1: all agree. Confidences: query 0.995,
    # row 0 0.9806, row 1 1.0 -> 0.9952 + 0.9757 = 1.9709 < 0.9950 + 0.9950 = 1.9901.
    out = LabelVoting(k=1, weight=1.0)(sl, context)
    assert out.ranked.tolist() == [[1, 0]]


def test_label_voting_needs_a_reference():
    with pytest.raises(OptionError, match="reference"):
        LabelVoting()(Shortlist.search(_rows(1, 0), _rows(3, 1)))


def test_chains_and_names():
    assert parse_rerank("dba, aqe") == ["dba", "aqe"] and parse_rerank("none") == []
    assert parse_rerank(None) == [] and parse_rerank(["spatial"]) == ["spatial"]
    db = _rows(10, 6)
    start = Shortlist.search(db, db, self_index=torch.arange(10))
    out = start
    for step in build_rerankers("dba,aqe"):
        out = step(out)
    augmented = database_augmentation(db, k=2, alpha=3.0)
    expanded = alpha_query_expansion(augmented, augmented, k=3, alpha=3.0)
    assert out.ranked.tolist() == _brute_rank(expanded, augmented)
    assert set(lookalike.list_registered("reranker")) >= {
        "aqe",
        "dba",
        "k_reciprocal",
        "label_voting",
        "spatial",
    }
    with pytest.raises(RegistryError):
        build_rerankers("dba,nope")
    with pytest.raises(OptionError):
        build_rerankers("dba", {"aqe": {"k": 1}})
    with pytest.raises(OptionError):
        lookalike.create("reranker", "aqe", k=0)
    with pytest.raises(OptionError):
        lookalike.create("reranker", "k_reciprocal", lambda_value=2.0)


def test_rerankers_reject_a_non_shortlist():
    for name in ("aqe", "dba", "k_reciprocal"):
        with pytest.raises(OptionError):
            lookalike.create("reranker", name)(np.zeros((2, 3)))


@pytest.mark.parametrize("name", ["aqe", "dba"])
def test_expansions_share_the_k_alpha_options(name):
    """αQE and DBA take their options through one base: the same defaults, types and bounds."""
    from lookalike.index.rerankers import _Expansion

    step = lookalike.create("reranker", name)
    assert isinstance(step, _Expansion) and (step.k, step.alpha, step.needs) == (2, 3.0, ())
    step = lookalike.create("reranker", name, k=5, alpha=0)
    assert step.k == 5 and step.alpha == 0.0 and type(step.alpha) is float
    for bad in ({"k": 0}, {"k": 2.0}, {"k": True}, {"alpha": -0.5}):
        with pytest.raises(OptionError, match="expected"):
            lookalike.create("reranker", name, **bad)
