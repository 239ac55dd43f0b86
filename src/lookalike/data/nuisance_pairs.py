"""Held-out matching pairs, one family per nuisance of the standard local-feature benchmarks.

The demo's pairs (:func:`~lookalike.eval.protocols.demo.demo_pairs`: a moderate and a strong homography)
are mild: the pipeline's ratio-tested matches are more than 90 % correct for every descriptor there, and
they do not rank descriptors the way the real sequences do. These pairs cover, one family each, the five
changes Mikolajczyk et al.'s affine sequences were shot to test ("A comparison of affine region
detectors", IJCV 2005: bark/boat, graf/wall, bikes/trees, ubc, leuven), rendered from the held-out
bundled photos (:data:`~lookalike.data.bundled.HELD_OUT_PHOTOS`, which no shipped model trains on):

- ``zoom``: zoom out by 2-2.9x with a 20-80 degree rotation (either sign);
- ``viewpoint``: strong perspective and anisotropic foreshortening (up to about 1.8:1);
- ``blur``: a mild homography, the second view blurred (Gaussian sigma 2-3.5 px);
- ``jpeg``: a mild homography, the second view JPEG-compressed at quality 5-12;
- ``light``: a mild homography, each view re-lit by
  :func:`~lookalike.data.illumination.random_illumination` at 1.5x its default strength.

One more family, ``wide`` (:data:`EXTREME_NUISANCES`, not drawn by default), stands for the extreme-view
pairs of EVD (Mishkin, Matas, Perdoch, "MODS", CVIU 2015): separate shots of a plane far beyond graf's 60
degrees. View 1 sees the photo at a grazing angle: one axis is foreshortened 2.9-5x more than the other
(absolute tilt 70-78 degrees), in a frame rotated by up to 45 degrees with strong perspective, re-lit at
the default strength (another shot) and anti-aliased along each axis by its own shrink
(:func:`render_view`).

Convention:
    - View 0 is the gray photo (longer side :data:`NUISANCE_MAX_SIDE`), view 1 its warp by the true ``H``
      (view-0 pixels -> view-1 pixels); both 8-bit, as a camera writes them.
    - A zoom-out is rendered as a camera would see it: the photo is blurred by
      ``0.6 * sqrt(1 / s^2 - 1)`` px (``s`` the homography's zoom at the centre) before warping, so the
      view is not aliased.
    - Ranges were fixed from the benchmarks' published descriptions, not from any score; no evaluation
      image is read.

:func:`nuisance_pairs` returns :class:`~lookalike.eval.protocols.demo.DemoPair` s (``strength`` holds
the family), so :class:`~lookalike.data.pipeline_pairs.MatchingValidation` scores them with the protocol
of ``lookalike evaluate matching``; :func:`write_nuisance_sequences` writes them as HPatches-style
sequences (one group per family), so ``lookalike evaluate matching --data DIR`` scores every descriptor
and baseline on them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.check import check_not_empty
from lookalike.core.errors import OptionError
from lookalike.data.bundled import HELD_OUT_PHOTOS, bundled_gray, bundled_rgb
from lookalike.data.illumination import random_illumination
from lookalike.data.images import quantize_u8, write_image
from lookalike.geometry import WarpRanges, homography_jacobian, random_homography, warp_image

__all__ = [
    "ALL_NUISANCES",
    "EXTREME_NUISANCES",
    "NUISANCES",
    "NUISANCE_MAX_SIDE",
    "NUISANCE_WARPS",
    "nuisance_pairs",
    "render_view",
    "render_zoomed",
    "write_nuisance_scenes",
    "write_nuisance_sequences",
]

#: Longer side of the photos (pixels) before warping.
NUISANCE_MAX_SIDE = 768

_MILD = WarpRanges(
    rotation=(math.radians(-10), math.radians(10)),
    scale=(0.85, 1.15),
    anisotropy=(0.9, 1.1),
    shear=(-0.05, 0.05),
    perspective=(-0.15, 0.15),
    translation=(-0.05, 0.05),
)
#: The homography ranges of each family (angles in radians); ``zoom``'s rotation sign is drawn apart.
NUISANCE_WARPS: dict[str, WarpRanges] = {
    "zoom": WarpRanges(
        rotation=(math.radians(20), math.radians(80)),
        scale=(0.35, 0.5),
        anisotropy=(0.95, 1.05),
        shear=(0.0, 0.0),
        perspective=(-0.1, 0.1),
        translation=(-0.03, 0.03),
    ),
    "viewpoint": WarpRanges(
        rotation=(math.radians(-10), math.radians(10)),
        scale=(0.8, 1.0),
        anisotropy=(0.55, 0.7),
        shear=(-0.3, 0.3),
        perspective=(-0.7, 0.7),
        translation=(-0.03, 0.03),
    ),
    "blur": _MILD,
    "jpeg": _MILD,
    "light": _MILD,
    "wide": WarpRanges(
        rotation=(math.radians(-45), math.radians(45)),
        scale=(0.45, 0.65),  # with the anisotropy: x shrinks to 0.2-0.4x, y keeps 0.8-1.5x
        anisotropy=(0.2, 0.35),
        shear=(-0.3, 0.3),
        perspective=(-0.7, 0.7),
        translation=(-0.05, 0.05),
    ),
}
#: The five families of the affine sequences, in the order :func:`nuisance_pairs` draws them by default.
NUISANCES: tuple[str, ...] = ("zoom", "viewpoint", "blur", "jpeg", "light")
#: Families beyond those sequences (EVD-like extreme views), drawn only when asked for.
EXTREME_NUISANCES: tuple[str, ...] = ("wide",)
#: Every family; a family's draws depend on its place here, so new ones go at the end.
ALL_NUISANCES: tuple[str, ...] = NUISANCES + EXTREME_NUISANCES

_BLUR_SIGMA = (2.0, 3.5)  # Gaussian blur of view 1, pixels
_JPEG_QUALITY = (5, 12)  # JPEG quality of view 1, inclusive
_LIGHT_STRENGTH = 1.5  # random_illumination strength of each view
_AA = 0.6  # anti-aliasing blur (source pixels) per unit of sqrt(1 / shrink^2 - 1), as render_zoomed
_AA_FLOOR = 0.5  # least blur of render_view along an axis (pixels): the kernel is never a line


def render_zoomed(image: np.ndarray, H: Any) -> np.ndarray:
    """``image`` warped by ``H``, blurred first by the zoom-out at the image centre (no aliasing).

    A view that shrinks the photo by ``s < 1`` is blurred by ``0.6 * sqrt(1 / s^2 - 1)`` pixels before
    the warp (``s`` = the square root of the Jacobian determinant of ``H`` at the centre); other views
    are warped as they are.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64), np.float32); img[::2] = 1.0  # one-pixel stripes alias when shrunk
        >>> half = np.diag([0.5, 0.5, 1.0])
        >>> out = render_zoomed(img, half)[:28, :28]
        >>> bool(abs(float(out.mean()) - 0.5) < 0.05 and float(out.std()) < 0.1)
        True
    """
    import cv2

    H = np.asarray(H, dtype=np.float64)
    h, w = image.shape[:2]
    jac = homography_jacobian(H, np.array([[w / 2.0, h / 2.0]]))[0]
    s = math.sqrt(abs(float(np.linalg.det(jac))))
    if 0.0 < s < 0.95:
        sigma = 0.6 * math.sqrt(1.0 / s**2 - 1.0)
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return warp_image(image, H)


def render_view(image: np.ndarray, H: Any) -> np.ndarray:
    """``image`` warped by ``H``, blurred first along each axis by that axis's shrink at the centre.

    :func:`render_zoomed` blurs by the mean zoom, which leaves a strongly foreshortened view aliased
    along its short axis. Here the source footprint of one view pixel at the image centre,
    ``(J^T J)^-1`` for the Jacobian ``J`` of ``H``, sets an anisotropic Gaussian: along each of its
    axes, ``0.6 * sqrt(1 / s^2 - 1)`` pixels for that axis's shrink ``s`` (at least 0.5 px).

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64), np.float32); img[:, ::2] = 1.0  # one-pixel columns
        >>> squeeze = np.diag([0.25, 1.0, 1.0])  # x shrinks 4x, y stays
        >>> out = render_view(img, squeeze)[8:56, 2:14]
        >>> bool(abs(float(out.mean()) - 0.5) < 0.05 and float(out.std()) < 0.05)
        True
    """
    import cv2

    H = np.asarray(H, dtype=np.float64)
    h, w = image.shape[:2]
    jac = homography_jacobian(H, np.array([[w / 2.0, h / 2.0]]))[0]
    values, vectors = np.linalg.eigh(np.linalg.inv(jac.T @ jac))  # 1 / s^2 along each axis
    var = np.maximum(_AA**2 * (values - 1.0), _AA_FLOOR**2)
    cov_inv = (vectors / var) @ vectors.T
    r = math.ceil(3.0 * math.sqrt(float(var.max())))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    kernel = np.exp(-0.5 * np.einsum("ni,ij,nj->n", d, cov_inv, d)).reshape(xx.shape)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    blurred = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return warp_image(blurred, H)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8 gray or RGB) after a JPEG round trip at ``quality``."""
    import cv2

    if image.ndim == 2:
        _, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV's YCbCr assumes BGR order
    _, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _pair(image: np.ndarray, family: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(view0 uint8, view1 uint8, H)`` of one family, gray ``(H, W)`` or RGB ``(H, W, 3)``."""
    import cv2

    ranges = NUISANCE_WARPS[family]
    if family == "zoom" and rng.random() < 0.5:  # rotate either way
        lo, hi = ranges.rotation
        ranges = dataclasses.replace(ranges, rotation=(-hi, -lo))
    H = random_homography(rng, image.shape[:2], ranges)
    v0, v1 = image, (render_view if family == "wide" else render_zoomed)(image, H)
    if family == "wide":
        v1 = random_illumination(v1, rng, None)
    elif family == "blur":
        sigma = float(rng.uniform(*_BLUR_SIGMA))
        v1 = cv2.GaussianBlur(v1, (0, 0), sigmaX=sigma, sigmaY=sigma)
    elif family == "light":
        v0 = random_illumination(v0, rng, None, strength=_LIGHT_STRENGTH)
        v1 = random_illumination(v1, rng, None, strength=_LIGHT_STRENGTH)
    u0, u1 = quantize_u8(v0), quantize_u8(v1)
    if family == "jpeg":
        u1 = _jpeg(u1, int(rng.integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1)))
    return u0, u1, H


def nuisance_pairs(
    *,
    seed: int = 0,
    photos: Sequence[str] = HELD_OUT_PHOTOS,
    nuisances: Sequence[str] = NUISANCES,
    color: bool = False,
) -> list[Any]:
    """One pair per photo and nuisance family (module Convention).

    Each pair is drawn from ``seed``, the photo's name and the family only, so asking for fewer photos or
    families gives the same pairs for those asked; in colour the views get the same homographies and
    nuisance draws as in gray.

    Args:
        seed: the draw (pairs of different seeds are independent).
        photos: bundled photo names (default: the held-out ones; one name may be given as a string).
        nuisances: families among :data:`ALL_NUISANCES` (default: the five of :data:`NUISANCES`).
        color: ``(H, W, 3)`` RGB views instead of gray ones.

    Returns:
        :class:`~lookalike.eval.protocols.demo.DemoPair` s named ``"<photo> <family>"``, photo-major.

    Raises:
        OptionError: an unknown family; EmptyInputError: no photo or no family.

    Example:
        >>> [p.name for p in nuisance_pairs(photos=("coffee",), nuisances=("zoom", "jpeg"))]
        ['coffee zoom', 'coffee jpeg']
    """
    from lookalike.eval.protocols.demo import DemoPair

    photos = [photos] if isinstance(photos, str) else list(photos)
    nuisances = [nuisances] if isinstance(nuisances, str) else list(nuisances)
    check_not_empty(photos, "photos")
    check_not_empty(nuisances, "nuisances")
    for name in nuisances:
        if name not in NUISANCE_WARPS:
            raise OptionError(
                f"nuisances: expected names among {list(ALL_NUISANCES)}, got {name!r}"
            )
    if not isinstance(color, bool):
        raise OptionError(f"color: expected True or False, got {color!r}")
    load = bundled_rgb if color else bundled_gray
    out = []
    for photo in photos:
        image = load(photo, NUISANCE_MAX_SIDE)
        key = zlib.crc32(photo.encode())  # a pair does not depend on the other photos asked for
        for name in nuisances:
            rng = np.random.default_rng([int(seed), key, ALL_NUISANCES.index(name), 22])
            u0, u1, H = _pair(image, name, rng)
            out.append(DemoPair(f"{photo} {name}", photo, name, u0, u1, H))
    return out


def write_nuisance_sequences(
    root: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    photos: Sequence[str] = HELD_OUT_PHOTOS,
    nuisances: Sequence[str] = NUISANCES,
) -> list[Path]:
    """Write the pairs of ``seeds`` as HPatches-layout sequences below ``root``; return their folders.

    Each pair becomes ``root/nuisance-<family>/<photo>-<seed>/`` with ``1.png``, ``2.png`` and ``H_1_2``
    (the true homography), so :func:`~lookalike.data.sequences.find_sequences` reads them and the
    matching report groups them by family (``nuisance-zoom``, ...). Existing files are overwritten.

    Example:
        >>> import tempfile
        >>> from lookalike.data.sequences import find_sequences, sequence_group
        >>> root = tempfile.mkdtemp()
        >>> _ = write_nuisance_sequences(root, seeds=(0,), photos=("coffee",), nuisances=("blur",))
        >>> [(s.name, sequence_group(s.name), len(s.images)) for s in find_sequences(root)]
        [('nuisance-blur/coffee-0', 'nuisance-blur', 2)]
    """

    seeds = [int(s) for s in seeds]
    check_not_empty(seeds, "seeds")
    folders = []
    for seed in seeds:
        for pair in nuisance_pairs(seed=seed, photos=photos, nuisances=nuisances):
            folder = Path(root) / f"nuisance-{pair.strength}" / f"{pair.photo}-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            for k, image in enumerate((pair.image0, pair.image1), start=1):
                write_image(folder / f"{k}.png", image)
            np.savetxt(folder / "H_1_2", np.asarray(pair.H, dtype=np.float64), fmt="%.12g")
            folders.append(folder)
    return folders


def write_nuisance_scenes(
    root: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1),
    photos: Sequence[str] = HELD_OUT_PHOTOS,
    nuisances: Sequence[str] = ALL_NUISANCES,
) -> list[Path]:
    """Write one colour HPatches-layout sequence per photo: a retrieval set of distinct scenes.

    ``root/<photo>/1.png`` is the RGB photo (longer side :data:`NUISANCE_MAX_SIDE`); ``2.png``,
    ``3.png``... are the second views of its colour pairs (:func:`nuisance_pairs` with ``color=True``),
    seed-major then family, each with its ``H_1_<k>``. ``lookalike evaluate retrieval --benchmark
    scenes --data root`` then scores whole-photo retrieval under the nuisances: query one view,
    retrieve the other views of its photo. The default families are all six, ``wide`` included, since
    the real scenes set it stands in for holds EVD's extreme-view pairs. Existing files are overwritten.

    Example:
        >>> import tempfile
        >>> from lookalike.data.sequences import find_sequences
        >>> from lookalike.eval.protocols.retrieval_benchmarks import scene_key
        >>> root = tempfile.mkdtemp()
        >>> _ = write_nuisance_scenes(
        ...     root, seeds=(0,), photos=("coffee", "chelsea"), nuisances=("blur", "jpeg")
        ... )
        >>> [(scene_key(s.name), len(s.images)) for s in find_sequences(root)]
        [('chelsea', 3), ('coffee', 3)]
    """

    seeds = [int(s) for s in seeds]
    check_not_empty(seeds, "seeds")
    photos = [photos] if isinstance(photos, str) else list(photos)
    check_not_empty(photos, "photos")
    folders = []
    for photo in photos:
        folder = Path(root) / photo
        folder.mkdir(parents=True, exist_ok=True)
        views = [quantize_u8(bundled_rgb(photo, NUISANCE_MAX_SIDE))]
        for seed in seeds:
            for pair in nuisance_pairs(seed=seed, photos=(photo,), nuisances=nuisances, color=True):
                views.append(pair.image1)
                np.savetxt(
                    folder / f"H_1_{len(views)}", np.asarray(pair.H, np.float64), fmt="%.12g"
                )
        for k, image in enumerate(views, start=1):
            write_image(folder / f"{k}.png", image)
        folders.append(folder)
    return folders
