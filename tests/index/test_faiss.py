"""The faiss backend against brute-force numpy, raw faiss on the same index, and exact search (recall)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.oracle import assert_knn_equal, brute_knn, clustered, recall_at_k
from lookalike.core.errors import OptionError
from lookalike.index._local import load_index
from lookalike.index.base import TooFewVectorsError
from lookalike.index.faiss import FaissIndex, default_nprobe

METRICS = ["l2", "ip", "cosine"]


def _build(base, metric="l2", **kw):
    index = FaissIndex(dim=base.shape[1], metric=metric, **kw)
    names = [f"id{i}" for i in range(base.shape[0])]
    index.add(names, base)
    return index, names


@pytest.fixture(scope="module")
def blobs():
    base = clustered(6000, 32, clusters=60, seed=1)
    queries = clustered(100, 32, clusters=60, seed=2)
    return base, queries


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("metric", METRICS)
def test_flat_matches_brute_force(metric, shards):
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(500, 16)).astype("f4"), rng.normal(size=(30, 16)).astype("f4")
    index, names = _build(base, metric, shards=shards)
    result = index.search(queries, k=8)
    assert_knn_equal(result.ids, result.scores, *brute_knn(base, queries, 8, metric), names)


def test_flat_matches_raw_faiss_flat():
    rng = np.random.default_rng(1)
    base, queries = rng.normal(size=(800, 24)).astype("f4"), rng.normal(size=(40, 24)).astype("f4")
    index, names = _build(base, "l2")
    raw = faiss.IndexFlatL2(24)
    raw.add(base)
    d2, idx = raw.search(queries, 5)
    result = index.search(queries, k=5)
    assert_knn_equal(result.ids, result.scores, np.sqrt(np.maximum(d2, 0)), idx, names)


@pytest.mark.parametrize(
    ("factory", "floor"),
    [
        ("IVF64,Flat", 0.95),
        ("HNSW32", 0.95),
        pytest.param("IVF64,PQ16x4", 0.5, marks=pytest.mark.slow),
    ],
)
def test_approximate_recall_against_exact(blobs, factory, floor):
    base, queries = blobs
    index, names = _build(base, "l2", factory=factory)
    _, ref = brute_knn(base, queries, 10, "l2")
    recall = recall_at_k(index.search(queries, k=10).ids, ref, names)
    assert recall >= floor, f"{factory}: recall@10 {recall:.3f} < {floor}"


def test_search_parameters_reach_faiss(blobs):
    base, queries = blobs
    ivf, names = _build(base, "l2", factory="IVF64,Flat")
    assert ivf.nprobe == default_nprobe(64) == 16
    _, ref = brute_knn(base, queries, 10, "l2")
    # all lists visited: exact
    assert recall_at_k(ivf.search(queries, k=10, nprobe=64).ids, ref, names) == 1.0
    for nprobe in (1, 4):
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        _, raw = ivf.faiss_index.search(queries, 10, params=params)
        ours = ivf.search(queries, k=10, nprobe=nprobe)
        np.testing.assert_array_equal(ours.labels, raw)
    hnsw, _ = _build(base, "l2", factory="HNSW16")
    assert hnsw.ef_search == 64
    params = faiss.SearchParametersHNSW()
    params.efSearch = 20
    _, raw = hnsw.faiss_index.search(queries, 10, params=params)
    np.testing.assert_array_equal(hnsw.search(queries, k=10, ef_search=20).labels, raw)


def test_default_nprobe_is_never_one_silently():
    assert default_nprobe(1024) == 64 and default_nprobe(65536) == 4096
    assert default_nprobe(2) == 2 and default_nprobe(100) == 16
    assert FaissIndex(dim=8, factory="IVF1024,Flat").nprobe == 64
    assert FaissIndex(dim=8, factory="IVF1024,Flat", nprobe=3).nprobe == 3


@pytest.mark.parametrize(
    ("factory", "n", "need"), [("IVF64,Flat", 50, 64), ("IVF4,PQ4x4", 10, 16), ("PQ4x4", 10, 16)]
)
def test_too_few_vectors_to_train_is_a_clear_error(factory, n, need):
    # (8-bit PQ codebooks train slowly in faiss 1.15: 4-bit ones keep this test fast)
    index = FaissIndex(dim=8, factory=factory)
    x = np.random.default_rng(0).normal(size=(n, 8))
    with pytest.raises(TooFewVectorsError, match=f"at least {need} vectors"):
        index.add([f"v{i}" for i in range(n)], x)
    assert len(index) == 0 and not index.is_trained
    big = np.random.default_rng(1).normal(size=(2 * need, 8))
    index.train(big)  # an explicit training sample, then a small first batch
    index.add([f"v{i}" for i in range(n)], x)
    assert len(index) == n


def test_train_size_samples_and_train_on_a_full_index_fails():
    x = clustered(3000, 16, seed=3)
    index, _ = _build(x, "l2", factory="IVF16,Flat", train_size=800)
    assert index.is_trained and len(index) == 3000
    with pytest.raises(OptionError):
        index.train(x)


def test_hnsw_removal_by_tombstones_then_rebuild(blobs, tmp_path):
    base, queries = blobs
    base, queries = base[:2000], queries[:20]
    index, names = _build(base, "l2", factory="HNSW16", ef_search=200)
    gone = names[:100]
    index.remove(gone)  # 5 %: tombstones, filtered during search
    assert index._tombstones.size == 100 and index.faiss_index.ntotal == 2000
    live = np.arange(100, 2000)
    _ref_s, ref_i = brute_knn(base[live], queries, 10, "l2")
    result = index.search(queries, k=10)
    assert not set(gone) & {i for row in result.ids for i in row}
    assert recall_at_k(result.ids, ref_i, [names[j] for j in live]) >= 0.95
    # tombstones survive a save and a load
    loaded = load_index(index.save(tmp_path / "hnsw"))
    assert loaded._tombstones.size == 100
    assert loaded.search(queries, k=10).ids == result.ids
    loaded.compact()  # an explicit rebuild
    assert loaded._tombstones.size == 0 and loaded.faiss_index.ntotal == 1900 == len(loaded)
    assert loaded.search(queries, k=10).ids == result.ids
    index.remove(names[100:450])  # past 20 %: rebuilt from the live vectors
    assert index._tombstones.size == 0 and index.faiss_index.ntotal == 1550 == len(index)
    result = index.search(queries, k=10)
    _, ref_i = brute_knn(base[450:], queries, 10, "l2")
    assert recall_at_k(result.ids, ref_i, names[450:]) >= 0.95


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16"])
def test_shards_remove_and_round_trip(factory, tmp_path):
    base = clustered(1200, 16, seed=4)
    index, names = _build(base, "cosine", factory=factory, shards=3)
    assert [p.ntotal for p in index._parts] == [400, 400, 400]
    index.remove(names[:30])
    assert len(index) == 1170 and sum(p.ntotal for p in index._parts) == 1170
    loaded = load_index(index.save(tmp_path / "sharded"))
    q = base[:50]
    assert loaded.search(q, k=5).ids == index.search(q, k=5).ids
    assert not set(names[:30]) & {i for row in loaded.search(q, k=5).ids for i in row}


def test_mmap_inverted_lists_on_disk(tmp_path):
    base = clustered(3000, 16, seed=5)
    index, _ = _build(base, "l2", factory="IVF16,Flat")
    folder = index.save(tmp_path / "ivf")
    mapped = load_index(folder, mmap=True)
    invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(mapped._parts[0]).invlists)
    assert isinstance(invlists, faiss.OnDiskInvertedLists)
    assert mapped.search(base[:20], k=5).ids == index.search(base[:20], k=5).ids
    with pytest.raises(OptionError, match="read-only"):
        mapped.add(["new"], base[:1])
    with pytest.raises(OptionError, match="mmap"):
        load_index(FlatIndexFolder(tmp_path), mmap=True)


def FlatIndexFolder(tmp_path):
    index, _ = _build(np.eye(4, dtype="f4"), "l2")
    return index.save(tmp_path / "flat")


@pytest.mark.parametrize("metric", METRICS)
def test_range_search_exact_when_all_lists_visited(metric):
    base = clustered(1500, 16, seed=6)
    index, _names = _build(base, metric, factory="IVF8,Flat")
    flat, _ = _build(base, metric, factory="Flat")
    radius = float(np.median(flat.search(base[:10], k=20).scores[:, -1]))  # ~20 hits a query
    ours = index.range_search(base[:10], radius, nprobe=8)
    ref = flat.range_search(base[:10], radius)
    assert [sorted(r) for r in ours.ids] == [sorted(r) for r in ref.ids]
    assert sum(len(r) for r in ref.ids) > 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factory": "IDMap,Flat"}, "IDMap"),
        ({"factory": "NoSuchIndex"}, "faiss cannot build"),
        ({"factory": "Flat", "nprobe": 4}, "not an IVF"),
        ({"factory": "IVF8,Flat", "ef_search": 4}, "not an HNSW"),
        ({"shards": 0}, "shards"),
        ({"rebuild_fraction": 0}, "rebuild_fraction"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(OptionError, match=match):
        FaissIndex(dim=8, **kwargs)


def test_unknown_search_parameter():
    index, _ = _build(np.eye(8, dtype="f4"), "l2")
    with pytest.raises(OptionError, match="unknown parameters"):
        index.search(np.eye(8), k=2, n_probe=3)
    with pytest.raises(OptionError, match="not an IVF"):
        index.search(np.eye(8), k=2, nprobe=3)


def test_metadata_of_an_item_removed_after_the_membership_check_is_not_found():
    """The race the load test hit: DELETE between get_metadata's check and its look-up (was a 500)."""
    from lookalike.index.base import ItemNotFoundError

    index = FaissIndex(dim=2)
    index.add(["a"], [[1.0, 0.0]])
    contains = index._contains
    index._contains = lambda i: (contains(i), index._store.remove([i]))[0]
    with pytest.raises(ItemNotFoundError, match="'a'"):
        index.get_metadata("a")


def test_ivfpq_skips_polysemous_training():
    index = FaissIndex(dim=16, factory="IVF4,PQ4")
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index.faiss_index))
    assert ivf.do_polysemous_training is False
