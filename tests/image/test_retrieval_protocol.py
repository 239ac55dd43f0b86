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
    read_rgb,
    run_retrieval,
)
from lookalike.index.expansion import alpha_query_expansion, database_augmentation


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


def _noisy(x):
    """A deliberately poor descriptor so that rankings are not trivial."""
    hist = lookalike.create("descriptor", "color-hist", bins=2)(x)
    noise = torch.randn(hist.shape, generator=torch.Generator().manual_seed(int(x.sum())))
    return torch.nn.functional.normalize(hist + 0.4 * noise, dim=1)


def _loop_scores(labels, q, db):
    """N-S (query included) and mAP (query excluded) by explicit sorting loops."""
    sims = (q.double() @ db.double().T).numpy()
    n, ns, aps = len(labels), [], []
    for i in range(n):
        order = sorted(range(n), key=lambda j: (-sims[i, j], j))
        ns.append(sum(labels[j] == labels[i] for j in order[:4]))
        hits, precision = 0, []
        for r, j in enumerate([j for j in order if j != i], start=1):
            if labels[j] == labels[i]:
                hits += 1
                precision.append(hits / r)
        aps.append(sum(precision) / (sum(labels == labels[i]) - 1))
    return np.mean(ns), np.mean(aps)


@pytest.mark.parametrize("chain", [("dba",), ("aqe",), ("dba", "aqe")])
def test_reranked_scores_equal_expansions_then_a_brute_force_loop(tmp_path, chain):
    bench = load_benchmark("ukbench", write_ukbench(tmp_path, groups=4))
    rows = torch.nn.functional.normalize(describe_images(_noisy, bench.database), dim=1)
    got = RetrievalProtocol(rerank=chain, rerank_k=2, alpha=3.0).score(bench, rows, rows)
    q = db = rows
    if "dba" in chain:
        q = db = database_augmentation(db, k=2, alpha=3.0)
    if "aqe" in chain:  # the query is its own first neighbour: k + 1
        q = alpha_query_expansion(q, db, k=3, alpha=3.0)
    ns, ap = _loop_scores(bench.labels, q, db)
    assert got["ns"] == pytest.approx(ns) and got["map"] == pytest.approx(ap)


class _Recorder:
    """A re-ranker that records what it is given and changes nothing."""

    name = "recorder"

    def __call__(self, shortlist, context=None):
        self.shortlist, self.context = shortlist, context
        return shortlist


def test_rerankers_get_the_lists_and_images_of_each_benchmark(tmp_path):
    rec = _Recorder()
    bench = load_benchmark("scenes", write_scenes(tmp_path / "s", scenes=3, images=3))
    RetrievalProtocol(rerank=[rec])("color-hist", bench)
    assert rec.shortlist.width == 8 and rec.shortlist.exclude_self
    assert list(rec.context.query_images) == list(bench.database)
    assert (rec.shortlist.ranked != torch.arange(9)[:, None]).all()
    rev = load_benchmark("revisited", write_revisited(tmp_path / "r"))
    RetrievalProtocol(rerank=[rec])("color-hist", rev)
    assert rec.shortlist.width == len(rev.database) and rec.shortlist.self_index is None
    crop = rec.context.query_images[0]  # the query's box (0, 0, 10, 10) cut from its file
    expected = (read_rgb(rev.queries[0], max_size=4096, box=rev.boxes[0]) * 255).round()
    assert crop.shape == (10, 10, 3)
    assert np.array_equal(crop, expected.permute(1, 2, 0).numpy().astype(np.uint8))
    assert rec.context.database_images == rev.database


