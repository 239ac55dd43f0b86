"""``vlad``: RootSIFT local descriptors aggregated by VLAD, a baseline of the retrieval tables.

The VLAD maths and module are in :mod:`lookalike.descriptors.image.vlad`, which knows nothing of
keypoints; this module supplies what they need from the matching layer and registers the result:

- :func:`rootsift_front_end`: our local matching front end (:class:`~lookalike.matching.ImageMatcher`:
  DoG keypoints, our RootSIFT on pyramid patches, no geometry) as a VLAD front end;
- :func:`vlad`: the registered ``vlad`` descriptor, a :class:`~lookalike.descriptors.image.vlad.VLAD`
  with that front end (``lookalike.create("descriptor", "vlad:bundled")``);
- the codebook recipe: a k-means of RootSIFT descriptors of the bundled scikit-image *training* photos
  (:data:`lookalike.data.bundled.BUNDLED_PHOTOS` without the held-out ones; never evaluation data):
  :func:`fit_codebook` computes it deterministically and :func:`write_bundled_codebook` writes the
  shipped ``vlad:bundled`` file with the recipe in its metadata.

Convention:
    - An image without keypoints (flat, tiny) gives an all-zero row; so does a codeword block with
      no descriptor (it stays zero after intra-normalisation).
    - Not differentiable (keypoint detection is discrete; ``differentiable = False``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lookalike._registry import register
from lookalike.core.check import check_int
from lookalike.descriptors.image.vlad import (
    VLAD,
    VLAD_WEIGHTS,
    LocalDescriber,
    kmeans,
)

__all__ = [
    "RootSIFTFrontEnd",
    "fit_codebook",
    "local_descriptors",
    "rootsift_front_end",
    "training_photos",
    "vlad",
    "write_bundled_codebook",
]


class RootSIFTFrontEnd:
    """Describes an image with our DoG keypoints and RootSIFT: ``(M, 128)`` float32 rows on the CPU.

    Args:
        max_keypoints: keypoints per image (strongest first).
        max_size: longest image side keypoints are detected on.

    ``image``: anything :class:`~lookalike.matching.ImageMatcher` reads (paths, ``(H, W[, 3])``
    arrays, channels-first tensors in [0, 1]). The pipeline is built on the first call.
    """

    def __init__(self, max_keypoints: int = 1024, max_size: int = 640) -> None:
        self.max_keypoints = check_int(max_keypoints, "max_keypoints", 1)
        self.max_size = check_int(max_size, "max_size", 16)
        self._matcher: Any = None

    def __call__(self, image: Any) -> torch.Tensor:
        if self._matcher is None:
            from lookalike.matching.pipeline import ImageMatcher

            self._matcher = ImageMatcher(
                "rootsift",
                max_keypoints=self.max_keypoints,
                max_size=self.max_size,
                geometry="none",
                # the patch size the shipped codebook was fitted with (the sift default was 41 then)
                descriptor_options={"patch_size": VLAD_PATCH_SIZE},
            )
        return self._matcher.features(image).descriptors.float().cpu()


#: RootSIFT patch side of the front end: ``vlad:bundled``'s codebook was fitted on 41-pixel patches.
VLAD_PATCH_SIZE = 41


def rootsift_front_end(max_keypoints: int, max_size: int) -> LocalDescriber:
    """The :data:`~lookalike.descriptors.image.vlad.FrontEnd` of ``vlad``: a :class:`RootSIFTFrontEnd`."""
    return RootSIFTFrontEnd(max_keypoints, max_size)


@register("descriptor", "vlad", weights=VLAD_WEIGHTS)
def vlad(
    *,
    clusters: int = 64,
    max_keypoints: int = 1024,
    max_size: int = 640,
    size_range: Sequence[int] = (64, 8192),
    validate: bool = True,
) -> VLAD:
    """VLAD of RootSIFT over a ``clusters x 128`` codebook (``clusters * 128`` values).

    The keywords are :class:`~lookalike.descriptors.image.vlad.VLAD`'s; the front end is
    :func:`rootsift_front_end`. Without weights the codebook is random (meaningless): use
    ``vlad:bundled`` or a file written by :func:`write_bundled_codebook`.

    Example:
        >>> import lookalike, torch
        >>> model = lookalike.create("descriptor", "vlad:bundled")
        >>> model(torch.rand(1, 3, 96, 128)).shape
        torch.Size([1, 8192])
    """
    return VLAD(
        clusters=clusters,
        max_keypoints=max_keypoints,
        max_size=max_size,
        size_range=size_range,
        validate=validate,
        front_end=rootsift_front_end,
    )


# read by lookalike.cli._common.require_trained and lookalike.descriptors.export
vlad.needs_weights = VLAD.needs_weights  # type: ignore[attr-defined]
vlad.differentiable = VLAD.differentiable  # type: ignore[attr-defined]


def local_descriptors(
    images: Sequence[Any], *, max_keypoints: int = 1024, max_size: int = 640
) -> list[torch.Tensor]:
    """``(M_i, 128)`` float32 RootSIFT rows of each image (our DoG keypoints and RootSIFT).

    ``images``: anything :class:`~lookalike.matching.ImageMatcher` reads (paths, ``(H, W[, 3])``
    arrays, channels-first tensors in [0, 1]).
    """
    describe = RootSIFTFrontEnd(max_keypoints, max_size)
    return [describe(image) for image in images]


def training_photos() -> list[str]:
    """Names of the bundled photos the codebook is fitted on (held-out photos excluded)."""
    from lookalike.data.bundled import HELD_OUT_PHOTOS, list_bundled_photos

    return [n for n in list_bundled_photos() if n not in HELD_OUT_PHOTOS]


def fit_codebook(
    *,
    clusters: int = 64,
    photos: Sequence[str] | None = None,
    max_keypoints: int = 1024,
    max_size: int = 640,
    iterations: int = 100,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(clusters, 128)`` float32 k-means codebook of RootSIFT on bundled photos, and its recipe.

    Args:
        clusters: codewords.
        photos: bundled photo names (default :func:`training_photos`).
        max_keypoints, max_size: as :func:`vlad` (the same front end describes the photos).
        iterations, seed: of :func:`~lookalike.descriptors.image.vlad.kmeans`.

    Returns:
        The centres and the recipe (a JSON-ready dict of every argument and the descriptor count).
    """
    from lookalike.data.bundled import bundled_photos

    names = list(training_photos() if photos is None else photos)
    images = [p.rgb for p in bundled_photos(names)]
    local = torch.cat(local_descriptors(images, max_keypoints=max_keypoints, max_size=max_size))
    centers, _ = kmeans(local.double().numpy(), clusters, iterations=iterations, seed=seed)
    recipe = {
        "photos": names,
        "clusters": clusters,
        "max_keypoints": max_keypoints,
        "max_size": max_size,
        "iterations": iterations,
        "seed": seed,
        "descriptors": int(local.shape[0]),
        "local": "DoG keypoints + lookalike rootsift (ImageMatcher front end)",
        "function": "lookalike.matching.vlad.write_bundled_codebook",
    }
    return torch.from_numpy(centers).float(), recipe


def write_bundled_codebook(path: str | os.PathLike[str], **recipe: Any) -> Path:
    """Fit the codebook (:func:`fit_codebook` keywords) and write a ``vlad`` weights file.

    The shipped ``src/lookalike/weights/vlad_bundled.safetensors`` is
    ``write_bundled_codebook("src/lookalike/weights/vlad_bundled.safetensors")``; the recipe goes
    into the file's ``training`` metadata, the constructor keywords into ``kwargs``. (The shipped
    file's metadata names this function by its former home,
    ``lookalike.descriptors.image.vlad.write_bundled_codebook``.)
    """
    from lookalike.core.weights import save_weights

    centers, training = fit_codebook(**recipe)
    kwargs = {
        "clusters": training["clusters"],
        "max_keypoints": training["max_keypoints"],
        "max_size": training["max_size"],
    }
    model = VLAD(**kwargs).set_codebook(centers)
    return save_weights(
        model, path, kind="descriptor", name="vlad", kwargs=kwargs, training=training
    )
