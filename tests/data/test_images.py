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


# ---------------------------------------------------------------- folders, bombs, writing


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="is a folder, expected an image file"):
        load_image(tmp_path)


def _png(tmp_path, h: int, w: int):
    return write_image(tmp_path / f"{h}x{w}.png", np.full((h, w), 100, np.uint8))


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    import cv2

    import lookalike.data.images as images

    path = _png(tmp_path, 30, 40)  # 1200 pixels
    monkeypatch.setenv("LOOKALIKE_MAX_IMAGE_PIXELS", "1000")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ImageError, match=r"40 x 30 .*LOOKALIKE_MAX_IMAGE_PIXELS"):
        read_image(path)
    monkeypatch.undo()
    monkeypatch.setenv("LOOKALIKE_MAX_IMAGE_PIXELS", "1200")  # the limit itself is allowed
    assert read_image(path).shape == (30, 40)
    monkeypatch.setenv("LOOKALIKE_MAX_IMAGE_PIXELS", "0")  # no limit
    assert read_image(path).shape == (30, 40)
    monkeypatch.setenv("LOOKALIKE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ImageError, match="non-negative integer"):
        read_image(path)
    monkeypatch.delenv("LOOKALIKE_MAX_IMAGE_PIXELS")
    assert images.max_image_pixels() == images.MAX_IMAGE_PIXELS == 200_000_000
    assert images.image_size(path) == (30, 40)


def test_pixel_limit_for_formats_pillow_cannot_read(tmp_path, monkeypatch):
    import lookalike.data.images as images

    path = _png(tmp_path, 30, 40)
    monkeypatch.setattr(images, "image_size", lambda path: None)  # e.g. a format Pillow lacks
    monkeypatch.setenv("LOOKALIKE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match="megapixels"):
        read_image(path)


def test_gray_of_a_large_image_is_computed_in_blocks(monkeypatch):
    import lookalike.data.images as images

    rgb = np.random.default_rng(1).integers(0, 256, (50, 40, 3)).astype(np.uint16) * 257
    whole = images.to_gray(rgb)
    monkeypatch.setattr(images, "_BLOCK_PIXELS", 90)  # two rows per block
    np.testing.assert_array_equal(images.to_gray(rgb), whole)
    expected = np.round((rgb / 257).astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))
    np.testing.assert_array_equal(whole, expected.astype(np.uint8))


def test_write_needs_an_existing_folder_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import cv2

    image = np.zeros((4, 4), np.uint8)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        write_image(tmp_path / "new" / "a.png", image)
    assert not (tmp_path / "new").exists()  # no folder created
    with pytest.raises(ImageError, match="no writer"):
        write_image(tmp_path / "a.xyz", image)

    def raising(*args, **kwargs):  # OpenCV 5 raises
        raise cv2.error("imwrite failed")

    monkeypatch.setattr(cv2, "imwrite", raising)
    with pytest.raises(ImageError, match="cannot write image"):
        write_image(tmp_path / "a.png", image)
    monkeypatch.setattr(cv2, "imwrite", lambda *args, **kwargs: False)  # OpenCV 4 returns False
    with pytest.raises(ImageError, match="cannot write image"):
        write_image(tmp_path / "a.png", image)
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_and_is_readable(tmp_path):
    import os
    import stat

    path = write_image(tmp_path / "a.png", np.full((3, 3), 5, np.uint8))
    write_image(path, np.full((3, 3), 9, np.uint8))
    assert read_image(path).tolist() == [[9] * 3] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
