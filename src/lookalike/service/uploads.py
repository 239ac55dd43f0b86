"""Checks on uploaded images, before any decoder sees them: size, declared type, magic bytes, pixels.

Convention:
    - Accepted formats: JPEG, PNG, WebP and BMP (:data:`FORMATS`). An upload must declare one of their
      content types (``image/jpeg``, ``image/png``, ...) *and* its first bytes must be that format's
      signature; a mismatch (a PNG sent as ``image/jpeg``, a text file sent as ``image/png``) is
      refused with 415.
    - The pixel count is read from the header with Pillow, without decoding; more than
      ``max_pixels`` is refused with 413 (a decompression bomb announces a huge size in a small file).
      A header Pillow cannot parse is an unreadable image (422).
    - Nothing here writes to the file system; the bytes stay in memory.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from lookalike.service.errors import (
    ImageTooLargeError,
    PayloadTooLargeError,
    UnreadableImageError,
    UnsupportedMediaError,
)

__all__ = ["FORMATS", "CheckedImage", "check_image_bytes", "sniff_format"]

#: format -> (accepted content types, file suffix).
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "jpeg": (("image/jpeg", "image/jpg", "image/pjpeg"), ".jpg"),
    "png": (("image/png",), ".png"),
    "webp": (("image/webp",), ".webp"),
    "bmp": (("image/bmp", "image/x-ms-bmp", "image/x-bmp"), ".bmp"),
}


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed every check.

    Attributes:
        data: the file's bytes.
        format: a key of :data:`FORMATS`.
        width, height: from the header, in pixels.
    """

    data: bytes
    format: str
    width: int
    height: int

    @property
    def suffix(self) -> str:
        return FORMATS[self.format][1]


def sniff_format(data: bytes) -> str | None:
    """The format whose signature ``data`` starts with, or ``None``.

    Example:
        >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff_format(b"GIF89a"), sniff_format(b"BM..")
        ('png', None, 'bmp')
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    return None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _header_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return int(image.size[0]), int(image.size[1])
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        raise ImageTooLargeError(
            f"image too large: {exc}; the limit is {max_pixels} pixels"
        ) from exc
    except Exception as exc:  # any parser error: the bytes are not a readable image
        raise UnreadableImageError(f"unreadable image: {type(exc).__name__}: {exc}") from exc


def check_image_bytes(
    data: bytes, content_type: str | None, *, max_bytes: int, max_pixels: int
) -> CheckedImage:
    """Check an uploaded image (see the module Convention).

    Args:
        data: the uploaded file's bytes.
        content_type: the content type the client declared for the file.
        max_bytes: largest accepted file, in bytes.
        max_pixels: largest accepted ``width * height``.

    Raises:
        PayloadTooLargeError: more than ``max_bytes`` (413).
        UnsupportedMediaError: a content type or signature that is not an accepted format, or the two
            disagree (415).
        ImageTooLargeError: more than ``max_pixels`` pixels (413).
        UnreadableImageError: empty, or a header that cannot be parsed (422).

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGB", (4, 3)).save(buf, "PNG")
        >>> img = check_image_bytes(buf.getvalue(), "image/png", max_bytes=10_000, max_pixels=100)
        >>> img.format, img.width, img.height
        ('png', 4, 3)
    """
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"upload too large: {len(data)} bytes, the limit is {max_bytes} bytes"
        )
    declared = _media_type(content_type)
    accepted = {t: f for f, (types, _) in FORMATS.items() for t in types}
    if declared not in accepted:
        raise UnsupportedMediaError(
            f"unsupported content type {declared or '(none)'!r}: expected one of "
            f"{sorted({types[0] for types, _ in FORMATS.values()})}"
        )
    if not data:
        raise UnreadableImageError("unreadable image: the upload is empty")
    sniffed = sniff_format(data)
    if sniffed is None:
        raise UnsupportedMediaError(
            f"the uploaded bytes are not a {'/'.join(FORMATS)} image (unknown file signature "
            f"{data[:8].hex()}), although declared as {declared!r}"
        )
    if sniffed != accepted[declared]:
        raise UnsupportedMediaError(
            f"content type {declared!r} does not match the uploaded bytes, which are {sniffed.upper()}"
        )
    width, height = _header_size(data, max_pixels)
    if width < 1 or height < 1:
        raise UnreadableImageError(f"unreadable image: header size {width} x {height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image too large: {width} x {height} = {width * height} pixels, the limit is "
            f"{max_pixels} pixels"
        )
    return CheckedImage(data=data, format=sniffed, width=width, height=height)
