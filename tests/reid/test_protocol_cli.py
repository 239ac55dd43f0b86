"""The re-ID protocol and ``lookalike evaluate reid`` on tiny fixtures (and VIPeR when available)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lookalike
from lookalike.cli.main import main
from lookalike.data.reid import read_benchmark
from lookalike.eval.metrics.reid import reid_metrics
from lookalike.eval.protocols.reid import describe_images, evaluate_reid
from reid.formats import write_market_style, write_viper


def test_evaluate_matches_metrics_on_described_rows(tmp_path):
    bench = read_benchmark("viper", write_viper(tmp_path / "viper", n_ids=10), split=0)
    result = evaluate_reid("stripe-hsv", bench, max_rank=5)
    model = lookalike.create("descriptor", "stripe-hsv")
    q = describe_images(model, bench.query).double()
    g = describe_images(model, bench.gallery).double()
    expected = reid_metrics(
        np.linalg.norm(q[:, None] - g[None], axis=-1),
        bench.query.ids,
        bench.gallery.ids,
        bench.query.cams,
        bench.gallery.cams,
        max_rank=5,
    )
    np.testing.assert_allclose(result.scores.cmc, expected.cmc)
    assert result.scores.rank(1) == 1.0  # the fixture's persons have distinct colours
    assert result.ranked.shape == (5, 5)  # 5 test ids: the top 10 holds the whole gallery


def test_lomo_xqda_fits_on_training_ids_only(tmp_path, monkeypatch):
    from lookalike.descriptors.reid import xqda

    bench = read_benchmark("viper", write_viper(tmp_path / "viper", n_ids=8), split=1)
    seen = {}
    original = xqda.fit_xqda

    def spy(features, ids, cams, **kwargs):
        seen["ids"] = set(np.asarray(ids).tolist())
        return original(features, ids, cams, **kwargs)

    monkeypatch.setattr(xqda, "fit_xqda", spy)
    result = evaluate_reid("lomo-xqda", bench, rerank=True, max_rank=4)
    assert seen["ids"] == set(bench.train.ids.tolist())
    assert not seen["ids"] & set(bench.query.ids.tolist())
    assert result.reranked and result.fit_seconds > 0 and 0 <= result.scores.rank(1) <= 1


def test_cli_writes_table_curves_and_pictures(tmp_path, capsys):
    write_market_style(tmp_path / "Market-1501-v15.09.15")
    out = tmp_path / "out"
    code = main(
        [
            "evaluate",
            "reid",
            "--data",
            str(tmp_path),
            "--benchmark",
            "market1501",
            "--descriptors",
            "stripe-hsv,stripe-hsv",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    for name in ("results.md", "results.json", "cmc.png", "ranked.png"):
        assert (out / name).is_file()
    payload = json.loads((out / "results.json").read_text())
    assert [r["descriptor"] for r in payload["results"]] == ["stripe-hsv", "stripe-hsv"]
    assert "rank-1" in (out / "results.md").read_text()


def test_cli_errors(tmp_path, capsys):
    args = [
        "evaluate",
        "reid",
        "--data",
        str(tmp_path),
        "--benchmark",
        "viper",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 1 and "looked in" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    write_viper(tmp_path / "viper")
    assert main([*args[:-2], "--descriptors", "no-such-descriptor"]) == 1


def test_cli_adds_an_xqda_row_per_network_fitted_on_training_ids(tmp_path, capsys, monkeypatch):
    import torch

    from lookalike.core.weights import save_weights
    from lookalike.descriptors.reid import xqda_head

    torch.manual_seed(0)
    net = lookalike.create(
        "descriptor", "relation_net", backbone="resnet18", width=0.25, input_size=(64, 32), parts=4
    )
    spec = f"relation_net:{save_weights(net, tmp_path / 'net.safetensors')}"
    write_viper(tmp_path / "viper", n_ids=8)
    seen = []
    original = xqda_head.fit_xqda

    def spy(features, ids, cams, **kwargs):
        seen.append((np.asarray(features).shape[1], set(np.asarray(ids).tolist())))
        return original(features, ids, cams, **kwargs)

    monkeypatch.setattr(xqda_head, "fit_xqda", spy)
    out = tmp_path / "out"
    args = ["evaluate", "reid", "--data", str(tmp_path), "--benchmark", "viper", "--out", str(out)]
    code = main([*args, "--descriptors", f"stripe-hsv,{spec}", "--xqda", "strips"])
    assert code == 0, capsys.readouterr().err
    payload = json.loads((out / "results.json").read_text())
    names = [r["descriptor"] for r in payload["results"]]
    assert names == ["stripe-hsv", spec, f"{spec} + xqda (strips)"]
    assert payload["config"]["xqda"] == "strips"
    bench = read_benchmark("viper", tmp_path, split=0)
    strips = net.eval().stage_strips(torch.rand(1, 3, 64, 32)).shape[1]
    assert seen == [(strips, set(bench.train.ids.tolist()))]  # fitted once, on training ids
    # no network among the descriptors: refused before anything runs
    assert main([*args[:-2], "--descriptors", "stripe-hsv", "--xqda", "rows"]) == 1
    assert "--xqda" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.data
def test_viper_split0_lomo_xqda_far_above_the_stripe_baseline(data_root):
    bench = read_benchmark("viper", data_root, split=0)
    lomo = evaluate_reid("lomo-xqda", bench, max_rank=20).scores
    stripes = evaluate_reid("stripe-hsv", bench, max_rank=20).scores
    assert lomo.rank(1) > 0.25 and stripes.rank(1) < 0.15 and lomo.rank(20) > 0.75
