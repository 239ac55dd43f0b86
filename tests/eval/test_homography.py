"""Homography matching metrics and protocol: toy values, synthetic sequences, report files, MMA@3 look-up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.core.errors import EmptyInputError, OptionError, ShapeError
from lookalike.data import bundled_photos
from lookalike.data.images import write_image
from lookalike.data.sequences import HomographySequence, find_sequences
from lookalike.eval.metrics import (
    at_threshold,
    corner_error,
    homography_accuracy,
    match_accuracy,
    reprojection_errors,
)
from lookalike.eval.protocols.homography import (
    MatchingReport,
    PairResult,
    evaluate_matching,
    run_matching,
    summarize,
)
from lookalike.eval.report.files import write_matching
from lookalike.eval.report.markdown import matching_markdown
from lookalike.geometry import WarpRanges, project_points, random_homography, warp_image
from lookalike.matching.pipeline import ImageMatcher


def test_points_without_image_are_never_correct():
    H_inf = np.array([[1.0, 0, 0], [0, 1, 0], [1.0, 0, 0]])  # x = 0 maps to infinity
    assert reprojection_errors([[0.0, 5.0]], [[0.0, 5.0]], H_inf).tolist() == [np.inf]
    assert match_accuracy([[0.0, 5.0]], [[0.0, 5.0]], H_inf, [1, 1000]).tolist() == [0, 0]
    assert corner_error(H_inf, np.eye(3), (10, 10)) == float("inf")


def test_match_accuracy_toy_values():
    p0 = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    p1 = p0 + np.array([[0.5, 0.0], [0.0, 2.0], [6.0, 8.0], [100.0, 0.0]])  # errors 0.5, 2, 10, 100
    np.testing.assert_allclose(match_accuracy(p0, p1, np.eye(3), [1, 2, 10]), [0.25, 0.5, 0.75])
    assert match_accuracy(np.zeros((0, 2)), np.zeros((0, 2)), np.eye(3), [1, 2]).tolist() == [0, 0]
    with pytest.raises(ShapeError):
        match_accuracy(p0, p1[:2], np.eye(3))
    with pytest.raises(OptionError):
        match_accuracy(p0, p1, np.eye(3), [])
    # oracle: a brute-force loop over matches and thresholds
    rng = np.random.default_rng(0)
    H = random_homography(rng, (100, 100))
    a = rng.uniform(0, 100, (40, 2))
    b = project_points(H, a) + rng.normal(0, 3, (40, 2))
    thr = [1.5, 3, 7]
    loop = [
        np.mean([np.hypot(*(project_points(H, [p])[0] - q)) <= t for p, q in zip(a, b)])
        for t in thr
    ]
    np.testing.assert_allclose(match_accuracy(a, b, H, thr), loop)


def test_at_threshold_looks_up_by_value():
    assert at_threshold([0.1, 0.2, 0.3], [2, 3, 5], 3) == 0.2
    assert at_threshold([0.1, 0.2], [3.0, 1.0], 1) == 0.2
    with pytest.raises(OptionError, match="expected one of"):
        at_threshold([0.1, 0.2], [1, 2], 3)
    with pytest.raises(ShapeError):
        at_threshold([0.1], [1, 2], 1)


def test_homography_accuracy_loop_oracle():
    errors = [0.2, 1.0, 2.9, 3.0, 4.0, float("inf"), float("nan")]
    for t, got in zip([1, 3, 5], homography_accuracy(errors, [1, 3, 5])):
        assert got == pytest.approx(sum(e <= t for e in errors) / len(errors))


def test_corner_error():
    shift = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    assert corner_error(np.eye(3), shift, (10, 20)) == 5.0
    assert corner_error(shift, shift, (10, 20)) == 0.0
    assert corner_error(None, shift, (10, 20)) == float("inf")


def test_summarize_counts_failures_as_wrong():
    pairs = [
        PairResult("s/a", 1, (0.5, 1.0), 10, (20, 20), 0.5, 8),
        PairResult("s/a", 2, (0.0, 0.0), 0, (20, 0), float("inf"), 0),
    ]
    s = summarize(pairs)
    assert s["pairs"] == 2 and s["mma"] == [0.25, 0.5] and s["matches"] == 5.0
    assert s["homography_accuracy"] == {"1": 0.5, "3": 0.5, "5": 0.5}


@pytest.fixture(scope="module")
def toy_sequence(tmp_path_factory) -> HomographySequence:
    folder = tmp_path_factory.mktemp("seqs") / "toy" / "v_astro"
    folder.mkdir(parents=True)
    image = np.ascontiguousarray(bundled_photos(["astronaut"])[0].rgb[::2, ::2])
    write_image(folder / "1.ppm", image)
    rng = np.random.default_rng(0)
    ranges = WarpRanges(rotation=(-0.35, 0.35), scale=(0.8, 1.2), perspective=(-0.1, 0.1))
    for k in (2, 3):
        H = random_homography(rng, image.shape[:2], ranges)
        write_image(folder / f"{k}.ppm", warp_image(image, H))
        np.savetxt(folder / f"H_1_{k}", H)
    flat = folder.parent / "v_flat"  # a sequence without any keypoint
    flat.mkdir()
    write_image(flat / "1.ppm", np.full((64, 64, 3), 50, np.uint8))
    write_image(flat / "2.ppm", np.full((64, 64, 3), 50, np.uint8))
    np.savetxt(flat / "H_1_2", np.eye(3))
    return folder.parent.parent


def test_protocol_on_synthetic_sequences(toy_sequence, tmp_path):
    seqs = find_sequences(toy_sequence)
    assert [s.name for s in seqs] == ["toy/v_astro", "toy/v_flat"]
    calls = []
    report = evaluate_matching(
        seqs,
        {"opencv-sift": ImageMatcher("opencv-sift", max_keypoints=500)},
        progress=lambda label, name: calls.append((label, name)),
    )
    assert calls == [("opencv-sift", "toy/v_astro"), ("opencv-sift", "toy/v_flat")]
    astro = report.summary("opencv-sift", sequence="toy/v_astro")
    assert astro["pairs"] == 2 and astro["mma"][2] > 0.7
    assert astro["homography_accuracy"]["3"] == 1.0
    flat = report.summary("opencv-sift", sequence="toy/v_flat")
    assert flat["mma"] == [0.0] * 10 and flat["homography_accuracy"]["5"] == 0.0
    overall = report.summary("opencv-sift")
    assert overall["pairs"] == 3
    assert overall["mma"][2] == pytest.approx(astro["mma"][2] * 2 / 3, abs=1e-3)

    report.config = {"note": "test"}
    paths = write_matching(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["descriptors"]["opencv-sift"]["groups"]["toy"]["pairs"] == 3
    assert data["descriptors"]["opencv-sift"]["pairs"][2]["corner_error"] is None
    text = paths["markdown"].read_text()
    assert "| opencv-sift |" in text and "toy/v_flat" in text
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_empty_inputs():
    with pytest.raises(EmptyInputError):
        evaluate_matching([], {"x": ImageMatcher("opencv-sift")})
    with pytest.raises(EmptyInputError):
        evaluate_matching([HomographySequence("a/b", ("x.png",), ())], {})
    assert MatchingReport().descriptors == []


def _report(thresholds, mma):
    pairs = [PairResult("ds/a", 1, tuple(mma), 10, (20, 20), 0.5, 8)]
    return MatchingReport(
        thresholds=tuple(thresholds), pairs={"desc": pairs}, seconds={"desc": 1.0}
    )


def test_mma_at_3_is_looked_up_by_threshold_not_position():
    """Thresholds (2, 3, 5): MMA@3 is the second entry (index 2 would be MMA@5)."""
    from lookalike.eval.report.terminal import matching_summary_markdown

    report = _report((2, 3, 5), (0.1, 0.6, 0.9))
    s = report.summary("desc")
    assert report.headline_threshold == 3 and report.mma_at(s) == 0.6
    text = matching_markdown(report)
    assert "MMA@3" in text and "| desc | 0.600 |" in text and "0.900" not in text
    assert "| desc | 0.600 | 1.00 |" in matching_summary_markdown(report)
    # without 3 px the closest measured threshold is shown, under its own name
    far = _report((1, 2, 5, 10), (0.1, 0.2, 0.7, 0.9))
    assert far.headline_threshold == 2 and "MMA@2" in matching_markdown(far)


def test_run_matching_with_other_thresholds_and_registered_protocol(toy_sequence):
    import lookalike
    from lookalike.eval.protocols.homography import MatchingOptions

    options = MatchingOptions(max_keypoints=300, thresholds=(2, 3, 4))
    report = run_matching(toy_sequence, ["opencv-sift"], sequences=["astro"], options=options)
    assert report.config["sequences"] == ["toy/v_astro"] and report.thresholds == (2, 3, 4)
    assert report.config["network_precision"] == {}  # OpenCV's SIFT runs no fused network
    s = report.summary("opencv-sift")
    assert s["mma"][0] <= report.mma_at(s) <= s["mma"][2]
    protocol = lookalike.create("protocol", "homography_matching", options=options)
    res = protocol("opencv-sift", find_sequences(toy_sequence)[:1])
    assert res["pairs"] == 2 and res["mma"] == s["mma"] and res["thresholds"] == [2, 3, 4]


def test_keypoints_are_shared_only_between_matchers_that_detect_alike():
    from lookalike.eval.protocols._common import detector_key
    from lookalike.matching.pipeline import ImageMatcher

    a = ImageMatcher("sift", max_keypoints=100)
    assert detector_key(a) == detector_key(ImageMatcher("rootsift", max_keypoints=100))
    assert detector_key(a) != detector_key(ImageMatcher("sift", max_keypoints=100, max_size=64))
    assert detector_key(a) != detector_key(ImageMatcher("sift", max_keypoints=50))
