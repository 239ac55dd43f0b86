"""Image I/O: every accepted layout and dtype, and every bad file gives one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.errors import DataNotFoundError, LookalikeError
from lookalike.data.images import ImageError, load_image, read_image, to_gray, to_rgb, write_image


def _rgb(h: int = 6, w: int = 7) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_gray_uses_601_weights_like_opencv():
    import cv2

    rgb = _rgb()
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert np.abs(to_gray(rgb).astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize(
    "array",
    [
        np.full((4, 5), 200, np.uint8),
        np.full((4, 5, 1), 200, np.uint8),
        np.full((4, 5, 3), 200, np.uint8),
        np.dstack([np.full((4, 5, 3), 200, np.uint8), np.zeros((4, 5), np.uint8)]),  # RGBA
        np.full((4, 5), 200 * 257, np.uint16),  # 16-bit
        np.full((4, 5, 3), 200 / 255, np.float32),
    ],
    ids=["gray", "gray1", "rgb", "rgba", "uint16", "float"],
)
def test_layouts_and_dtypes(array):
    gray = to_gray(array)
    assert gray.shape == (4, 5) and gray.dtype == np.uint8
    assert np.all(gray == 200)
    rgb = to_rgb(array)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8 and np.all(rgb == 200)


def test_tensor_channels_first():
    t = torch.full((1, 3, 4, 5), 0.5)
    assert to_gray(t).shape == (4, 5)
    assert to_rgb(t[0]).shape == (4, 5, 3)


def test_float_nan_and_out_of_range_are_clipped():
    a = np.array([[np.nan, -1.0, 2.0, 0.5]], np.float32)
    assert to_gray(a).tolist() == [[0, 0, 255, 128]]


@pytest.mark.parametrize("shape", [(0, 5), (4, 0, 3), (4, 5, 2), (2, 3, 4, 5)])
def test_bad_arrays(shape):
    with pytest.raises(ImageError):
        to_gray(np.zeros(shape, np.uint8))


def test_none_is_an_error():
    with pytest.raises(ImageError):
        load_image(None)


def test_roundtrip_png_rgb_and_16bit(tmp_path):
    import cv2

    rgb = _rgb()
    path = write_image(tmp_path / "a.png", rgb)
    assert np.array_equal(read_image(path, gray=False), rgb)
    deep = np.full((3, 4), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert np.all(read_image(tmp_path / "deep.png") == 255)


def test_rgba_file(tmp_path):
    import cv2

    bgra = np.zeros((3, 4, 4), np.uint8)
    bgra[..., 2] = 255  # red in BGR order
    bgra[..., 3] = 10
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    rgb = read_image(tmp_path / "rgba.png", gray=False)
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.png")


def test_not_an_image(tmp_path):
    (tmp_path / "text.jpg").write_text("hello, not a JPEG")
    with pytest.raises(LookalikeError, match="cannot read image"):
        load_image(tmp_path / "text.jpg")


def test_one_pixel_image(tmp_path):
    write_image(tmp_path / "one.png", np.full((1, 1), 7, np.uint8))
    assert read_image(tmp_path / "one.png").tolist() == [[7]]
