"""``lookalike match`` and ``lookalike evaluate matching`` on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.cli.main import main
from lookalike.data import bundled_photos
from lookalike.data.images import read_image, write_image
from lookalike.eval.homography import warp_image

H_TRUE = np.array([[0.97, 0.08, 6.0], [-0.06, 0.99, 12.0], [4e-5, -2e-5, 1.0]])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    image = np.ascontiguousarray(bundled_photos(["astronaut"])[0].rgb[::2, ::2])
    a = write_image(folder / "a.png", image)
    b = write_image(folder / "b.png", warp_image(image, H_TRUE))
    return a, b


def test_match_prints_counts_and_model_and_draws(files, tmp_path, capsys):
    out = tmp_path / "matches.png"
    code = main(
        ["match", str(files[0]), str(files[1]), "--descriptor", "opencv-sift", "--out", str(out)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "matches" in text and "inliers" in text and "homography" in text
    picture = read_image(out, gray=False)
    assert picture.shape[1] == 2 * 256 and picture.shape[0] == 256


def test_match_json(files, capsys):
    code = main(["match", str(files[0]), str(files[1]), "--descriptor", "opencv-sift", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inliers"] > 20
    np.testing.assert_allclose(np.array(summary["model"]), H_TRUE, atol=0.5)


def test_match_without_model(tmp_path, capsys):
    flat = write_image(tmp_path / "flat.png", np.full((40, 40), 9, np.uint8))
    assert main(["match", str(flat), str(flat), "--descriptor", "opencv-sift"]) == 0
    assert "model: none" in capsys.readouterr().out


def test_match_errors_are_one_line(files, tmp_path, capsys):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert main(["match", str(files[0]), str(tmp_path / "empty.jpg")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lookalike: error:") and "empty" in err and "\n" not in err
    assert main(["match", str(files[0]), str(tmp_path / "missing.png")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["match", str(files[0]), str(files[1]), "--descriptor", "opencv-nope"]) == 1
    assert "unknown OpenCV descriptor 'nope'" in capsys.readouterr().err


def test_evaluate_matching_on_a_tiny_sequence(files, tmp_path, capsys):
    seq = tmp_path / "data" / "toy-set" / "seq"
    seq.mkdir(parents=True)
    write_image(seq / "1.ppm", read_image(files[0], gray=False))
    write_image(seq / "2.ppm", read_image(files[1], gray=False))
    np.savetxt(seq / "H_1_2", H_TRUE)
    out = tmp_path / "out"
    code = main(
        [
            "evaluate",
            "matching",
            "--data",
            str(tmp_path / "data"),
            "--descriptors",
            "opencv-sift,opencv-orb",
            "--out",
            str(out),
            "--max-keypoints",
            "500",
        ]
    )
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"results.md", "results.json", "mma.png"}
    results = json.loads((out / "results.json").read_text())
    sift = results["descriptors"]["opencv-sift"]
    assert sift["overall"]["pairs"] == 1 and sift["overall"]["mma"][2] > 0.5
    assert sift["overall"]["homography_accuracy"]["3"] == 1.0
    assert "toy-set" in sift["groups"]
    assert "| opencv-orb |" in (out / "results.md").read_text()


def test_evaluate_without_sequences_is_an_error(tmp_path, capsys):
    assert (
        main(["evaluate", "matching", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    )
    assert "no homography sequence" in capsys.readouterr().err


def test_evaluate_alone_prints_usage(capsys):
    assert main(["evaluate"]) == 2
    assert "matching" in capsys.readouterr().out
