"""Endless, seeded training patches from synthetic views of the bundled photos (dataset ``bundled_pairs``).

Each step draws a bundled photo, ``n_views`` random homographies (:class:`~lookalike.geometry.WarpRanges`)
and photometric changes (:class:`~lookalike.data.synth.PhotometricRanges`), warps the photo into every view,
and cuts the same keypoints out of every view. A keypoint is one "3D point": its label is shared by its views.

Keypoints are detected once per photo (OpenCV SIFT detector, DoG), made unique by a non-maximum suppression
on the overlap of their regions, and cached. A keypoint's local affine frame (LAF) ``[A | c]`` in a view is
the source LAF mapped through the local affine approximation of the homography (its Jacobian at ``c``, see
:func:`~lookalike.geometry.map_lafs`), so corresponding patches cover the same surface; by default every
view's frame is first perturbed by the HPatches "easy" jitter (detector noise), otherwise the positives would
be identical up to resampling and photometry. Patches are sampled by
:func:`~lookalike.data.synth.cut_patches` (OpenCV pyramid + ``warpAffine``, the sampling convention of
:func:`kornia.feature.extract_patches_from_pyramid`, about ten times faster on CPU).

Throughput (one CPU thread on a shared 2-core machine, 32 x 32 patches, 2 views): 7 500 to 12 000 patches
per second.

Validation never uses ``LOOKALIKE_DATA``: some bundled photos are held out entirely
(:data:`VALIDATION_PHOTOS`) and :meth:`BundledPairs.validation_set` cuts a fixed set from them with a fixed seed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from lookalike._registry import register
from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import EmptyInputError, LookalikeError, OptionError
from lookalike.data.bundled import BUNDLED_PHOTOS, HELD_OUT_PHOTOS, bundled_gray
from lookalike.data.synth import (
    HPATCHES_JITTER,
    Jitter,
    PhotometricRanges,
    corresponding_patches,
    cut_patches,
    detect_lafs,
)
from lookalike.geometry import WarpRanges, random_homography

__all__ = [
    "VALIDATION_PHOTOS",
    "BundledPairs",
    "PairSource",
    "PairStream",
    "ValidationSet",
    "corresponding_patches",
    "cut_patches",
    "detect_lafs",
]

logger = logging.getLogger(__name__)

#: Bundled photos held out of training for validation: the package-wide held-out list, shared with the
#: demo (:data:`lookalike.data.bundled.HELD_OUT_PHOTOS`), so no shipped model trains on a demo photo.
VALIDATION_PHOTOS: tuple[str, ...] = HELD_OUT_PHOTOS

_LABEL_STRIDE = 1_000_000  # label = photo index * stride + keypoint index


def split_photos(
    photos: Sequence[str] | None, val_photos: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(training photos, validation photos)``: ``photos`` (default every bundled photo) without the
    validation ones.

    Raises:
        OptionError: a name that is not a bundled photo.
        EmptyInputError: no training photo left.

    Example:
        >>> split_photos(["camera", "coffee"], ["coffee"])
        (('camera',), ('coffee',))
    """
    for name in list(val_photos) + list(photos or []):
        check_option(name, BUNDLED_PHOTOS, "photo name")
    val = tuple(val_photos)
    train = tuple(photos) if photos is not None else tuple(BUNDLED_PHOTOS)
    train = tuple(p for p in train if p not in val)
    if not train:
        raise EmptyInputError("photos: no training photo left after removing the validation photos")
    return train, val


@dataclass(frozen=True)
class ValidationSet:
    """A fixed validation set cut from the held-out photos.

    Attributes:
        patches: ``(N * V, 1, P, P)`` float32 patches in ``[0, 1]``, the ``V`` views of a point consecutive.
        labels: ``(N * V,)`` int64 point labels.
        pairs: ``(M, 2)`` int64 indices into ``patches``: one positive pair (views 0 and 1) per point followed
            by as many negative pairs (different labels).
        is_match: ``(M,)`` bool, True for the positive pairs.
    """

    patches: torch.Tensor
    labels: torch.Tensor
    pairs: torch.Tensor
    is_match: torch.Tensor


