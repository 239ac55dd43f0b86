"""``lookalike search``: ranked JSON against a brute-force cosine oracle, the table, the grid picture."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.oracle import brute_knn
from index.test_images import oracle_row, write_photos
from lookalike.cli.main import main
from lookalike.data import bundled_photos
from lookalike.data.images import read_image, write_image


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    files = write_photos(folder)
    out = folder.parent / f"{folder.name}-index"
    code = main(["index", "build", str(folder), "--out", str(out), "--descriptor", "color-hist"])
    assert code == 0
    return folder, files, out


def test_search_json_equals_brute_force(built, tmp_path, capsys):
    _, files, out = built
    names = sorted(files)
    rows = np.stack([oracle_row(files[i]) for i in names])
    # a query that is not in the index: a crop of a bundled photo
    crop = write_image(tmp_path / "query.png", bundled_photos(["coffee"])[0].rgb[50:250, 100:400])
    queries = [files["sub/camera.png"], crop]
    capsys.readouterr()
    assert main(["search", str(out), *map(str, queries), "-k", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["k"] == 4 and [q["query"] for q in data["queries"]] == [str(q) for q in queries]
    qrows = np.stack([oracle_row(q) for q in queries])
    scores, idx = brute_knn(rows, qrows, 4, "cosine")
    for hit, s, j in zip(data["queries"], scores, idx):
        assert [r["rank"] for r in hit["results"]] == [1, 2, 3, 4]
        np.testing.assert_allclose([r["score"] for r in hit["results"]], s, atol=1e-5)
        assert [r["id"] for r in hit["results"]] == [names[i] for i in j]
        for r in hit["results"]:
            assert r["metadata"]["path"] == files[r["id"]].as_posix()
    assert data["queries"][0]["results"][0]["id"] == "sub/camera.png"


def test_search_table_and_grid(built, tmp_path, capsys):
    _, files, out = built
    grid = tmp_path / "grid.png"
    queries = [str(files["sub/camera.png"]), str(files["astronaut.jpg"])]
    assert main(["search", str(out), *queries, "-k", "3", "--out", str(grid)]) == 0
    text = capsys.readouterr().out
    assert "sub/camera.png" in text and "astronaut.jpg" in text and str(grid) in text
    picture = read_image(grid, gray=False)
    assert picture.shape[0] > 200 and picture.shape[1] > picture.shape[0]  # 2 rows, 4 columns
    assert picture.std() > 10  # thumbnails drawn, not a blank figure


def test_search_k_larger_than_the_index(built, capsys):
    _, files, out = built
    capsys.readouterr()
    assert main(["search", str(out), str(files["sub/moon.png"]), "-k", "50", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["queries"][0]["results"]
    assert len(results) == len(files)


def test_search_errors_are_one_line(built, tmp_path, capsys):
    _, files, out = built
    query = str(files["sub/moon.png"])
    cases = [
        (["search", str(out), query, "--out", str(tmp_path / "grid.gif")], "unsupported file type"),
        (["search", str(out), str(tmp_path / "nope.png")], "query image not found"),
        (["search", str(out), query, "-k", "0"], "positive integer"),
        (["search", str(tmp_path), query], "no index at"),
        (["search", str(out), str(out / "manifest.json")], "cannot read image"),
        (["search", str(out), query, "--nprobe", "4"], "not an IVF index"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("lookalike: error:") and message in err, (argv, err)
    assert not (tmp_path / "grid.gif").exists()
