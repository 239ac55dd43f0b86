"""Robust geometry: known models recovered with outliers; degenerate input gives model None."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.core.errors import OptionError, ShapeError
from lookalike.geometry import project_points
from lookalike.matching.geometry import (
    estimate_fundamental,
    estimate_geometry,
    estimate_homography,
)

H_TRUE = np.array([[0.9, 0.1, 12.0], [-0.05, 1.1, -7.0], [1e-4, -2e-4, 1.0]])


def _correspondences(n=200, outliers=0.3, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0, 500, (n, 2))
    p1 = project_points(H_TRUE, p0) + rng.normal(0, 0.3, (n, 2))
    bad = rng.random(n) < outliers
    p1[bad] = rng.uniform(0, 500, (int(bad.sum()), 2))
    return p0, p1, ~bad


@pytest.mark.parametrize("method", ["magsac", "usac", "accurate", "ransac"])
def test_homography_with_outliers(method):
    p0, p1, good = _correspondences()
    fit = estimate_homography(p0, p1, method=method)
    assert fit.model is not None and fit.model[2, 2] == pytest.approx(1.0)
    err = np.linalg.norm(
        project_points(fit.model, p0[good]) - project_points(H_TRUE, p0[good]), axis=1
    )
    assert err.mean() < 1.0
    assert (fit.inliers == good).mean() > 0.95


def test_fundamental_from_two_views():
    rng = np.random.default_rng(1)
    X = np.c_[rng.uniform(-1, 1, (150, 2)), rng.uniform(4, 8, 150)]
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    R = np.array([[np.cos(0.1), 0, np.sin(0.1)], [0, 1, 0], [-np.sin(0.1), 0, np.cos(0.1)]])
    t = np.array([1.0, 0.1, 0.0])
    x0 = (K @ X.T).T
    x1 = (K @ (R @ X.T + t[:, None])).T
    p0, p1 = x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:]
    fit = estimate_fundamental(p0, p1)
    assert fit.model is not None and fit.num_inliers > 140
    h0, h1 = np.c_[p0, np.ones(150)], np.c_[p1, np.ones(150)]
    line = h0 @ fit.model.T
    dist = np.abs((h1 * line).sum(1)) / np.linalg.norm(line[:, :2], axis=1)
    assert np.median(dist) < 0.5


@pytest.mark.parametrize("n", [0, 1, 3])
def test_too_few_matches_give_no_model(n):
    p0, p1, _ = _correspondences(n=max(n, 1))
    fit = estimate_homography(p0[:n], p1[:n])
    assert fit.model is None and fit.inliers.shape == (n,) and not fit.inliers.any()
    assert estimate_fundamental(p0[:n], p1[:n]).model is None


def test_degenerate_points_give_no_model():
    same = np.zeros((10, 2))
    assert estimate_homography(same, same).model is None
    collinear = np.c_[np.arange(10.0), np.arange(10.0)]
    assert estimate_homography(collinear, collinear + 1).model is None
    with_nan = np.full((10, 2), np.nan)
    assert estimate_homography(with_nan, with_nan).model is None


def test_none_geometry_keeps_every_match():
    p0, p1, _ = _correspondences(n=5)
    fit = estimate_geometry(p0, p1, "none")
    assert fit.model is None and fit.inliers.all()


def test_bad_input():
    p0, p1, _ = _correspondences(n=10)
    with pytest.raises(ShapeError):
        estimate_homography(p0, p1[:5])
    with pytest.raises(ShapeError):
        estimate_homography(p0[:, :1], p1[:, :1])
    with pytest.raises(OptionError):
        estimate_homography(p0, p1, method="lmeds")
    with pytest.raises(OptionError):
        estimate_homography(p0, p1, threshold=0)
    with pytest.raises(OptionError):
        estimate_geometry(p0, p1, "essential")