class PairSource(IterableDataset):
    """The endless, resumable, shuffled stream shared by the synthetic pair data sets.

    A subclass sets ``batch_size``, ``patch_size``, ``n_views``, ``output``, ``seed``, ``train_photos``,
    ``points_per_warp`` and ``buffer_batches`` and implements ``_photo_points(name) -> int`` (how many
    points a photo can give, to weight the draws) and ``_draw(rng, name, max_points) -> (labels (M,),
    patches (M, V, 1, P, P))`` (one draw of views). Batches hold distinct labels (valid in-batch
    negatives); :class:`PairStream` keeps the shuffle buffer and the generator state.
    """

    batch_size: int
    patch_size: int
    n_views: int
    output: str
    seed: int
    train_photos: tuple[str, ...]
    points_per_warp: int
    buffer_batches: int

    def _photo_points(self, name: str) -> int:
        raise NotImplementedError

    def _draw(
        self, rng: np.random.Generator, name: str, max_points: int, *args: Any, **kwargs: Any
    ) -> tuple[np.ndarray, torch.Tensor]:
        raise NotImplementedError

    def _photo_weights(self, names: Sequence[str]) -> np.ndarray:
        """Draw probabilities ~ min(#keypoints, points_per_warp): photos with few keypoints are drawn less."""
        counts = np.array([min(self._photo_points(n), self.points_per_warp) for n in names], float)
        if counts.sum() == 0:
            raise EmptyInputError(
                f"{type(self).__name__}: no keypoint detected in any of {list(names)}"
            )
        return counts / counts.sum()

    def _rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        seed = self.seed if info is None else self.seed + 1_000_003 * (info.id + 1)
        return np.random.default_rng(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return PairStream(self, self._rng())

    def stream(self) -> PairStream:
        """A resumable iterator over the batches (what ``iter(self)`` returns)."""
        return PairStream(self, self._rng())

    def _fill(
        self, rng: np.random.Generator, labels: np.ndarray, patches: torch.Tensor
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Draw views until the buffer holds ``buffer_batches`` batches of distinct points."""
        target = self.batch_size * self.buffer_batches
        weights = self._photo_weights(self.train_photos)
        empty_draws = 0
        while labels.size < target or np.unique(labels).size < self.batch_size:
            name = self.train_photos[int(rng.choice(len(self.train_photos), p=weights))]
            new_labels, new_patches = self._draw(rng, name, self.points_per_warp)
            if new_labels.size == 0:
                empty_draws += 1
                if empty_draws > 100:
                    raise LookalikeError(
                        f"{type(self).__name__}: 100 draws in a row gave no corresponding point "
                        "in every view; the warp ranges are too strong for the photos"
                    )
                continue
            labels = np.concatenate([labels, new_labels])
            patches = torch.cat([patches, new_patches])
        return labels, patches

    def _format(
        self, labels: np.ndarray, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.output == "pairs":
            return patches[:, 0].contiguous(), patches[:, 1].contiguous()
        flat = patches.reshape(-1, 1, self.patch_size, self.patch_size)
        return flat, torch.from_numpy(np.repeat(labels, self.n_views))


@register("dataset", "bundled_pairs")
class BundledPairs(PairSource):
    """Endless stream of corresponding patches from synthetic views of the bundled photos.

    Args:
        batch_size: points per batch; every batch has distinct labels, so in-batch negatives are valid.
        patch_size: patch side in pixels.
        n_views: views per point (>= 2).
        output: ``"pairs"`` yields ``(anchors, positives)``, each ``(B, 1, P, P)`` (views 0 and 1);
            ``"labels"`` yields ``(patches, labels)`` with ``(B * V, 1, P, P)`` patches and ``(B * V,)`` labels.
        seed: seed of the training stream.
        photos: training photos (default: every bundled photo except ``val_photos``).
        val_photos: held-out photos for :meth:`validation_set`.
        warp: :class:`WarpRanges` (or a mapping of its fields).
        photometric: :class:`PhotometricRanges` (or a mapping), or ``None`` to disable.
        laf_mode: ``"affine"`` or ``"similarity"`` LAF mapping into the views.
        jitter: detector noise on every view's frame: ``"e"``, ``"h"``, ``"t"`` (the HPatches easy / hard / tough
            :data:`~lookalike.data.synth.HPATCHES_JITTER`), a :class:`~lookalike.data.synth.Jitter`, or
            ``None`` for exact correspondences. The default ``"e"`` keeps positives from being trivially
            identical after the affine normalisation.
        keypoint_budget: SIFT keypoints per photo before the overlap suppression.
        points_per_warp: maximum points cut from one draw of views.
        mr_size: LAF half-width in units of the keypoint sigma.
        max_side: photos with a longer side are downscaled to it first.
        buffer_batches: a shuffle buffer of this many batches mixes points from several photos and warps.

    Convention:
        - Labels are ``photo_index * 1_000_000 + keypoint_index`` (stable across runs, distinct per point).
        - The stream is deterministic given ``seed``; in a ``DataLoader`` worker ``k`` the seed becomes
          ``seed + 1_000_003 * (k + 1)``, so every worker yields a different deterministic stream.

    Example:
        >>> import itertools, lookalike
        >>> data = lookalike.create("dataset", "bundled_pairs", batch_size=8, photos=["camera"])
        >>> anchors, positives = next(iter(data))
        >>> tuple(anchors.shape), tuple(positives.shape), anchors.dtype
        ((8, 1, 32, 32), (8, 1, 32, 32), torch.float32)
    """

    def __init__(
        self,
        *,
        batch_size: int = 256,
        patch_size: int = 32,
        n_views: int = 2,
        output: str = "pairs",
        seed: int = 0,
        photos: Sequence[str] | None = None,
        val_photos: Sequence[str] = VALIDATION_PHOTOS,
        warp: WarpRanges | dict[str, Any] | None = None,
        photometric: PhotometricRanges | dict[str, Any] | bool | None = True,
        laf_mode: str = "affine",
        jitter: str | Jitter | None = "e",
        keypoint_budget: int = 1500,
        points_per_warp: int = 128,
        mr_size: float = 6.0,
        max_side: int = 768,
        buffer_batches: int = 4,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("patch_size", patch_size),
            ("keypoint_budget", keypoint_budget),
            ("points_per_warp", points_per_warp),
            ("mr_size", mr_size),
            ("max_side", max_side),
            ("buffer_batches", buffer_batches),
        ):
            check_positive(value, name)
        if not isinstance(n_views, int) or n_views < 2:
            raise OptionError(f"n_views: expected an integer >= 2, got {n_views!r}")
        check_option(output, ("pairs", "labels"), "output")
        check_option(laf_mode, ("affine", "similarity"), "laf_mode")
        self.train_photos, self.val_photos = split_photos(photos, val_photos)
        self.batch_size = int(batch_size)
        self.patch_size = int(patch_size)
        self.n_views = n_views
        self.output = output
        self.seed = int(seed)
        self.warp = WarpRanges.coerce(warp, "warp")
        if photometric is True:
            photometric = PhotometricRanges()
        self.photometric = (
            None if photometric in (None, False) else PhotometricRanges.coerce(photometric)
        )
        self.laf_mode = laf_mode
        if isinstance(jitter, str):
            check_option(jitter, HPATCHES_JITTER, "jitter")
            jitter = HPATCHES_JITTER[jitter]
        elif jitter is not None and not isinstance(jitter, Jitter):
            raise OptionError(f"jitter: expected 'e', 'h', 't', a Jitter or None, got {jitter!r}")
        self.jitter = jitter
        self.keypoint_budget = int(keypoint_budget)
        self.points_per_warp = int(points_per_warp)
        self.mr_size = float(mr_size)
        self.max_side = int(max_side)
        self.buffer_batches = int(buffer_batches)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ---------------------------------------------------------------- per-photo cache
    def photo(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The cached ``(gray (H, W) float32, lafs (N, 2, 3))`` of a bundled photo (downscaled to ``max_side``)."""
        if name not in self._cache:
            gray = bundled_gray(name, self.max_side)
            lafs = detect_lafs(gray, budget=self.keypoint_budget, mr_size=self.mr_size)
            self._cache[name] = (gray, lafs)
        return self._cache[name]

    def _draw(
        self,
        rng: np.random.Generator,
        name: str,
        max_points: int,
        skip: set[int] | None = None,
        jitter: Jitter | str | None = "train",
    ) -> tuple[np.ndarray, torch.Tensor]:
        """One draw of views of ``name``: ``(labels (M,), patches (M, V, 1, P, P))``.

        ``jitter="train"`` uses the training configuration; anything else is a validation draw with the
        default warp and photometric ranges, the affine mapping and that jitter.
        """
        train = isinstance(jitter, str)
        gray, lafs = self.photo(name)
        base = list(BUNDLED_PHOTOS).index(name) * _LABEL_STRIDE
        if skip:
            rows = np.array([i for i in range(len(lafs)) if base + i not in skip], dtype=np.int64)
        else:
            rows = np.arange(len(lafs))
        if rows.size == 0:
            return np.zeros(0, dtype=np.int64), torch.zeros(
                0, self.n_views, 1, *(self.patch_size,) * 2
            )
        warp = self.warp if train else WarpRanges()
        Hs = [random_homography(rng, gray.shape[:2], warp) for _ in range(self.n_views)]
        patches, index = corresponding_patches(
            gray,
            lafs[rows],
            Hs,
            patch_size=self.patch_size,
            rng=rng,
            photometric=self.photometric if train else PhotometricRanges(),
            laf_mode=self.laf_mode if train else "affine",
            jitter=self.jitter if train else jitter,  # type: ignore[arg-type]
            max_points=max_points,
        )
        return base + rows[index], patches

    def _photo_points(self, name: str) -> int:
        return len(self.photo(name)[1])

    # ---------------------------------------------------------------- validation
    def validation_set(
        self, *, n_points: int | None = 1000, seed: int = 20_240_601, jitter: str | None = "h"
    ) -> ValidationSet:
        """A fixed validation set from :attr:`val_photos`.

        It depends only on ``n_points``, ``seed``, ``jitter`` and the dataset's ``patch_size``, ``n_views``,
        ``mr_size``, ``keypoint_budget`` and ``max_side``: not on the training seed, warp, photometric,
        mapping or jitter options, so it stays comparable across training configurations. It uses the default
        :class:`WarpRanges` and :class:`PhotometricRanges`, the affine mapping and the HPatches ``jitter``
        (``"h"``, hard, by default: SIFT's FPR95 is about 0.6 there, against about 0.02 with ``"e"``).

        Every point appears once (``n_views`` patches); there are as many negative pairs as positive ones.
        Fewer than ``n_points`` points are returned (with a log warning) when the held-out photos run out;
        ``n_points=None`` takes every point the held-out photos give (no warning), the same set as a
        larger ``n_points`` would return.

        Raises:
            EmptyInputError: no validation photo, or no keypoint in them.
        """
        if n_points is not None:
            check_positive(n_points, "n_points")
        wanted = float("inf") if n_points is None else n_points
        if jitter is not None:
            check_option(jitter, HPATCHES_JITTER, "jitter")
        frame_jitter = None if jitter is None else HPATCHES_JITTER[jitter]
        if not self.val_photos:
            raise EmptyInputError("validation_set: no validation photo (val_photos is empty)")
        rng = np.random.default_rng(seed)
        used: set[int] = set()
        all_labels: list[np.ndarray] = []
        all_patches: list[torch.Tensor] = []
        count, misses = 0, 0
        weights = self._photo_weights(self.val_photos)
        while count < wanted and misses < 20:
            name = self.val_photos[int(rng.choice(len(self.val_photos), p=weights))]
            labels, patches = self._draw(
                rng, name, int(min(self.points_per_warp, wanted - count)), used, frame_jitter
            )
            if labels.size == 0:
                misses += 1
                continue
            used.update(labels.tolist())
            all_labels.append(labels)
            all_patches.append(patches)
            count += labels.size
        if count == 0:
            raise EmptyInputError(
                "validation_set: no point could be cut from the validation photos"
            )
        if n_points is not None and count < n_points:
            logger.warning("validation_set: only %d of %d points available", count, n_points)
        labels = np.concatenate(all_labels)
        patches = torch.cat(all_patches)
        n, v = labels.size, self.n_views
        pos = np.stack([np.arange(n) * v, np.arange(n) * v + 1], axis=1)
        a = rng.integers(n, size=n)
        b = (a + 1 + rng.integers(max(n - 1, 1), size=n)) % n  # a different point
        neg = np.stack([a * v + rng.integers(v, size=n), b * v + rng.integers(v, size=n)], axis=1)
        keep = labels[a] != labels[b]
        pairs = np.concatenate([pos, neg[keep]])
        is_match = np.r_[np.ones(n, dtype=bool), np.zeros(int(keep.sum()), dtype=bool)]
        return ValidationSet(
            patches=patches.reshape(-1, 1, self.patch_size, self.patch_size),
            labels=torch.from_numpy(np.repeat(labels, v)),
            pairs=torch.from_numpy(pairs.astype(np.int64)),
            is_match=torch.from_numpy(is_match),
        )


class PairStream:
    """Resumable iterator over the batches of a :class:`BundledPairs` (``iter(data)``).

    Its state is the generator state and the shuffle buffer: :meth:`state_dict` returns the
    generator state and buffer labels as JSON-ready values and the buffered patches as a tensor, and
    :meth:`load_state_dict` continues the exact sequence.

    Example:
        >>> data = BundledPairs(batch_size=4, photos=["camera"], keypoint_budget=100)
        >>> stream = iter(data)
        >>> _ = next(stream)
        >>> state = stream.state_dict()
        >>> again = data.stream()
        >>> again.load_state_dict(state)
        >>> bool(torch.equal(next(again)[0], next(stream)[0]))
        True
    """

    def __init__(self, data: PairSource, rng: np.random.Generator) -> None:
        self.data = data
        self.rng = rng
        self.labels = np.zeros(0, dtype=np.int64)
        self.patches = torch.zeros(0, data.n_views, 1, data.patch_size, data.patch_size)

    def __iter__(self) -> PairStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        data, rng = self.data, self.rng
        labels, patches = data._fill(rng, self.labels, self.patches)
        order = rng.permutation(labels.size)
        _, first = np.unique(labels[order], return_index=True)
        chosen = np.sort(order[np.sort(first)[: data.batch_size]])
        rest = np.setdiff1d(np.arange(labels.size), chosen)
        self.labels, self.patches = labels[rest], patches[rest]
        return data._format(labels[chosen], patches[chosen])

    def state_dict(self) -> dict[str, Any]:
        """``{"rng": generator state, "labels": [...], "patches": (M, V, 1, P, P) tensor}``."""
        return {
            "rng": self.rng.bit_generator.state,
            "labels": self.labels.tolist(),
            "patches": self.patches.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of a stream of the same data set."""
        patches = state["patches"]
        shape = (len(state["labels"]), self.data.n_views, 1, *(self.data.patch_size,) * 2)
        if not torch.is_tensor(patches) or tuple(patches.shape) != shape:
            raise OptionError(
                f"stream state: expected patches of shape {shape}, got "
                f"{tuple(patches.shape) if torch.is_tensor(patches) else type(patches).__name__}"
            )
        self.rng.bit_generator.state = state["rng"]
        self.labels = np.asarray(state["labels"], dtype=np.int64)
        self.patches = patches.to(torch.float32).clone()
