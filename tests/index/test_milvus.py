"""The Milvus backend against Milvus Lite (embedded, in this process), with the exact flat index as oracle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index.oracle import assert_knn_equal, brute_knn, brute_scores
from lookalike.core.errors import OptionError
from lookalike.index.base import DuplicateIdError, IndexMismatchError, ItemNotFoundError
from lookalike.index.milvus import MilvusIndex

METRICS = ["l2", "ip", "cosine"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(400, 16)).astype("f4"), rng.normal(size=(20, 16)).astype("f4")


@pytest.mark.parametrize("metric", METRICS)
def test_search_and_range_search_match_brute_force(metric, data, tmp_path):
    base, queries = data
    names = [f"m{i}" for i in range(len(base))]
    with MilvusIndex(dim=16, metric=metric, uri=str(tmp_path / "m.db")) as index:
        index.add(names, base, [{"i": i} for i in range(len(base))])
        assert len(index) == 400 and sorted(index) == sorted(names)
        result = index.search(queries, k=6)
        assert_knn_equal(result.ids, result.scores, *brute_knn(base, queries, 6, metric), names)
        scores = brute_scores(base, queries[:4], metric)
        radius = float(np.median(np.sort(scores, axis=1)[:, 20 if metric == "l2" else -20]))
        found = index.range_search(queries[:4], radius)
        for q in range(4):
            keep = scores[q] <= radius if metric == "l2" else scores[q] >= radius
            assert set(found.ids[q]) == {names[j] for j in np.flatnonzero(keep)}


def test_writes_metadata_and_reopening(data, tmp_path):
    base, _ = data
    uri = str(tmp_path / "m.db")
    index = MilvusIndex(dim=16, metric="l2", uri=uri, collection="items", descriptor="hardnet")
    index.add(["a", "b", "c"], base[:3], [{"n": 1}, {"n": 2}, {"n": 3}])
    with pytest.raises(DuplicateIdError):
        index.add(["b"], base[5])
    with pytest.raises(ItemNotFoundError):
        index.remove(["zz"])
    index.remove(["a"])
    index.update(["b"], base[9])
    index.update(["c"], metadata={"n": 30})
    assert len(index) == 2 and "a" not in index and "b" in index
    assert index.search(base[9], k=1).ids == [["b"]] and index.get_metadata("b") == {"n": 2}
    assert index.get_metadata("c") == {"n": 30}
    index.close()
    again = MilvusIndex(dim=16, metric="l2", uri=uri, collection="items")
    assert len(again) == 2 and again.descriptor == "hardnet"
    again.close()
    with pytest.raises(IndexMismatchError, match="dim"):
        MilvusIndex(dim=8, metric="l2", uri=uri, collection="items")
    with pytest.raises(IndexMismatchError, match="metric"):
        MilvusIndex(dim=16, metric="ip", uri=uri, collection="items")
    with pytest.raises(IndexMismatchError, match="descriptor"):
        MilvusIndex(dim=16, metric="l2", uri=uri, collection="items", descriptor="sift")


def test_bad_options(tmp_path):
    with pytest.raises(OptionError):
        MilvusIndex(dim=4, uri="")
    with pytest.raises(OptionError):
        MilvusIndex(dim=4, uri=str(tmp_path / "m.db"), collection="no spaces")


def test_milvus_backend_does_not_import_torch(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from lookalike.index.milvus import MilvusIndex\n"
        f"i = MilvusIndex(dim=4, uri={str(tmp_path / 'm.db')!r})\n"
        "i.add(['a'], np.ones(4)); assert i.search(np.ones(4), k=1).ids == [['a']]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
