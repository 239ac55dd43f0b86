"""Relative pose: metrics against independent oracles, the protocol on hand-built two-view cases,
the ScanNet-style reader, and ``lookalike evaluate pose``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from contract_examples.pose import K_SYNTH, rotation, two_view_points, write_two_view_scene
from lookalike.core.errors import LookalikeError, OptionError, ShapeError, ValueRangeError
from lookalike.data.scannet import find_scannet_pairs, parse_pair_line, read_scannet_pairs
from lookalike.eval.metrics.pose import (
    normalize_points,
    pose_auc,
    rotation_error,
    symmetric_epipolar_errors,
    translation_error,
)
from lookalike.eval.protocols.pose import (
    PoseOptions,
    evaluate_matched_pair,
    evaluate_pose,
    summarize_pose,
)


# ------------------------------------------------------------------ metrics
def test_rotation_error_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = Rotation.random(2, random_state=rng.integers(1 << 30)).as_matrix()
        expected = np.degrees((Rotation.from_matrix(a).inv() * Rotation.from_matrix(b)).magnitude())
        assert rotation_error(a, b) == pytest.approx(expected, abs=1e-6)


def test_translation_error_removes_the_sign_only():
    assert translation_error([0, 0, 1], [0, 0, -3]) == pytest.approx(0.0)
    assert translation_error([1, 0, 0], [0, 1, 0]) == pytest.approx(90.0)
    angle = 30.0
    t = [np.sin(np.radians(angle)), 0.0, np.cos(np.radians(angle))]
    assert translation_error(t, [0, 0, 1]) == pytest.approx(angle)
    assert translation_error(-np.asarray(t), [0, 0, 1]) == pytest.approx(angle)
    assert translation_error([0, 0, 0], [0, 0, 1]) == 90.0


def _auc_oracle(errors, threshold, steps=200_001):
    """Mean over [0, threshold] (dense grid) of SuperGlue's recall curve: linear between the sorted
    errors below the threshold, then flat at the last of them up to the threshold."""
    errs = np.sort(np.asarray(errors, dtype=float))
    xs = np.concatenate([[0.0], errs])
    ys = np.concatenate([[0.0], np.arange(1, len(errs) + 1) / len(errs)])
    below = xs < threshold
    grid = np.linspace(0.0, threshold, steps)
    curve = np.interp(grid, xs[below], ys[below], right=ys[below][-1])
    return float(np.trapezoid(curve, grid) / threshold)


@pytest.mark.parametrize("seed", range(5))
def test_pose_auc_matches_a_dense_integral(seed):
    rng = np.random.default_rng(seed)
    errors = list(rng.exponential(8.0, 12)) + [float("inf")] * int(seed)
    got = pose_auc(errors, (5.0, 10.0, 20.0))
    expected = [_auc_oracle(errors, t) for t in (5.0, 10.0, 20.0)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_pose_auc_extremes_and_bad_input():
    assert pose_auc([0.0] * 4) == [1.0, 1.0, 1.0]
    assert pose_auc([float("inf")] * 3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueRangeError):
        pose_auc([float("nan")])
    with pytest.raises(ShapeError):
        pose_auc([])
    with pytest.raises(ValueRangeError):
        pose_auc([1.0], [0.0])


def _line_distance_sq(point, line):
    return (line @ np.append(point, 1.0)) ** 2 / (line[0] ** 2 + line[1] ** 2)


def test_symmetric_epipolar_error_is_the_sum_of_squared_line_distances():
    p0, p1, T = two_view_points(n=30, seed=3)
    rng = np.random.default_rng(0)
    n0 = normalize_points(p0 + rng.normal(0, 2, p0.shape), K_SYNTH)
    n1 = normalize_points(p1 + rng.normal(0, 2, p1.shape), K_SYNTH)
    R, t = T[:3, :3], T[:3, 3]
    E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ R
    expected = [
        _line_distance_sq(b, E @ np.append(a, 1.0)) + _line_distance_sq(a, E.T @ np.append(b, 1.0))
        for a, b in zip(n0, n1)
    ]
    np.testing.assert_allclose(symmetric_epipolar_errors(n0, n1, T), expected, rtol=1e-9)
    exact = symmetric_epipolar_errors(
        normalize_points(p0, K_SYNTH), normalize_points(p1, K_SYNTH), T
    )
    assert exact.max() < 1e-20


def test_metric_inputs_are_checked():
    with pytest.raises(ShapeError):
        rotation_error(np.eye(2), np.eye(3))
    with pytest.raises(ShapeError):
        symmetric_epipolar_errors(np.zeros((3, 2)), np.zeros((2, 2)), np.eye(4))
    with pytest.raises(ValueRangeError):
        normalize_points([[np.nan, 0.0]], K_SYNTH)


# ------------------------------------------------------------------ protocol on a hand-built case
def test_exact_matches_give_zero_error_and_full_auc():
    results = []
    for seed in range(4):
        R = rotation("y", 5.0 + 5 * seed) @ rotation("z", -3.0)
        t = np.array([0.5, -0.1 * seed, 0.2])
        p0, p1, T = two_view_points(n=150, seed=seed, R=R, t=t)
        results.append(evaluate_matched_pair(p0, p1, K_SYNTH, K_SYNTH, T, pair=str(seed)))
    for r in results:
        assert r.error < 0.01 and r.precision == 1.0 and r.num_inliers == 150
    summary = summarize_pose(results)
    assert summary["auc"] == {
        "5": pytest.approx(1.0, abs=1e-3),
        "10": pytest.approx(1.0, abs=1e-3),
        "20": pytest.approx(1.0, abs=1e-3),
    }
    assert summary["failed"] == 0


def test_the_pose_direction_matters():
    """Matches that follow T_1to0 instead of T_0to1 must not score as correct (the check can fail)."""
    p0, p1, T = two_view_points(n=150, seed=1)
    result = evaluate_matched_pair(p1, p0, K_SYNTH, K_SYNTH, T)
    assert result.error > 5.0 and result.precision < 0.5


def test_outliers_lower_the_precision_by_their_share():
    p0, p1, T = two_view_points(n=200, seed=2)
    rng = np.random.default_rng(5)
    p1 = p1.copy()
    p1[:50] = rng.uniform([0, 0], [640, 480], (50, 2))
    result = evaluate_matched_pair(p0, p1, K_SYNTH, K_SYNTH, T)
    assert result.precision == pytest.approx(0.75, abs=0.02)
    assert result.error < 10.0


def test_too_few_matches_fail_as_inf():
    p0, p1, T = two_view_points(n=4)
    result = evaluate_matched_pair(p0, p1, K_SYNTH, K_SYNTH, T)
    assert result.error == float("inf") and result.num_inliers == 0
    assert summarize_pose([result])["auc"]["5"] == 0.0


def test_options_are_checked():
    with pytest.raises(LookalikeError):
        PoseOptions(ransac_threshold=0.0)
    with pytest.raises(LookalikeError):
        PoseOptions(thresholds=())


def test_evaluate_pose_on_a_rendered_scene(tmp_path):
    from lookalike.matching.pipeline import ImageMatcher

    folder = write_two_view_scene(tmp_path)
    _, pairs = find_scannet_pairs(folder)
    opts = PoseOptions(max_keypoints=500)
    matchers = {n: ImageMatcher(n, **opts.matcher_kwargs()) for n in ("sift", "opencv-sift")}
    report = evaluate_pose(pairs, matchers, options=opts)
    for name in matchers:
        (result,) = report.pairs[name]
        assert result.num_matches > 50 and result.precision > 0.8
    assert json.dumps(report.to_dict())


# ------------------------------------------------------------------ reader
def test_reader_parses_and_resizes(tmp_path):
    folder = write_two_view_scene(tmp_path)
    (pair,) = read_scannet_pairs(folder / "scannet_sample_pairs_with_gt.txt")
    loaded = pair.load((320, 240))
    assert loaded.image0.shape == (240, 320)
    np.testing.assert_allclose(loaded.K0, np.diag([0.5, 0.5, 1.0]) @ K_SYNTH)
    assert pair.load().image0.shape == (480, 640)  # already 640 x 480: unchanged


def test_reader_refuses_bad_lines(tmp_path):
    eye = " ".join(["1 0 0 0 1 0 0 0 1"] * 2)
    pose = " ".join(str(v) for v in np.eye(4).reshape(-1))
    with pytest.raises(ShapeError):
        parse_pair_line("a b 0 0 1 2 3")
    with pytest.raises(OptionError):
        parse_pair_line(f"a b 1 0 {eye} {pose}")
    with pytest.raises(OptionError):
        parse_pair_line(f"a b 0 0 {eye} {pose}".replace("1", "x", 1).replace(" x ", " y ", 1))
    with pytest.raises(LookalikeError):
        find_scannet_pairs(tmp_path)


@pytest.mark.data
def test_shared_sample_reads(data_root):
    root, pairs = find_scannet_pairs(data_root)
    assert len(pairs) == 15 and root.name == "scannet-sample"
    for pair in pairs:
        R = pair.T_0to1[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-3)


# ------------------------------------------------------------------ command line
def test_cli_writes_the_table(tmp_path, capsys):
    from lookalike.cli.main import main

    folder = write_two_view_scene(tmp_path / "data")
    out = tmp_path / "out"
    args = ["evaluate", "pose", "--data", str(folder), "--descriptors", "opencv-sift"]
    assert main([*args, "--max-keypoints", "300", "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    assert "AUC@5°" in text and "opencv-sift" in text
    stored = json.loads((out / "results.json").read_text())
    assert stored["descriptors"]["opencv-sift"]["summary"]["pairs"] == 1


def test_cli_missing_data_is_one_line(tmp_path, capsys):
    from lookalike.cli.main import main

    code = main(["evaluate", "pose", "--data", str(tmp_path), "--descriptors", "opencv-sift"])
    assert code == 1 and "scannet-sample" in capsys.readouterr().err


@pytest.mark.data
@pytest.mark.slow
def test_protocol_on_the_shared_sample(data_root):
    import lookalike

    protocol = lookalike.create("protocol", "relative_pose", options={"max_keypoints": 1024})
    summary = protocol("opencv-rootsift", data_root)
    assert summary["pairs"] == 15 and summary["matches"] > 5
    assert all(0.0 <= v <= 1.0 for v in summary["auc"].values())
    assert 0.0 < summary["precision"] <= 1.0
