"""The retrieval protocol on tiny fixtures of each benchmark layout, against hand-checked expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from image.formats import write_gldv2_retrieval, write_revisited, write_scenes, write_ukbench
from lookalike.core.errors import DataNotFoundError, EmptyInputError, OptionError
from lookalike.eval.metrics.retrieval import map_at_k
from lookalike.eval.protocols.retrieval import (
    RetrievalProtocol,
    describe_images,
    load_benchmark,
    rank,
)


def test_ukbench_fixture_perfect_with_colour_histograms(tmp_path):
    bench = load_benchmark("ukbench", write_ukbench(tmp_path, groups=4))
    assert len(bench.database) == 16 and bench.labels.tolist() == [i // 4 for i in range(16)]
    scores = lookalike.create("protocol", "retrieval")("color-hist", bench)
    assert scores == {"map": 1.0, "ns": 4.0, "recall@4": 1.0}


def test_scenes_and_revisited_fixtures(tmp_path):
    scenes = load_benchmark("scenes", write_scenes(tmp_path / "s", scenes=3, images=3))
    assert len(scenes.database) == 9 and scenes.queries is None
    assert RetrievalProtocol()("color-hist", scenes) == {
        "map": 1.0,
        "recall@1": 1.0,
        "recall@5": 1.0,
    }
    rev = load_benchmark("revisited", write_revisited(tmp_path / "r"))
    assert rev.name == "roxford5k" and len(rev.queries) == 3
    out = RetrievalProtocol(rerank=["aqe"])("color-hist", rev)
    assert out["easy/map"] == 1.0 and out["medium/map"] == 1.0 and out["hard/mp@1"] == 1.0
    with pytest.raises(DataNotFoundError):
        load_benchmark("revisited", tmp_path / "s")
    with pytest.raises(OptionError):
        load_benchmark("oxford", tmp_path)


def test_gldv2_retrieval_fixture(tmp_path):
    bench = load_benchmark("gldv2", write_gldv2_retrieval(tmp_path))
    assert (
        len(bench.database) == 9 and len(bench.queries) == 3
    )  # the non-landmark query is not scored
    assert bench.ground_truth[1]["relevant"].tolist() == [3, 4, 5]
    assert RetrievalProtocol()("color-hist", bench) == {"map@100": 1.0, "recall@1": 1.0}
    with pytest.raises(DataNotFoundError, match="retrieval_solution"):
        load_benchmark("gldv2", tmp_path / "index")


def test_protocol_scores_equal_a_brute_force_loop(tmp_path):
    bench = load_benchmark("ukbench", write_ukbench(tmp_path, groups=4))
    torch.manual_seed(0)

    def noisy(x):  # a deliberately poor descriptor so that the ranking is not trivial
        hist = lookalike.create("descriptor", "color-hist", bins=2)(x)
        return torch.nn.functional.normalize(
            hist
            + 0.4 * torch.randn(hist.shape, generator=torch.Generator().manual_seed(int(x.sum()))),
            dim=1,
        )

    protocol = RetrievalProtocol()
    rows = describe_images(noisy, bench.database)
    q = torch.nn.functional.normalize(rows, dim=1)
    got = protocol.score(bench, q, q)
    sims = (q @ q.T).numpy()
    ns, aps = [], []
    for i in range(16):
        order = sorted(range(16), key=lambda j: (-sims[i, j], j))
        ns.append(sum(bench.labels[j] == bench.labels[i] for j in order[:4]))
        rest = [j for j in order if j != i]
        hits, precision = 0, []
        for r, j in enumerate(rest, start=1):
            if bench.labels[j] == bench.labels[i]:
                hits += 1
                precision.append(hits / r)
        aps.append(sum(precision) / 3)
    assert got["ns"] == pytest.approx(np.mean(ns))
    assert got["map"] == pytest.approx(np.mean(aps))
    assert got["map"] < 1.0


def test_rank_and_reranking_options():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    db = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.6, 0.8]])
    assert rank(q, db).tolist() == [[1, 0, 2], [0, 2, 1]]  # ties: lower index first
    assert rank(db, db, exclude=[0, 1, 2]).tolist() == [[2, 1], [0, 2], [0, 1]]
    with pytest.raises(OptionError):
        RetrievalProtocol(rerank=["spatial"])
    with pytest.raises(EmptyInputError):
        from lookalike.eval.protocols.retrieval import RetrievalBenchmark

        RetrievalProtocol()("color-hist", RetrievalBenchmark(name="x", kind="ukbench", database=[]))
    assert map_at_k([[0]], [[0]], k=1) == 1.0


@pytest.mark.data
def test_ukbench_colour_histogram_matches_the_measured_baseline(data_root):
    bench = load_benchmark("ukbench", data_root)
    scores = RetrievalProtocol()("color-hist", bench)
    assert scores["ns"] == pytest.approx(
        3.54, abs=0.01
    )  # notes: HSV 8x8x8, sqrt, L2, 64x64 -> N-S 3.54
