"""The exact torch index against a brute-force numpy loop, and the shared API checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from index.oracle import assert_knn_equal, brute_knn, brute_scores
from lookalike.core.errors import (
    DTypeError,
    EmptyInputError,
    OptionError,
    ShapeError,
    ValueRangeError,
)
from lookalike.index.base import DuplicateIdError, ItemNotFoundError
from lookalike.index.flat import FlatIndex

METRICS = ["l2", "ip", "cosine"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(n=400, d=12, q=25, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(q, d)).astype(np.float32)


def _index(base, metric, **kw):
    index = FlatIndex(dim=base.shape[1], metric=metric, **kw)
    names = [f"id{i}" for i in range(base.shape[0])]
    index.add(names, base, [{"row": i} for i in range(base.shape[0])])
    return index, names


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
def test_search_matches_brute_force(metric, device):
    base, queries = _data()
    index, names = _index(base, metric, device=device)
    result = index.search(queries, k=7)
    ref_s, ref_i = brute_knn(base, queries, 7, metric)
    assert_knn_equal(result.ids, result.scores, ref_s, ref_i, names)


def test_ties_are_tolerated_and_duplicates_both_found():
    base = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)  # every vector three times
    index, names = _index(base, "l2")
    result = index.search(np.eye(4, dtype=np.float32), k=3)
    for q in range(4):
        assert sorted(result.ids[q]) == sorted(names[3 * q : 3 * q + 3])
    np.testing.assert_allclose(result.scores, 0, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_range_search_matches_brute_force(metric):
    base, queries = _data(n=300, q=6)
    index, names = _index(base, metric)
    radius = {"l2": 4.5, "ip": 3.0, "cosine": 0.5}[metric]
    result = index.range_search(queries, radius)
    scores = brute_scores(base, queries, metric)
    for q in range(queries.shape[0]):
        keep = scores[q] <= radius if metric == "l2" else scores[q] >= radius
        assert set(result.ids[q]) == {names[j] for j in np.flatnonzero(keep)}
        s = result.scores[q]
        assert np.all(np.diff(s) >= -1e-6) if metric == "l2" else np.all(np.diff(s) <= 1e-6)


def test_cosine_normalises_on_add_and_query():
    base = np.array([[10.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    index, _ = _index(base, "cosine")
    result = index.search(np.array([[0.1, 0.1]]), k=3)
    assert result.ids[0] == ["id1", "id0", "id2"]
    np.testing.assert_allclose(result.scores[0], [1.0, np.sqrt(0.5), 0.0], atol=1e-6)


def test_k_larger_than_index_pads():
    base, queries = _data(n=3, q=2)
    index, _ = _index(base, "ip")
    result = index.search(queries, k=5)
    assert [len(r) for r in result.ids] == [3, 3]
    assert np.isnan(result.scores[:, 3:]).all() and (result.labels[:, 3:] == -1).all()
    assert np.isfinite(result.scores[:, :3]).all()


def test_remove_update_len_iter_metadata():
    base, _queries = _data(n=50)
    index, names = _index(base, "l2")
    index.remove(["id0", "id1"])
    assert len(index) == 48 and "id0" not in index and set(index) == set(names[2:])
    assert index.search(base[0], k=1).ids[0] != ["id0"]
    index.update(["id5"], base[0], [{"moved": True}])
    assert index.search(base[0], k=1).ids == [["id5"]]
    assert index.get_metadata("id5") == {"moved": True}
    index.update("id6", metadata={"tag": "x"})
    assert index.get_metadata("id6") == {"tag": "x"}
    np.testing.assert_allclose(index.search(base[6], k=1).scores, 0, atol=1e-3)


def test_empty_index_and_empty_queries():
    index = FlatIndex(dim=4)
    assert len(index) == 0 and list(index) == []
    result = index.search(np.zeros((2, 4)), k=3)
    assert result.ids == [[], []] and np.isnan(result.scores).all()
    assert index.search(np.zeros((0, 4)), k=3).scores.shape == (0, 3)


def test_accepts_torch_tensors():
    base, queries = _data()
    index, _names = _index(base, "l2")
    a = index.search(torch.from_numpy(queries), k=3)
    b = index.search(queries.astype(np.float64), k=3)
    assert a.ids == b.ids


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda i: i.add(["x"], np.zeros((1, 5))), ShapeError),
        (lambda i: i.add(["x", "y"], np.zeros((1, 4))), ShapeError),
        (lambda i: i.add(["x"], np.full((1, 4), np.nan)), ValueRangeError),
        (lambda i: i.add([3], np.zeros((1, 4))), DTypeError),
        (lambda i: i.add([""], np.zeros((1, 4))), OptionError),
        (lambda i: i.add(["a"], np.zeros((1, 4))), DuplicateIdError),
        (lambda i: i.add(["x", "x"], np.zeros((2, 4))), DuplicateIdError),
        (lambda i: i.add(["x"], np.zeros((0, 4))), EmptyInputError),
        (lambda i: i.add([], np.zeros((0, 4))), EmptyInputError),
        (lambda i: i.add(["x"], np.array([["a"] * 4])), DTypeError),
        (lambda i: i.add(["x"], np.zeros((1, 4)), [{"bad": object()}]), DTypeError),
        (lambda i: i.remove(["nope"]), ItemNotFoundError),
        (lambda i: i.update(["nope"], np.zeros(4)), ItemNotFoundError),
        (lambda i: i.update(["a"]), OptionError),
        (lambda i: i.search(np.zeros((1, 4)), k=0), OptionError),
        (lambda i: i.search(np.zeros((1, 4)), k=2, nprobe=3), OptionError),
        (lambda i: i.range_search(np.zeros((1, 4)), -1.0), OptionError),
        (lambda i: i.get_metadata("nope"), ItemNotFoundError),
    ],
)
def test_bad_input_raises_typed_errors(call, error):
    index = FlatIndex(dim=4, metric="l2")
    index.add(["a"], np.ones((1, 4)))
    with pytest.raises(error):
        call(index)
    assert len(index) == 1 and index.get_metadata("a") == {}


def test_bad_constructor_arguments():
    with pytest.raises(OptionError):
        FlatIndex(dim=0)
    with pytest.raises(OptionError):
        FlatIndex(dim=4, metric="hamming")
    with pytest.raises(OptionError):
        lookalike.create("index", "flat", dim=4, metrik="l2")


def test_registered_and_keyword_only():
    assert {"flat", "faiss", "milvus"} <= set(lookalike.list_registered("index"))
    with pytest.raises(TypeError):
        FlatIndex(4)  # type: ignore[misc]
