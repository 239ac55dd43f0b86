"""Homography matching metrics and protocol: toy values, synthetic sequences, report files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.core.errors import EmptyInputError, ShapeError
from lookalike.data import bundled_photos
from lookalike.data.images import write_image
from lookalike.data.sequences import HomographySequence, find_sequences
from lookalike.eval.homography import (
    MatchingReport,
    PairResult,
    corner_error,
    evaluate_matching,
    match_accuracy,
    project_points,
    random_homography,
    summarize,
    warp_image,
    write_report,
)
from lookalike.matching.pipeline import ImageMatcher


def test_project_points_and_infinity():
    H = np.array([[1.0, 0, 2], [0, 1, 3], [0, 0, 1]])
    assert project_points(H, [[1.0, 1.0]]).tolist() == [[3.0, 4.0]]
    H_inf = np.array([[1.0, 0, 0], [0, 1, 0], [1.0, 0, 0]])
    assert np.isinf(project_points(H_inf, [[0.0, 5.0]])).all()
    with pytest.raises(ShapeError):
        project_points(np.eye(2), [[0.0, 0.0]])


def test_match_accuracy_toy_values():
    p0 = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    p1 = p0 + np.array([[0.5, 0.0], [0.0, 2.0], [6.0, 8.0], [100.0, 0.0]])  # errors 0.5, 2, 10, 100
    np.testing.assert_allclose(match_accuracy(p0, p1, np.eye(3), [1, 2, 10]), [0.25, 0.5, 0.75])
    assert match_accuracy(np.zeros((0, 2)), np.zeros((0, 2)), np.eye(3), [1, 2]).tolist() == [0, 0]
    with pytest.raises(ShapeError):
        match_accuracy(p0, p1[:2], np.eye(3))


def test_corner_error():
    shift = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    assert corner_error(np.eye(3), shift, (10, 20)) == 5.0
    assert corner_error(shift, shift, (10, 20)) == 0.0
    assert corner_error(None, shift, (10, 20)) == float("inf")


def test_random_homography_is_seeded_and_keeps_the_centre_in_view():
    a = random_homography((200, 300), np.random.default_rng(1))
    b = random_homography((200, 300), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    centre = project_points(a, [[149.5, 99.5]])[0]
    assert 0 < centre[0] < 300 and 0 < centre[1] < 200


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
    for k in (2, 3):
        H = random_homography(image.shape[:2], rng, max_angle=20, perspective=0.08)
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
    paths = write_report(report, tmp_path / "out")
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
