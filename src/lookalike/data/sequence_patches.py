"""HPatches-style patches cut from any homography sequences (dataset ``sequence_patches``). Evaluation only.

For a sequence (reference image first, ground-truth homographies ``H_0k``,
:class:`~lookalike.data.sequences.HomographySequence`):

1. detect DoG keypoints in the reference (OpenCV SIFT detector, ``budget`` keypoints, overlapping regions
   suppressed, :func:`~lookalike.data.synth.detect_lafs`); the patch half-width is ``mr_size`` (5, as
   HPatches' "scale magnified by a factor of 5") times the detected sigma, oriented by Lowe's dominant
   gradient;
2. for every target image ``k`` and difficulty, jitter the frame (:data:`HPATCHES_JITTER`) and map it into
   image ``k`` through the local affine approximation of ``H_0k`` (:func:`~lookalike.geometry.map_lafs`);
3. keep the keypoints whose patch square is fully inside the reference and inside every target image, for
   every difficulty;
4. cut ``patch_size`` (65) patches: ``ref`` from the reference without jitter, ``e<k>``, ``h<k>``, ``t<k>``
   from target ``k``.

The result is a :class:`~lookalike.data.hpatches_patches.PatchSequence`, the input of
:mod:`lookalike.eval.protocols.hpatches`; patches are resized to the descriptor's size when evaluated.

Jitter (HPatches paper, Balntas et al. CVPR 2017, Sec. 3 "Patches"): before projection the frame is
transformed by a rotation ``θ``, an anisotropic scaling ``diag(s sqrt(a), s / sqrt(a))`` and a translation
``(m, n)`` in units of the region radius, with ``θ ~ U[-θ_i, θ_i]``, ``s ~ U[1 - s_i, 1 + s_i]``,
``log2 a ~ U[-a_i, a_i]``, ``m, n ~ U[-t_i, t_i]``:

========  ========  =====  =====  =====
setting   θ_i       s_i    a_i    t_i
========  ========  =====  =====  =====
easy      10°       0.1    0.2    0.15
hard      20°       0.2    0.4    0.30
tough     30°       0.3    0.6    0.45
========  ========  =====  =====  =====

These give a median ellipse overlap with the unjittered region of about 0.83 (easy) and 0.70 (hard), close to
the ~0.85 and ~0.72 the HPatches release documents (tested in ``tests/data/test_sequence_patches.py``).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.data import data_root
from lookalike.core.errors import DataNotFoundError, OptionError
from lookalike.data.hpatches_patches import DIFFICULTIES, PatchSequence
from lookalike.data.images import quantize_u8
from lookalike.data.sequences import HomographySequence, find_sequences
from lookalike.data.synth import (
    HPATCHES_JITTER,
    Jitter,
    cut_patches,
    detect_lafs,
    jitter_lafs,
    lafs_inside,
    random_jitter,
)
from lookalike.geometry import map_lafs

__all__ = [
    "HPATCHES_JITTER",
    "Jitter",
    "SequencePatches",
    "extract_sequence_patches",
    "jitter_lafs",
    "random_jitter",
]

logger = logging.getLogger(__name__)


def _gray(seq: HomographySequence, i: int) -> np.ndarray:
    image = np.asarray(seq.load(i, gray=True))
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    return image / 255.0 if image.max() > 1.5 else image


def extract_sequence_patches(
    seq: HomographySequence,
    *,
    budget: int = 1000,
    patch_size: int = 65,
    mr_size: float = 5.0,
    max_overlap: float = 0.5,
    difficulties: str = "eht",
    seed: int = 0,
) -> PatchSequence:
    """Cut HPatches-style patches from one homography sequence.

    Args:
        seq: the sequence (reference first).
        budget: SIFT keypoints detected in the reference before suppression and visibility checks.
        patch_size: patch side (65 as HPatches).
        mr_size: patch half-width in units of the keypoint sigma.
        max_overlap: keypoints overlapping a stronger one by more than this are dropped.
        difficulties: letters among ``"eht"``.
        seed: jitter seed, combined with the sequence name (so a sequence's patches do not depend on the others).

    Returns:
        A :class:`PatchSequence` named ``seq.name`` with targets ``"<d><k>"`` for the difficulties and target
        images ``k = 1 .. len(seq) - 1``; it may hold 0 patches.
    """
    check_positive(budget, "budget")
    check_positive(patch_size, "patch_size")
    if not difficulties or any(d not in DIFFICULTIES for d in difficulties):
        raise OptionError(f"difficulties: expected letters among 'eht', got {difficulties!r}")
    rng = np.random.default_rng([seed, zlib.crc32(seq.name.encode())])
    ref = _gray(seq, 0)
    lafs = detect_lafs(ref, budget=budget, mr_size=mr_size, max_overlap=max_overlap)
    valid = lafs_inside(lafs, ref.shape, border=1.0)
    images = [_gray(seq, k) for k in range(1, len(seq))]
    views: dict[str, np.ndarray] = {}
    for d in difficulties:
        for k, (H, image) in enumerate(zip(seq.homographies, images), start=1):
            moved = map_lafs(
                H, jitter_lafs(lafs, random_jitter(rng, len(lafs), HPATCHES_JITTER[d]))
            )
            valid &= lafs_inside(moved, image.shape, border=1.0)
            views[f"{d}{k}"] = moved
    index = np.flatnonzero(valid)

    def to_u8(image: np.ndarray, frames: np.ndarray) -> np.ndarray:
        patches = cut_patches(image, frames[index], patch_size)[:, 0].numpy()
        return quantize_u8(patches)

    targets = {key: to_u8(images[int(key[1:]) - 1], frames) for key, frames in views.items()}
    return PatchSequence(seq.name, to_u8(ref, lafs), targets, index.astype(np.int64))


@register("dataset", "sequence_patches")
class SequencePatches(Sequence[PatchSequence]):
    """HPatches-style patch sets from every homography sequence below ``root`` (cut lazily, cached).

    Args:
        root: folder searched by :func:`~lookalike.data.sequences.find_sequences` (default: the data root).
        names: keep only sequences whose name contains one of these strings.
        min_patches: sequences with fewer usable patches are skipped (logged).
        **options: passed to :func:`extract_sequence_patches` (``budget``, ``patch_size``, ``seed``, ...).

    Example:
        >>> import lookalike, pytest
        >>> with pytest.raises(lookalike.core.errors.DataNotFoundError):
        ...     lookalike.create("dataset", "sequence_patches", root="/nonexistent")
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        names: Sequence[str] | None = None,
        min_patches: int = 2,
        **options: object,
    ) -> None:
        sequences = find_sequences(root if root is not None else data_root())
        if names is not None:
            sequences = [s for s in sequences if any(n in s.name for n in names)]
        if not sequences:
            raise DataNotFoundError(f"no homography sequence found below {root or data_root()}")
        self.sequences = sequences
        self.min_patches = int(min_patches)
        self.options = options
        self._sets: list[PatchSequence] | None = None

    def _build(self) -> list[PatchSequence]:
        if self._sets is None:
            sets = []
            for seq in self.sequences:
                patches = extract_sequence_patches(seq, **self.options)  # type: ignore[arg-type]
                if len(patches) < self.min_patches:
                    logger.warning("%s: %d usable patches, skipped", seq.name, len(patches))
                    continue
                sets.append(patches)
            self._sets = sets
        return self._sets

    def __len__(self) -> int:
        return len(self._build())

    def __getitem__(self, i: int) -> PatchSequence:  # type: ignore[override]
        return self._build()[i]

    def __iter__(self) -> Iterator[PatchSequence]:
        return iter(self._build())
