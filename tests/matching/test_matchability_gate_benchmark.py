"""benchmarks/matchability_gate.py: its derived rows equal the shipped model's, and it runs end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_benchmark


@pytest.fixture(scope="module")
def gate():
    return load_benchmark("matchability_gate")


def test_the_benchmark_gate_at_the_shipped_exponent_is_the_shipped_model(gate):
    """Oracle: the registered hardnet_gated:bundled through the pipeline's describer."""
    from lookalike.data.bundled import bundled_gray
    from lookalike.matching import create_describer
    from lookalike.matching.keypoints import detect_keypoints

    image = bundled_gray("camera", 256)
    keypoints = detect_keypoints(image, max_keypoints=200)
    trunk, head = gate.split_gated()
    assert head.gamma == 3.0 and head.dim == 128
    derived = gate.GatedDescriber(trunk, head, head.gamma, False)
    got = derived.describe_keypoints(image, keypoints).descriptors
    want = create_describer("hardnet_gated:bundled").describe_keypoints(image, keypoints)
    torch.testing.assert_close(got, want.descriptors.float(), atol=1e-5, rtol=0)
    shuffled = gate.GatedDescriber(trunk, head, head.gamma, True)
    rows = shuffled.describe_keypoints(image, keypoints).descriptors.numpy()
    # the control keeps the gate's values (same last column, permuted) but not their keypoints
    np.testing.assert_allclose(np.sort(rows[:, -1]), np.sort(got.numpy()[:, -1]), atol=1e-6)
    assert not np.allclose(rows[:, -1], got.numpy()[:, -1])


@pytest.mark.slow
def test_matchability_gate_benchmark_runs_end_to_end(gate, capsys):
    assert gate.main(["--seeds", "1", "--gammas", "2,3", "--control"]) == 0
    out = capsys.readouterr().out
    assert "H@1" in out and "inliers" in out
    for row in (
        "| rootsift |",
        "| hardnet_gated:bundled |",
        "| gated g2 |",
        "| gated g3 shuffled |",
    ):
        assert row in out
