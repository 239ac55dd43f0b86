"""Procedural dead-leaves images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lookalike.core.errors import OptionError
from lookalike.data.procedural import _radii, dead_leaves


def test_dead_leaves_shape_and_determinism():
    a = dead_leaves(48, rng=np.random.default_rng(3), shapes=50)
    b = dead_leaves(48, rng=np.random.default_rng(3), shapes=50)
    c = dead_leaves(48, rng=np.random.default_rng(4), shapes=50)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10
    # many occluding shapes: many distinct colours and edges, not a flat image
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 20
    assert np.abs(np.diff(a.astype(int), axis=1)).mean() > 1


def test_radii_follow_the_inverse_cube_density():
    """Oracle: the CDF of a density proportional to r^-3 on [a, b], by the KS test."""
    a, b = 2.0, 50.0
    r = _radii(np.random.default_rng(0), 5000, a, b)
    assert r.min() >= a and r.max() <= b

    def cdf(x):
        x = np.clip(x, a, b)
        return (a**-2 - x**-2) / (a**-2 - b**-2)

    assert stats.kstest(r, cdf).pvalue > 0.01
    uniform = np.random.default_rng(0).uniform(a, b, 5000)
    assert stats.kstest(uniform, cdf).pvalue < 1e-6  # the test can fail


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 4}, {"size": 32.0}, {"shapes": 0}, {"r_min": 0.0}, {"r_min": 0.5, "r_max": 0.2}],
)
def test_bad_options_raise(kwargs):
    options = {"size": 32, "rng": np.random.default_rng(0)}
    options.update(kwargs)
    with pytest.raises(OptionError):
        dead_leaves(**options)
