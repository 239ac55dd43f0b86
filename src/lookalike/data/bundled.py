"""Real photos shipped inside scikit-image: our embedded training and demo data.

Only scikit-image's bundled *photographs* are listed (no synthetic images, no files that need a download).
scikit-learn's and matplotlib's sample photos are deliberately not used: they are kept for held-out checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from lookalike.core.check import check_option

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUNDLED_PHOTOS",
    "HELD_OUT_PHOTOS",
    "Photo",
    "bundled_gray",
    "bundled_photos",
    "bundled_rgb",
    "list_bundled_photos",
    "stereo_pair",
]

# name -> (skimage.data function, what it shows). ``stereo_motorcycle`` is a stereo pair: its left
# view is listed here, the pair with its disparity map comes from :func:`stereo_pair`.
BUNDLED_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut", "portrait of astronaut Eileen Collins"),
    "brick": ("brick", "brick wall texture"),
    "camera": ("camera", "cameraman on a lawn"),
    "chelsea": ("chelsea", "a cat"),
    "clock": ("clock", "motion-blurred clock"),
    "coffee": ("coffee", "cup of coffee on a table"),
    "coins": ("coins", "Greek coins"),
    "grass": ("grass", "grass texture"),
    "gravel": ("gravel", "gravel texture"),
    "hubble_deep_field": ("hubble_deep_field", "Hubble deep field galaxies"),
    "immunohistochemistry": ("immunohistochemistry", "stained tissue micrograph"),
    "moon": ("moon", "surface of the moon"),
    "page": ("page", "scanned page of text"),
    "retina": ("retina", "retina fundus photograph"),
    "rocket": ("rocket", "rocket on its launch pad"),
    "text": ("text", "photographed text on a wall"),
    "motorcycle_left": ("stereo_motorcycle", "left view of the Middlebury motorcycle stereo pair"),
}

#: Bundled photos no shipped model trains on (a cat, an indoor object scene, a texture): the training
#: recipes validate on them and ``lookalike demo`` scores only them.
HELD_OUT_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "gravel")


@dataclass(frozen=True)
class Photo:
    """A bundled photo.

    Attributes:
        name: key in :data:`BUNDLED_PHOTOS`.
        rgb: ``(H, W, 3)`` uint8 array (grayscale photos are replicated to 3 channels).
        description: what the photo shows.
    """

    name: str
    rgb: np.ndarray = field(repr=False)
    description: str = ""

    @cached_property
    def gray_array(self) -> np.ndarray:
        """``(H, W)`` float32 luminance in [0, 1] (ITU-R 601 weights, as OpenCV)."""
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (self.rgb.astype(np.float32) @ weights) / 255.0

    @property
    def gray(self) -> torch.Tensor:
        """``(1, 1, H, W)`` float32 tensor in [0, 1]."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.gray_array))[None, None]


def list_bundled_photos() -> list[str]:
    """Names of the bundled photos.

    Example:
        >>> "astronaut" in list_bundled_photos()
        True
    """
    return list(BUNDLED_PHOTOS)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image.astype(np.uint8, copy=False))


def _load(name: str) -> Photo:
    import skimage.data

    func, description = BUNDLED_PHOTOS[name]
    image = getattr(skimage.data, func)()
    if isinstance(image, tuple):  # stereo pair: (left, right, disparity)
        image = image[0]
    return Photo(name=name, rgb=_to_rgb(image), description=description)


def bundled_photos(names: list[str] | None = None) -> list[Photo]:
    """Load bundled photos (all of them by default).

    Args:
        names: subset of :func:`list_bundled_photos`, in the order wanted.

    Returns:
        One :class:`Photo` per name.

    Raises:
        OptionError: an unknown name.

    Example:
        >>> photo = bundled_photos(["camera"])[0]
        >>> photo.rgb.shape, photo.rgb.dtype.name, tuple(photo.gray.shape)
        ((512, 512, 3), 'uint8', (1, 1, 512, 512))
    """
    chosen = list_bundled_photos() if names is None else list(names)
    for name in chosen:
        check_option(name, BUNDLED_PHOTOS, "photo name")
    return [_load(name) for name in chosen]


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` shrunk (area averaging) so that its longer side is at most ``max_side``, float32."""
    from lookalike.matching.resize import shrink_image

    return np.ascontiguousarray(shrink_image(image, max_side)[0], dtype=np.float32)


def bundled_gray(name: str, max_side: int) -> np.ndarray:
    """``(H, W)`` float32 gray bundled photo in [0, 1], shrunk (area averaging) to ``max_side``.

    Example:
        >>> bundled_gray("camera", 256).shape, bundled_gray("camera", 1024).shape
        ((256, 256), (512, 512))
    """
    return _shrink(bundled_photos([name])[0].gray_array, max_side)


def bundled_rgb(name: str, max_side: int) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB bundled photo in [0, 1], shrunk (area averaging) to ``max_side``.

    Gray photos come with three equal channels.

    Example:
        >>> rgb = bundled_rgb("coffee", 300)
        >>> rgb.shape, rgb.dtype.name, bool(rgb.max() <= 1.0)
        ((200, 300, 3), 'float32', True)
    """
    return _shrink(bundled_photos([name])[0].rgb.astype(np.float32) / 255.0, max_side)


def stereo_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Middlebury motorcycle stereo pair bundled with scikit-image.

    Returns:
        ``(left, right)`` as ``(H, W, 3)`` uint8 and the ``(H, W)`` float32 disparity of the left view
        (a left pixel ``(x, y)`` shows the same point as right pixel ``(x - d, y)``; non-finite where
        unknown).

    Example:
        >>> left, right, disparity = stereo_pair()
        >>> left.shape == right.shape and disparity.shape == left.shape[:2]
        True
    """
    import skimage.data

    left, right, disparity = skimage.data.stereo_motorcycle()
    return _to_rgb(left), _to_rgb(right), np.asarray(disparity, dtype=np.float32)
