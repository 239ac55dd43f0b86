"""Pictures of matches: sizes, tiny images, positions of the drawn points."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.core.errors import OptionError
from lookalike.matching.draw import draw_matches
from lookalike.matching.keypoints import Keypoints
from lookalike.matching.pipeline import MatchResult


def _result(xy0, xy1, shape0, shape1) -> MatchResult:
    n = len(xy0)
    return MatchResult(
        keypoints0=Keypoints.from_arrays(xy0, image_size=shape0),
        keypoints1=Keypoints.from_arrays(xy1, image_size=shape1),
        matches=np.stack([np.arange(n), np.arange(n)], axis=1).astype(np.int64),
        distances=np.zeros(n, np.float32),
        inliers=np.ones(n, bool),
        model=None,
    )


def test_one_pixel_images_give_a_visible_picture():
    one = np.full((1, 1), 200, np.uint8)
    picture = draw_matches(one, one, _result(np.zeros((0, 2)), np.zeros((0, 2)), (1, 1), (1, 1)))
    assert picture.shape == (64, 128, 3)  # not (1, 2, 3)
    assert (picture == 200).all()  # nearest-pixel enlargement keeps the value


def test_a_tiny_image_does_not_shrink_the_other():
    tiny = np.zeros((1, 1), np.uint8)
    big = np.full((300, 200), 90, np.uint8)
    picture = draw_matches(
        tiny, big, _result(np.zeros((0, 2)), np.zeros((0, 2)), (1, 1), (300, 200))
    )
    assert picture.shape == (300, 64 + 200, 3)  # before: the big image was shrunk to 1 pixel
    assert (picture[:, 64:] == 90).all() and (picture[64:, :64] == 0).all()


def test_tall_images_are_shrunk_and_points_follow():
    image = np.zeros((1200, 400), np.uint8)
    result = _result([[100.0, 1000.0]], [[300.0, 200.0]], (1200, 400), (1200, 400))
    picture = draw_matches(image, image, result, max_height=600)
    assert picture.shape == (600, 400, 3)
    # the line starts at (50, 500) in the left image and ends at (150 + 200, 100)
    assert picture[500, 50].any() and picture[100, 350].any() and not picture[10, 10].any()


def test_bad_heights():
    image = np.zeros((10, 10), np.uint8)
    with pytest.raises(OptionError):
        draw_matches(image, image, _result([], [], (10, 10), (10, 10)), min_height=0)
