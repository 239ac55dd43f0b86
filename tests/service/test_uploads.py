"""Upload checks: sizes, declared types, magic bytes, pixel counts (hand-made files as the oracle)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from lookalike.core.errors import LookalikeError
from lookalike.service.errors import (
    ImageTooLargeError,
    PayloadTooLargeError,
    UnreadableImageError,
    UnsupportedMediaError,
)
from lookalike.service.uploads import check_image_bytes, sniff_format
from service.helpers import jpeg_bytes, png_bytes

BIG = 10**9


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header announces ``width x height`` pixels (its data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def _image(h=30, w=40):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _webp_bmp():
    import io

    from PIL import Image

    out = {}
    for fmt in ("WEBP", "BMP"):
        buf = io.BytesIO()
        Image.fromarray(_image()).save(buf, fmt)
        out[fmt.lower()] = buf.getvalue()
    return out


def test_sniff_known_signatures():
    other = _webp_bmp()
    assert sniff_format(png_bytes(_image())) == "png"
    assert sniff_format(jpeg_bytes(_image())) == "jpeg"
    assert sniff_format(other["webp"]) == "webp"
    assert sniff_format(other["bmp"]) == "bmp"
    assert sniff_format(b"GIF89a....") is None
    assert sniff_format(b"") is None
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVE") is None


@pytest.mark.parametrize(
    ("fmt", "declared"),
    [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp"), ("bmp", "image/bmp")],
)
def test_accepts_each_format_with_its_header_size(fmt, declared):
    data = {"png": png_bytes(_image()), "jpeg": jpeg_bytes(_image()), **_webp_bmp()}[fmt]
    out = check_image_bytes(data, declared + "; charset=binary", max_bytes=BIG, max_pixels=BIG)
    assert (out.format, out.width, out.height) == (fmt, 40, 30)
    assert out.data == data


def test_size_limit_is_inclusive():
    data = png_bytes(_image())
    check_image_bytes(data, "image/png", max_bytes=len(data), max_pixels=BIG)
    with pytest.raises(
        PayloadTooLargeError, match=f"{len(data)} bytes, the limit is {len(data) - 1}"
    ):
        check_image_bytes(data, "image/png", max_bytes=len(data) - 1, max_pixels=BIG)


@pytest.mark.parametrize(
    "declared", [None, "", "text/plain", "image/gif", "application/octet-stream"]
)
def test_unsupported_declared_type(declared):
    with pytest.raises(UnsupportedMediaError, match="unsupported content type"):
        check_image_bytes(png_bytes(_image()), declared, max_bytes=BIG, max_pixels=BIG)


def test_declared_type_must_match_the_bytes():
    with pytest.raises(
        UnsupportedMediaError, match="does not match the uploaded bytes, which are PNG"
    ):
        check_image_bytes(png_bytes(_image()), "image/jpeg", max_bytes=BIG, max_pixels=BIG)
    with pytest.raises(UnsupportedMediaError, match="unknown file signature"):
        check_image_bytes(b"hello, world", "image/png", max_bytes=BIG, max_pixels=BIG)
    with pytest.raises(UnsupportedMediaError, match="unknown file signature"):
        check_image_bytes(b"GIF89a" + b"\x00" * 20, "image/png", max_bytes=BIG, max_pixels=BIG)


def test_pixel_limit_read_from_the_header_of_a_bomb():
    bomb = bomb_png(10_000, 10_000)
    assert len(bomb) < 200  # tiny file, 100 megapixels announced
    with pytest.raises(ImageTooLargeError, match="10000 x 10000 = 100000000 pixels"):
        check_image_bytes(bomb, "image/png", max_bytes=BIG, max_pixels=40_000_000)
    huge = bomb_png(50_000, 50_000)  # beyond Pillow's own limit too: still our error
    with pytest.raises(ImageTooLargeError, match=r"2500000000 pixels.*the limit is 40000000"):
        check_image_bytes(huge, "image/png", max_bytes=BIG, max_pixels=40_000_000)
    small = png_bytes(_image())  # 1200 pixels: the limit is inclusive
    check_image_bytes(small, "image/png", max_bytes=BIG, max_pixels=1200)
    with pytest.raises(ImageTooLargeError, match="40 x 30 = 1200 pixels, the limit is 1199"):
        check_image_bytes(small, "image/png", max_bytes=BIG, max_pixels=1199)


def test_unreadable_image():
    with pytest.raises(UnreadableImageError, match="empty"):
        check_image_bytes(b"", "image/png", max_bytes=BIG, max_pixels=BIG)
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10
    with pytest.raises(UnreadableImageError, match="unreadable image"):
        check_image_bytes(broken, "image/png", max_bytes=BIG, max_pixels=BIG)


def test_errors_are_lookalike_errors_with_their_status():
    cases = [
        (PayloadTooLargeError, 413),
        (ImageTooLargeError, 413),
        (UnsupportedMediaError, 415),
        (UnreadableImageError, 422),
    ]
    for cls, status in cases:
        assert issubclass(cls, LookalikeError) and issubclass(cls, ValueError)
        assert cls.status_code == status
