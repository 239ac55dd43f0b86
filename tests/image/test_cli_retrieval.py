"""``lookalike evaluate retrieval`` end to end on a tiny UKBench-layout fixture."""

from __future__ import annotations

import json

import pytest

from image.formats import write_scenes, write_ukbench
from lookalike.cli.main import main


def test_evaluate_retrieval_writes_table_json_and_picture(tmp_path, capsys):
    data = write_ukbench(tmp_path / "data", groups=4)
    out = tmp_path / "out"
    args = [
        "evaluate",
        "retrieval",
        "--data",
        str(data),
        "--benchmark",
        "ukbench",
        "--no-baselines",
        "--descriptors",
        "color-hist",
        "--rerank",
        "dba,aqe",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "color-hist" in printed and "dba+aqe" in printed
    result = json.loads((out / "results.json").read_text())
    assert [r["rerank"] for r in result["rows"]] == [[], ["dba", "aqe"]]
    assert result["rows"][0]["scores"]["ns"] == 4.0
    assert "| color-hist |" in (out / "results.md").read_text()
    import cv2

    picture = cv2.imread(str(out / "ranked.png"))
    assert picture is not None and picture.shape[1] == 7 * 96


def test_evaluate_retrieval_without_descriptors_scores_the_default_one(tmp_path, capsys):
    from lookalike.descriptors.image.shipped import best_shipped_global_descriptor

    data = write_ukbench(tmp_path / "data", groups=2)
    out = tmp_path / "out"
    args = ["evaluate", "retrieval", "--data", str(data), "--benchmark", "ukbench"]
    assert main([*args, "--no-baselines", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["spec"] for r in rows] == [best_shipped_global_descriptor()] == ["gem-color"]


@pytest.mark.slow
def test_evaluate_retrieval_with_an_ensemble_file_and_baselines(tmp_path, capsys):
    data = write_scenes(tmp_path / "data", scenes=3, images=3)
    (tmp_path / "ens.yaml").write_text("members: [color-hist, color-hist]\n")
    out = tmp_path / "out"
    args = [
        "evaluate",
        "retrieval",
        "--data",
        str(data),
        "--benchmark",
        "scenes",
        "--max-size",
        "64",
        "--descriptors",
        str(tmp_path / "ens.yaml"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    labels = [r["label"] for r in json.loads((out / "results.json").read_text())["rows"]]
    assert labels[:3] == [
        "color-hist (baseline)",
        "gem random-init resnet50 (baseline)",
        "vlad:bundled rootsift (baseline)",
    ]
    assert labels[3].endswith("ens.yaml")


def test_evaluate_retrieval_with_several_rerank_chains_and_options(tmp_path, capsys):
    data = write_ukbench(tmp_path / "data", groups=3)
    out = tmp_path / "out"
    args = ["evaluate", "retrieval", "--data", str(data), "--benchmark", "ukbench"]
    args += ["--no-baselines", "--descriptors", "color-hist", "--out", str(out)]
    args += ["--rerank", "dba,aqe", "--rerank", "none", "--rerank", "k_reciprocal"]
    args += ["--rerank-option", "k_reciprocal.k1=4", "--rerank-option", "k_reciprocal.k2=2"]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert [r["rerank"] for r in result["rows"]] == [[], ["dba", "aqe"], ["k_reciprocal"]]
    assert result["config"]["rerank_options"] == {"k_reciprocal": {"k1": 4, "k2": 2}}
    assert all(r["rerank_seconds"] >= 0 for r in result["rows"])
    assert "re-rank s" in (out / "results.md").read_text()


def test_evaluate_retrieval_refuses_untrained_and_bad_options(tmp_path, capsys):
    base = ["evaluate", "retrieval", "--data", str(tmp_path), "--benchmark", "ukbench"]
    assert main([*base, "--descriptors", "dolg"]) == 1
    assert "--allow-random" in capsys.readouterr().err
    assert main([*base, "--descriptors", "color-hist", "--rerank", "nope"]) == 1
    assert "--rerank" in capsys.readouterr().err
    assert (
        main(
            [*base, "--descriptors", "color-hist", "--rerank", "dba", "--rerank-option", "aqe.k=1"]
        )
        == 1
    )
    assert "no --rerank chain" in capsys.readouterr().err
    assert (
        main([*base, "--descriptors", "color-hist", "--rerank", "dba", "--rerank-option", "k=1"])
        == 1
    )
    assert "NAME.KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--descriptors", "color-hist", "--no-baselines"]) == 1
    assert "ukbench" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "retrieval", "--benchmark", "oxford"])
    assert not list(tmp_path.iterdir())
