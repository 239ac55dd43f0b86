"""Photometric changes and LAF visibility (the geometry is tested in tests/test_geometry.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.core.errors import OptionError
from lookalike.data.synth import PhotometricRanges, lafs_inside, random_photometric


def test_lafs_inside():
    lafs = np.array(
        [
            [[5.0, 0.0, 10.0], [0.0, 5.0, 10.0]],  # square 5..15: inside a 20 x 20 image
            [[5.0, 0.0, 3.0], [0.0, 5.0, 10.0]],  # crosses x = 0
            [[3.0, 3.0, 10.0], [-3.0, 3.0, 10.0]],  # rotated square: half-extent 6
            [[np.nan, 0.0, 10.0], [0.0, 5.0, 10.0]],
        ]
    )
    np.testing.assert_array_equal(lafs_inside(lafs, (20, 20)), [True, False, True, False])
    np.testing.assert_array_equal(lafs_inside(lafs, (20, 20), border=4.5), [False] * 4)


def test_photometric_identity_and_range():
    img = np.random.default_rng(0).random((32, 48), dtype=np.float32)
    np.testing.assert_allclose(
        random_photometric(img, np.random.default_rng(1), PhotometricRanges.identity()), img
    )
    ranges = PhotometricRanges(p_blur=1.0, p_jpeg=1.0)
    a = random_photometric(img, np.random.default_rng(7), ranges)
    b = random_photometric(img, np.random.default_rng(7), ranges)
    assert a.dtype == np.float32 and a.shape == img.shape
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, img, atol=1e-3)


def test_photometric_gamma_exact():
    img = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    ranges = PhotometricRanges(
        gamma=(2.0, 2.0), contrast=(1, 1), brightness=(0, 0), noise=(0, 0), p_blur=0.0, p_jpeg=0.0
    )
    out = random_photometric(img, np.random.default_rng(0), ranges)
    np.testing.assert_allclose(out, (np.round(img * 255) / 255) ** 2, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"jpeg": (10, 120)}, {"p_blur": 1.5}, {"gamma": (0.0, 1.0)}])
def test_bad_photometric_ranges(kwargs):
    with pytest.raises(OptionError):
        PhotometricRanges(**kwargs)


def test_coerce_from_mapping():
    r = PhotometricRanges.coerce({"gamma": [0.9, 1.1]})
    assert r.gamma == (0.9, 1.1) and r.contrast == PhotometricRanges().contrast
    assert PhotometricRanges.coerce(None) == PhotometricRanges()
    with pytest.raises(OptionError, match="unknown keys"):
        PhotometricRanges.coerce({"zoom": (1, 2)})
