"""``lookalike index build/add/remove/info`` on a tiny folder of bundled photos (color-hist)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.oracle import brute_knn
from index.test_images import oracle_row, write_photos
from lookalike.cli import index as cli_index
from lookalike.cli.main import main
from lookalike.index import image_index
from lookalike.index.image_index import open_image_index


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return folder, write_photos(folder)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _build(folder, out, *extra) -> int:
    return main(
        ["index", "build", str(folder), "--out", str(out), "--descriptor", "color-hist", *extra]
    )


def test_types_match_the_library():
    assert cli_index.INDEX_TYPES == image_index.INDEX_TYPES


def test_build_json_info_and_rerun(photos, tmp_path, capsys):
    folder, _files = photos
    out = tmp_path / "idx"
    assert _build(folder, out, "--json", "--batch-size", "4") == 0
    report = _json(capsys)
    assert (report["found"], report["added"], report["count"]) == (9, 8, 8)
    assert [s["path"] for s in report["skipped"]] == [str(folder / "broken.jpg")]
    assert (out / "skipped.txt").read_text().count("\n") == 1
    assert main(["index", "info", str(out), "--json"]) == 0
    info = _json(capsys)
    assert info["count"] == 8 and info["type"] == "flat" and info["factory"] == "Flat"
    assert info["descriptor"] == "color-hist" and info["dim"] == 512 and info["skipped"] == 1
    assert info["images"] == folder.as_posix() and info["max_size"] == 512
    # the same command again resumes: nothing is described twice
    assert main(["index", "build", str(folder), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "indexed 0 new image(s)" in text and "8 already there" in text
    assert "broken.jpg" in text and "skipped.txt" in text
    assert main(["index", "info", str(out)]) == 0
    assert "color-hist" in capsys.readouterr().out


def test_add_remove_round_trip(photos, tmp_path, capsys):
    folder, files = photos
    out = tmp_path / "idx"
    assert _build(folder, out) == 0
    capsys.readouterr()
    ids = ["sub/camera.png", "astronaut.jpg"]
    assert main(["index", "remove", str(out), *ids, "--json"]) == 0
    assert _json(capsys)["count"] == 6
    index = open_image_index(out).index
    assert not any(i in index for i in ids) and len(index) == 6
    assert main(["index", "add", str(out), str(folder), "--json"]) == 0
    report = _json(capsys)
    assert (report["present"], report["added"], report["count"]) == (6, 2, 8)
    # the re-added rows are the same as before: search them against a brute-force oracle
    index = open_image_index(out).index
    names = sorted(files)
    rows = np.stack([oracle_row(files[i]) for i in names])
    scores, idx = brute_knn(rows, rows, 3, "cosine")
    result = index.search(rows, k=3)
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    assert [r[0] for r in result.ids] == [names[j] for j in idx[:, 0]]


def test_errors_are_one_line_and_change_nothing(photos, tmp_path, capsys):
    folder, _ = photos
    out = tmp_path / "idx"
    assert _build(folder, out) == 0
    capsys.readouterr()
    cases = [
        (["index", "remove", str(out), "sub/moon.png", "nope.png"], "nothing was removed"),
        (["index", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "x")], "not found"),
        (
            [
                "index",
                "build",
                str(folder),
                "--out",
                str(tmp_path / "y"),
                "--type",
                "ivf",
                "--descriptor",
                "color-hist",
            ],
            "needs at least 156 images",
        ),
        (["index", "build", str(folder), "--out", str(out), "--type", "hnsw"], "index type"),
        (
            ["index", "build", str(folder), "--out", str(tmp_path / "z"), "--descriptor", "nope"],
            "unknown descriptor 'nope'",
        ),
        (["index", "add", str(out), str(tmp_path / "missing.png")], "not found"),
        (["index", "info", str(tmp_path / "none")], "no index at"),
        (["index", "build", str(folder), "--out", str(folder / "notes.txt")], "is a file"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("lookalike: error:") and message in err, (argv, err)
    assert len(open_image_index(out).index) == 8
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


@pytest.mark.parametrize("argv", [["index"], ["index", "build"], ["index", "frobnicate"]])
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err
