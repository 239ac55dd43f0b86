"""Image input/output: read any common image file or array into the layouts the pipeline uses.

Every entry point turns its input into one of two canonical forms:

- ``gray``: ``(H, W)`` uint8, luminance with ITU-R 601 weights (as OpenCV's ``cvtColor``);
- ``rgb``: ``(H, W, 3)`` uint8 in R, G, B order.

Convention:
    - Accepted arrays: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) and ``(H, W, 4)`` (RGBA; the alpha
      channel is dropped, not composited). Files are read with OpenCV, so their channels arrive as
      BGR(A) and are reordered here.
    - Accepted dtypes: uint8 as is; uint16 (16-bit PNG/TIFF/PGM) scaled by ``255 / 65535``; bool as
      0/255; floating point read as [0, 1] intensities, clipped, non-finite values become 0.
    - Torch tensors are accepted as ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` with C in {1, 3, 4}
      (channels first, as torchvision/kornia), float in [0, 1] or uint8.
    - A missing file raises :class:`~lookalike.core.errors.DataNotFoundError`; a folder, an empty,
      truncated or non-image file raises :class:`ImageError`; a zero-sized array raises
      :class:`ImageError`.
    - Decompression bombs: a file is refused *before decoding* when its header announces more than
      :func:`max_image_pixels` pixels (:data:`MAX_IMAGE_PIXELS`, 200 megapixels, e.g. 14000 x 14000;
      the environment variable ``LOOKALIKE_MAX_IMAGE_PIXELS`` overrides it, ``0`` disables the
      check). The header is read with Pillow; a format Pillow cannot read is decoded by OpenCV (whose
      own limit is 2^30 pixels) and checked after decoding.
    - :func:`write_image` writes a temporary file next to the target and renames it: a failed write
      leaves nothing behind, and the target folder must exist (nothing is created).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.errors import DataNotFoundError, LookalikeError

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageError",
    "ImageLike",
    "image_size",
    "load_image",
    "max_image_pixels",
    "quantize_u8",
    "read_image",
    "to_gray",
    "to_rgb",
    "write_image",
]

#: Anything :func:`load_image` accepts: a path, a numpy array or a torch tensor.
ImageLike = Any


#: Largest image, in pixels, that :func:`read_image` decodes (see the module Convention).
MAX_IMAGE_PIXELS = 200_000_000
_MAX_PIXELS_ENV = "LOOKALIKE_MAX_IMAGE_PIXELS"
_BLOCK_PIXELS = 1 << 22  # pixels per block of the colour-to-gray conversion


class ImageError(LookalikeError):
    """An image file cannot be decoded, or an array does not have an image layout."""


def max_image_pixels() -> int:
    """The pixel limit in force: ``$LOOKALIKE_MAX_IMAGE_PIXELS`` if set, else :data:`MAX_IMAGE_PIXELS`.

    ``0`` means no limit.

    Raises:
        ImageError: the environment variable is not a non-negative integer.
    """
    raw = os.environ.get(_MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise ImageError(f"{_MAX_PIXELS_ENV}: expected a non-negative integer, got {raw!r}")
    return value


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(height, width)`` from a file's header without decoding it, or ``None`` if Pillow can't tell."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return None
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # unknown or broken header: OpenCV decides
        return None
    return int(height), int(width)


def _check_pixels(file: Path, height: int, width: int) -> None:
    limit = max_image_pixels()
    if limit and height * width > limit:
        raise ImageError(
            f"cannot read image {file}: {width} x {height} = {height * width / 1e6:.0f} megapixels is "
            f"above the limit of {limit / 1e6:.0f} megapixels (a decompression bomb?); set "
            f"{_MAX_PIXELS_ENV} to a larger number of pixels, or 0 for no limit, to read it anyway"
        )


def quantize_u8(image: np.ndarray) -> np.ndarray:
    """Float intensities in [0, 1] to uint8 as a camera writes them: clip, scale, round half up.

    (Unlike :func:`read_image`'s conversion of float inputs, which rounds half to even.)

    Example:
        >>> quantize_u8(np.array([-0.1, 0.5, 1.2], dtype=np.float32)).tolist()
        [0, 128, 255]
    """
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _rgb_weights() -> np.ndarray:
    return np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Any supported dtype to uint8 (see the module Convention)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return np.clip(array, 0, 255).astype(np.uint8)
    raise ImageError(f"{name}: unsupported image dtype {array.dtype}")


def _as_hwc(image: Any, name: str) -> np.ndarray:
    """Array or tensor to a numpy ``(H, W, C)`` array (C in 1, 3, 4), dtype unchanged."""
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch tensor, channels first
        array = image.detach().cpu().numpy()
        if array.ndim == 4:
            if array.shape[0] != 1:
                raise ImageError(
                    f"{name}: expected a single image, got a batch of {array.shape[0]}"
                )
            array = array[0]
        if array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
    else:
        array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(
            f"{name}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{name}: the image is empty (shape {array.shape})")
    return array


def to_gray(image: Any, *, name: str = "image") -> np.ndarray:
    """Convert an array or tensor to ``(H, W)`` uint8 luminance.

    Args:
        image: ``(H, W)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA array of uint8, uint16, bool or
            float in [0, 1], or a channels-first tensor (see the module Convention).
        name: what to call the input in error messages.

    Returns:
        ``(H, W)`` uint8 array (a view of the input where no conversion is needed).

    Raises:
        ImageError: not an image layout, or empty.

    Example:
        >>> import numpy as np
        >>> to_gray(np.full((2, 3, 4), 65535, dtype=np.uint16))
        array([[255, 255, 255],
               [255, 255, 255]], dtype=uint8)
    """
    array = _as_hwc(image, name)
    if array.shape[2] == 1:
        return np.ascontiguousarray(_to_uint8(array[:, :, 0], name))
    rgb = array[:, :, :3]
    weights = _rgb_weights().astype(np.float32)
    out = np.empty(rgb.shape[:2], dtype=np.uint8)
    rows = max(1, _BLOCK_PIXELS // rgb.shape[1])  # bounded float32 temporaries for huge images
    for start in range(0, rgb.shape[0], rows):
        block = _to_uint8(rgb[start : start + rows], name).astype(np.float32)
        out[start : start + rows] = np.round(block @ weights).clip(0, 255).astype(np.uint8)
    return out


def to_rgb(image: Any, *, name: str = "image") -> np.ndarray:
    """Convert an array or tensor to ``(H, W, 3)`` uint8 RGB (gray is replicated, alpha dropped).

    Example:
        >>> import numpy as np
        >>> to_rgb(np.zeros((4, 5), dtype=np.float32)).shape
        (4, 5, 3)
    """
    array = _as_hwc(image, name)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(_to_uint8(array[:, :, :3], name))


def read_image(path: str | os.PathLike[str], *, gray: bool = True) -> np.ndarray:
    """Read an image file (PNG, JPEG, PPM/PGM, TIFF, BMP, WebP... whatever OpenCV decodes).

    Args:
        path: the file.
        gray: return ``(H, W)`` uint8 luminance; otherwise ``(H, W, 3)`` uint8 RGB.

    Returns:
        The image as uint8 (16-bit files are scaled to 8 bits, alpha is dropped).

    Raises:
        DataNotFoundError: the file does not exist.
        ImageError: a folder, an empty file, one that cannot be decoded, or one larger than
            :func:`max_image_pixels` (checked from the header, before decoding).
    """
    import cv2

    file = Path(path).expanduser()
    if file.is_dir():
        raise ImageError(f"cannot read image {file}: is a folder, expected an image file")
    if not file.is_file():
        raise DataNotFoundError(f"image file not found: {file}")
    if file.stat().st_size == 0:
        raise ImageError(f"cannot read image {file}: the file is empty")
    size = image_size(file)
    if size is not None:
        _check_pixels(file, *size)
    data = np.fromfile(file, dtype=np.uint8)
    try:
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit
        raise ImageError(f"cannot read image {file}: {str(exc).strip().splitlines()[-1]}") from exc
    if decoded is None or decoded.size == 0:
        raise ImageError(
            f"cannot read image {file}: not an image file or a format OpenCV can't decode"
        )
    if size is None:
        _check_pixels(file, *decoded.shape[:2])
    if decoded.ndim == 3 and decoded.shape[2] >= 3:  # BGR(A) -> RGB(A)
        decoded = decoded[:, :, [2, 1, 0, *range(3, decoded.shape[2])]]
    return to_gray(decoded, name=str(file)) if gray else to_rgb(decoded, name=str(file))


def load_image(image: Any, *, gray: bool = True, name: str = "image") -> np.ndarray:
    """Read a path, or convert an array/tensor: the single door of the matching pipeline.

    Args:
        image: a file path (``str`` or ``Path``), a numpy array or a torch tensor.
        gray: ``(H, W)`` uint8 if True, else ``(H, W, 3)`` uint8 RGB.
        name: what to call the input in error messages.

    Example:
        >>> import numpy as np
        >>> load_image(np.ones((3, 3, 3), dtype=np.uint8) * 10).tolist()[0]
        [10, 10, 10]
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, gray=gray)
    if image is None:
        raise ImageError(f"{name}: expected a path, an array or a tensor, got None")
    return to_gray(image, name=name) if gray else to_rgb(image, name=name)


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a ``(H, W)`` gray or ``(H, W, 3)`` RGB uint8 image; the suffix picks the format.

    The image goes to a temporary file in the same folder, renamed on success (module Convention).

    Raises:
        DataNotFoundError: the folder does not exist (it is not created).
        ImageError: OpenCV cannot write this suffix, or the write fails (nothing is left behind).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> write_image(f"{folder}/a.png", np.zeros((2, 3), np.uint8)).name
        'a.png'
    """
    import tempfile

    import cv2

    file = Path(path).expanduser()
    folder = file.parent if str(file.parent) else Path(".")
    if not folder.is_dir():
        raise DataNotFoundError(f"cannot write image {file}: folder {str(folder)!r} does not exist")
    if not cv2.haveImageWriter(str(file)):
        raise ImageError(f"cannot write image {file}: OpenCV has no writer for {file.suffix!r}")
    colour = np.asarray(image).ndim == 3 or file.suffix.lower() == ".ppm"  # PPM is colour only
    array = to_rgb(image) if colour else to_gray(image)
    if array.ndim == 3:
        array = array[:, :, ::-1]
    handle, temp = tempfile.mkstemp(prefix=f".{file.stem}-", suffix=file.suffix, dir=folder)
    os.close(handle)
    try:
        try:
            ok = cv2.imwrite(temp, np.ascontiguousarray(array))
        except cv2.error as exc:  # OpenCV 5 raises where OpenCV 4 returned False
            raise ImageError(f"cannot write image {file}: {str(exc).strip()}") from exc
        if not ok:
            raise ImageError(f"cannot write image {file}: OpenCV could not write {file.suffix!r}")
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, file)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
