"""``lookalike demo``: held-out pairs, output paths, refusals, and a small end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.cli.demo import demo_descriptors
from lookalike.cli.main import main
from lookalike.eval.protocols.demo import DEMO_PHOTOS, demo_pairs, run_demo
from lookalike.geometry import project_points


def test_pairs_are_seeded_and_two_strengths_per_photo():
    a, b = demo_pairs(seed=3, photos=("camera",)), demo_pairs(seed=3, photos=("camera",))
    assert [p.strength for p in a] == ["moderate", "strong"]
    np.testing.assert_array_equal(a[0].H, b[0].H)
    assert not np.allclose(a[0].H, demo_pairs(seed=4, photos=("camera",))[0].H)
    assert [p.photo for p in demo_pairs()] == [p for p in DEMO_PHOTOS for _ in range(2)]


def test_pair_ground_truth_is_the_warp():
    """The view shows image0's pixel x at H x (bilinear warp: up to interpolation)."""
    pair = demo_pairs(photos=("coffee",))[1]
    gray0, gray1 = pair.image0.mean(axis=2), pair.image1.mean(axis=2)
    rng = np.random.default_rng(0)
    xy = rng.uniform(50, 350, (500, 2))
    moved = np.round(project_points(pair.H, xy)).astype(int)
    h, w = gray1.shape
    ok = (moved[:, 0] >= 0) & (moved[:, 0] < w) & (moved[:, 1] >= 0) & (moved[:, 1] < h)
    src = gray0[np.round(xy[ok, 1]).astype(int), np.round(xy[ok, 0]).astype(int)]
    dst = gray1[moved[ok, 1], moved[ok, 0]]
    assert ok.sum() > 200
    assert np.median(np.abs(src - dst)) < 0.3 * np.median(np.abs(src - dst[::-1]))


def test_default_descriptors():
    assert demo_descriptors()[:2] == ["opencv-sift", "sift"]


def test_run_demo_numbers_are_consistent():
    result = run_demo(["opencv-sift"], max_keypoints=300, photos=("coffee",))
    assert len(result.rows) == 2
    for row in result.rows:
        match, correct = result.matches[(row["pair"], "opencv-sift")]
        assert row["matches"] == match.num_matches == correct.size
        assert row["precision"] == pytest.approx(correct.mean())  # precision = correct / matches
    summary = result.summary()["opencv-sift"]
    assert summary["pairs"] == 2 and summary["h_ok"] == round(summary["h_accuracy"] * 2)


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        ["demo", "--out", str(out), "--descriptors", "opencv-sift", "--max-keypoints", "400"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "report:" in text and str(out.resolve()) in text
    assert (
        "green: correct" in text
        and "red: wrong" in text
        and "precision = correct / matches" in text
    )
    assert "| opencv-sift |" in text  # not a terminal: the plain markdown table, never cut
    html = (out / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") == 6  # 3 held-out photos x 2 strengths
    assert "green: correct" in html and "precision = correct / matches" in html
    for photo in ("astronaut", "rocket", "motorcycle", "stereo"):
        assert photo not in html  # training photos and the stereo pair are gone
    results = json.loads((out / "results.json").read_text())
    assert results["photos"] == list(DEMO_PHOTOS)
    summary = results["summary"]["opencv-sift"]
    assert summary["h_accuracy"] >= 0.5 and summary["precision"] > 0.6
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(
        f"{photo}-{s}-opencv-sift.jpg" for photo in DEMO_PHOTOS for s in ("moderate", "strong")
    )


def test_default_output_folder_is_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--descriptors", "opencv-sift", "--max-keypoints", "200"]) == 0
    [folder] = list((tmp_path / "runs").iterdir())
    assert folder.name.endswith("-demo") and (folder / "report.html").is_file()


def test_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("x")
    assert main(["demo", "--out", str(target), "--descriptors", "opencv-sift"]) == 1
    err = capsys.readouterr().err
    assert "is a file, expected a folder" in err and "Errno" not in err
    assert target.read_text() == "x"


def test_unknown_descriptor_fails_before_creating_the_folder(tmp_path, capsys):
    out = tmp_path / "X"
    assert main(["demo", "--descriptors", "sift,no-such", "--out", str(out)]) == 1
    assert "no-such" in capsys.readouterr().err
    assert not out.exists()


def test_learned_network_without_weights_is_refused(tmp_path, monkeypatch, capsys):
    from lookalike._registry import get_entry

    monkeypatch.setattr(
        get_entry("descriptor", "hardnet").factory, "needs_weights", True, raising=False
    )
    out = tmp_path / "X"
    assert main(["demo", "--descriptors", "hardnet", "--out", str(out)]) == 1
    assert "--allow-random" in capsys.readouterr().err and not out.exists()
