"""``lookalike demo``: stereo correctness rule, pairs, and a small end-to-end run."""

from __future__ import annotations

import json

import numpy as np

from lookalike.cli.demo import demo_descriptors, demo_pairs, stereo_correct
from lookalike.cli.main import main


def test_stereo_correct_rule():
    disparity = np.full((20, 30), 5.0, np.float32)
    disparity[:, :3] = np.inf
    left = np.array([[10.0, 4.0], [10.0, 4.0], [10.0, 4.0], [1.0, 1.0]])
    right = np.array([[5.5, 4.0], [8.0, 4.0], [5.0, 7.5], [0.0, 1.0]])
    correct, known = stereo_correct(left, right, disparity, 2.0)
    assert correct.tolist() == [True, False, False, False]
    assert known.tolist() == [True, True, True, False]


def test_stereo_pair_ground_truth_is_consistent():
    """The bundled disparity maps left pixels onto the same content in the right view."""
    pair = demo_pairs(photos=())[0]
    gray_l = pair.image0.mean(axis=2)
    gray_r = pair.image1.mean(axis=2)
    ys, xs = np.nonzero(np.isfinite(pair.disparity) & (pair.disparity > 0))
    pick = np.random.default_rng(0).choice(len(xs), 2000, replace=False)
    ys, xs = ys[pick], xs[pick]
    xr = np.round(xs - pair.disparity[ys, xs]).astype(int)
    ok = (xr >= 0) & (xr < gray_r.shape[1])
    diff = np.abs(gray_l[ys[ok], xs[ok]] - gray_r[ys[ok], xr[ok]])
    shuffled = np.abs(gray_l[ys[ok], xs[ok]] - gray_r[ys[ok][::-1], xr[ok][::-1]])
    assert np.median(diff) < 0.3 * np.median(shuffled)


def test_pairs_are_seeded():
    a, b = demo_pairs(seed=3, photos=("camera",))[1], demo_pairs(seed=3, photos=("camera",))[1]
    np.testing.assert_array_equal(a.H, b.H)
    assert not np.allclose(a.H, demo_pairs(seed=4, photos=("camera",))[1].H)


def test_default_descriptors():
    names = demo_descriptors()
    assert names[:2] == ["opencv-sift", "sift"]


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        ["demo", "--out", str(out), "--descriptors", "opencv-sift", "--max-keypoints", "400"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "report:" in text and str(out.resolve()) in text
    html = (out / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") == 5  # stereo + 4 homography pairs
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]["opencv-sift"]
    assert summary["h_accuracy"] >= 0.75 and summary["h_precision"] > 0.7
    assert summary["stereo_precision"] > 0.6 and summary["stereo_correct"] > 50
    assert len(list(out.glob("*.jpg"))) == 5
