"""benchmarks/matchability_gate.py: the gate's rows, its labels and its fitted head, against oracles."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def gate():
    return load_benchmark("matchability_gate")


def test_gate_rows_are_unit_and_keep_the_row_at_q_one(gate):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.uniform(size=50)
    y = gate.gate_rows(x, q)
    assert y.shape == (50, 9)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-6)
    # hand-computed: q = 1 keeps the row, q = 0 is the shared extra direction
    ends = gate.gate_rows(x[:2], np.array([1.0, 0.0]))
    np.testing.assert_allclose(ends[0], [*x[0], 0.0], atol=1e-6)
    np.testing.assert_allclose(ends[1], [0.0] * 8 + [1.0], atol=1e-6)
    # the cosine of two gated rows: sqrt(q_a q_b) x_a . x_b + sqrt((1 - q_a)(1 - q_b))
    expected = np.sqrt(q[0] * q[1]) * x[0] @ x[1] + np.sqrt((1 - q[0]) * (1 - q[1]))
    assert float(y[0] @ y[1]) == pytest.approx(expected, abs=1e-6)


def test_partner_labels_equal_a_brute_force_loop(gate):
    rng = np.random.default_rng(1)
    xy_a = rng.uniform(0, 100, size=(40, 2))
    xy_b = rng.uniform(0, 100, size=(30, 2))
    H = np.array([[1.1, 0.05, 3.0], [-0.02, 0.95, -2.0], [1e-4, 2e-4, 1.0]])
    got = gate.partner_labels(xy_a, xy_b, H, 6.0)
    want = []
    for x, y in xy_a:
        u, v, w = H @ [x, y, 1.0]
        want.append(any(np.hypot(u / w - bx, v / w - by) <= 6.0 for bx, by in xy_b))
    assert got.tolist() == want
    assert 0 < got.sum() < len(got)  # both outcomes occur, so the check can fail
    assert gate.partner_labels(xy_a, xy_b[:0], H, 6.0).tolist() == [False] * 40


def test_fit_gate_folds_the_scaler_into_the_head(gate):
    """The folded (w, b) on raw rows gives scikit-learn's own scaled-pipeline decision values."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    rows = rng.normal(size=(400, 6)) * [1, 2, 3, 0.5, 1, 4] + [0, 1, -1, 2, 0, 3]
    labels = rows[:, 0] + 0.5 * rows[:, 2] + rng.normal(scale=0.5, size=400) > 0
    w, b, auc = gate.fit_gate(rows, labels)
    oracle = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    oracle.fit(rows, labels)
    np.testing.assert_allclose(rows @ w + b, oracle.decision_function(rows), atol=1e-6)
    assert 0.8 < auc <= 1.0


@pytest.mark.slow
def test_matchability_gate_benchmark_runs_end_to_end(gate, capsys):
    assert gate.main(["--seeds", "1", "--train-draws", "1", "--gammas", "3", "--control"]) == 0
    out = capsys.readouterr().out
    assert "inner AUC" in out and "H@1" in out and "inliers" in out
    for row in ("| rootsift |", "| hardnet:bundled |", "| gated g3 |", "| gated g3 shuffled |"):
        assert row in out