def _warped_ukbench(root, groups=("chelsea", "coffee"), side=160):
    """UKBench layout: each group a held-out bundled photo and three synthetic warps of it."""
    import cv2

    from lookalike.data.bundled import bundled_photos
    from lookalike.geometry import WarpRanges, random_homography, warp_image

    folder = root / "ukbench" / "ukbench_sample"
    folder.mkdir(parents=True)
    ranges = WarpRanges(rotation=(-0.3, 0.3), scale=(0.8, 1.2), perspective=(-0.1, 0.1))
    for g, photo in enumerate(bundled_photos(list(groups))):
        h, w = photo.rgb.shape[:2]
        rgb = cv2.resize(photo.rgb, (round(w * side / max(h, w)), round(h * side / max(h, w))))
        for i in range(4):
            H = random_homography(np.random.default_rng(10 * g + i), rgb.shape[:2], ranges)
            view = rgb if i == 0 else warp_image(rgb, H)
            path = str(folder / f"ukbench{4 * g + i:05d}.jpg")
            cv2.imwrite(path, view[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


@pytest.mark.slow
def test_spatial_verification_repairs_a_poor_descriptor(tmp_path, monkeypatch):
    bench = load_benchmark("ukbench", _warped_ukbench(tmp_path))
    rows = torch.nn.functional.normalize(
        torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    plain = RetrievalProtocol().score(bench, rows, rows)
    spatial = lookalike.create("reranker", "spatial", top_k=8)
    got = RetrievalProtocol(rerank=[spatial]).score(bench, rows, rows)
    assert plain["ns"] < 3.0 and got == {"ns": 4.0, "map": 1.0, "recall@4": 1.0}
    # run_retrieval: one spatial re-ranker serves every chain and descriptor, each file described once
    from lookalike.matching import ImageMatcher

    seen = []
    original = ImageMatcher.features

    def counted(self, image, *args):
        seen.append(image)
        return original(self, image, *args)

    monkeypatch.setattr(ImageMatcher, "features", counted)
    report = run_retrieval(
        "ukbench",
        tmp_path,
        ["color-hist"],
        baselines=False,
        rerank=[["spatial"], ["aqe", "spatial"]],
        rerank_options={"spatial": {"top_k": 4}},
    )
    assert [r.rerank for r in report.rows] == [(), ("spatial",), ("aqe", "spatial")]
    assert sorted(map(str, seen)) == sorted(map(str, bench.database))


def test_rank_and_reranking_options():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    db = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.6, 0.8]])
    assert rank(q, db).tolist() == [[1, 0, 2], [0, 2, 1]]  # ties: lower index first
    assert rank(db, db, exclude=[0, 1, 2]).tolist() == [[2, 1], [0, 2], [0, 1]]
    with pytest.raises(OptionError):
        RetrievalProtocol(rerank=["nope"])
    with pytest.raises(OptionError, match="reference"):
        RetrievalProtocol(rerank=["label_voting"])
    assert RetrievalProtocol(rerank="dba,aqe,spatial").rerank == ("dba", "aqe", "spatial")
    with pytest.raises(EmptyInputError):
        from lookalike.eval.protocols.retrieval import RetrievalBenchmark

        RetrievalProtocol()("color-hist", RetrievalBenchmark(name="x", kind="ukbench", database=[]))
    assert map_at_k([[0]], [[0]], k=1) == 1.0


def test_scene_keys_merge_copies_of_one_scene():
    from lookalike.eval.protocols.retrieval_benchmarks import scene_key

    keys = [
        scene_key(n)
        for n in ("oxford-affine/graf", "hpatches-sequences/v_graffiti", "evd/graf", "evd/adam")
    ]
    assert keys == ["graf", "graf", "graf", "adam"]
    assert scene_key("hpatches-sequences/v_churchill") == "churchill"


@pytest.mark.data
def test_scenes_on_the_shared_data_have_one_label_per_scene(data_root):
    bench = load_benchmark("scenes", data_root)
    names = ["/".join(p.parts[-2:]) for p in bench.database]
    graf = {
        bench.labels[names.index(n)] for n in ("graf/img1.ppm", "v_graffiti/1.ppm", "1/graf.png")
    }
    assert len(graf) == 1 and np.bincount(bench.labels)[graf.pop()] == 14
    assert len(set(bench.labels.tolist())) == 24  # 26 sequences, graffiti three times


@pytest.mark.data
def test_ukbench_colour_histogram_matches_the_measured_baseline(data_root):
    bench = load_benchmark("ukbench", data_root)
    scores = RetrievalProtocol()("color-hist", bench)
    assert scores["ns"] == pytest.approx(
        3.54, abs=0.01
    )  # notes: HSV 8x8x8, sqrt, L2, 64x64 -> N-S 3.54
