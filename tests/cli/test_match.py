"""``lookalike match`` and ``lookalike evaluate matching`` on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.cli.main import main
from lookalike.data import bundled_photos
from lookalike.data.images import read_image, write_image
from lookalike.geometry import warp_image

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
    assert "unknown descriptor 'opencv-nope'" in capsys.readouterr().err
    assert main(["match", str(files[0]), str(tmp_path)]) == 1
    assert "is a folder, expected an image file" in capsys.readouterr().err


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


# ---------------------------------------------------------------- options and output paths


def test_option_vocabularies_are_the_librarys():
    from lookalike.cli import match as cli
    from lookalike.matching.geometry import GEOMETRIES
    from lookalike.matching.keypoints import DETECTORS
    from lookalike.matching.matchers import MATCHERS
    from lookalike.matching.pipeline import DEFAULT_DESCRIPTOR, DEFAULT_MAX_SIZE

    assert cli.MATCHERS == MATCHERS and cli.DETECTORS == DETECTORS and cli.GEOMETRIES == GEOMETRIES
    assert (cli.DEFAULT_DESCRIPTOR, cli.DEFAULT_MAX_SIZE) == (DEFAULT_DESCRIPTOR, DEFAULT_MAX_SIZE)


@pytest.mark.parametrize(
    "option", [["--matcher", "best"], ["--detector", "fast"], ["--geometry", "affine"]]
)
def test_unknown_choices_are_usage_errors(files, capsys, option):
    with pytest.raises(SystemExit) as info:
        main(["match", str(files[0]), str(files[1]), *option])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_explains_the_default_descriptor(capsys):
    with pytest.raises(SystemExit):
        main(["match", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Default: sift" in text and "hardnet:bundled" in text and "--max-size" in text


def _no_matching(monkeypatch):
    from lookalike.matching.pipeline import ImageMatcher

    def fail(self, *args, **kwargs):
        raise AssertionError("matched before the output path was checked")

    monkeypatch.setattr(ImageMatcher, "__call__", fail)


def test_out_is_checked_before_matching(files, tmp_path, capsys, monkeypatch):
    _no_matching(monkeypatch)
    pair = [str(files[0]), str(files[1]), "--descriptor", "opencv-sift"]
    assert main(["match", *pair, "--out", str(tmp_path / "m.gif")]) == 1
    err = capsys.readouterr().err
    assert "unsupported file type '.gif'" in err and ".png" in err and ".webp" in err
    assert main(["match", *pair, "--out", str(tmp_path / "missing" / "m.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
    assert main(["match", *pair, "--out", str(tmp_path)]) == 1
    assert "--out" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(files, tmp_path, capsys, monkeypatch):
    import cv2

    def raising(*args, **kwargs):
        raise cv2.error("no space left")

    monkeypatch.setattr(cv2, "imwrite", raising)
    out = tmp_path / "m.jpg"
    code = main(
        ["match", str(files[0]), str(files[1]), "--descriptor", "opencv-sift", "--out", str(out)]
    )
    assert code == 1 and "cannot write image" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_learned_network_without_weights_is_refused(files, capsys, monkeypatch):
    from lookalike._registry import get_entry

    if not getattr(get_entry("descriptor", "hardnet").factory, "needs_weights", False):
        pytest.fail("hardnet must declare needs_weights = True (registry contract)")
    _no_matching(monkeypatch)
    for name in ("hardnet", "sosnet"):
        assert main(["match", str(files[0]), str(files[1]), "--descriptor", name]) == 1
        err = capsys.readouterr().err
        assert "--allow-random" in err and f"{name}:" in err
    monkeypatch.undo()
    args = ["match", str(files[0]), str(files[1]), "--max-keypoints", "100", "--json"]
    assert main([*args, "--descriptor", "hardnet", "--allow-random"]) == 0
    assert json.loads(capsys.readouterr().out)["descriptor"] == "hardnet"


def test_max_size_keeps_the_model_in_original_pixels(files, capsys):
    args = ["match", str(files[0]), str(files[1]), "--descriptor", "opencv-sift", "--json"]
    assert main([*args, "--max-size", "128"]) == 0  # the 256 px images are matched at 128 px
    summary = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(np.array(summary["model"]), H_TRUE, atol=0.5)
    assert main([*args, "--max-size", "-3"]) == 1
    assert "max_size" in capsys.readouterr().err


def test_ratio_out_of_range_is_refused_before_matching(files, capsys, monkeypatch):
    _no_matching(monkeypatch)
    pair = [str(files[0]), str(files[1]), "--descriptor", "opencv-sift"]
    assert main(["match", *pair, "--ratio", "2"]) == 1
    assert "ratio_threshold: expected a number in (0.0, 1.0]" in capsys.readouterr().err


def test_match_with_view_synthesis(files, capsys):
    args = ["match", str(files[0]), str(files[1]), "--descriptor", "sift", "--json"]
    assert main([*args, "--views", "1,2", "--max-keypoints", "300"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inliers"] > 20
    np.testing.assert_allclose(np.array(summary["model"]), H_TRUE, atol=0.5)
    assert main([*args, "--views", "1,x"]) == 1
    assert "--views" in capsys.readouterr().err
    assert main([*args, "--views", "0.5"]) == 1
    assert "tilts >= 1" in capsys.readouterr().err
