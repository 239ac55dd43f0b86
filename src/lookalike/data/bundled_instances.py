"""Instance discrimination on the bundled photos: data set ``bundled_instances`` (global descriptors).

Every training photo is cut into square regions at several scales (a grid per scale); each region is
one class. A sample is a heavily augmented view of its region: torchvision v2 flip, rotation, scale,
shift and perspective on a context window twice the region's side, centre crop, then colour jitter,
grayscale, gamma, blur, JPEG and noise. Optionally procedural dead-leaves images
(:mod:`lookalike.data.procedural`) join as extra classes. Views of one region share its label, so a
margin-softmax loss (``arcface`` / ``cosface``) learns descriptors that match views of one place and
separate different places: what image retrieval needs, without any real training data.

The photos of :data:`~lookalike.data.bundled.HELD_OUT_PHOTOS` are never used for training:
:meth:`BundledInstances.validation_set` cuts its classes from them with a fixed seed, and
:func:`retrieval_scores` measures mAP and recall@1 there (query one view, retrieve the others).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lookalike._registry import register
from lookalike.core.check import check_int, check_option, check_positive
from lookalike.core.errors import OptionError
from lookalike.data.bundled import BUNDLED_PHOTOS, HELD_OUT_PHOTOS, bundled_photos
from lookalike.data.bundled_pairs import ValidationSet

__all__ = ["BundledInstances", "instance_augmentation", "region_grid", "retrieval_scores"]

_VAL_SEED = 20_261_130
_VAL_SCALES = (0.5, 0.3)
_VAL_VIEWS = 4


def region_grid(height: int, width: int, scales: Sequence[float]) -> np.ndarray:
    """Square regions covering an image at every scale: ``(R, 3)`` rows ``(cx, cy, side)`` in pixels.

    A scale ``f`` gives squares of side ``f * min(height, width)`` on a grid of
    ``max(1, round(width / side))`` by ``max(1, round(height / side))`` centres spread evenly from
    ``side / 2`` to ``width - side / 2`` (resp. height): neighbours overlap a little or leave a
    small gap, and the squares stay inside the image.

    Example:
        >>> region_grid(100, 200, [1.0, 0.5]).tolist()
        [[50.0, 50.0, 100.0], [150.0, 50.0, 100.0], [25.0, 25.0, 50.0], [75.0, 25.0, 50.0], \
[125.0, 25.0, 50.0], [175.0, 25.0, 50.0], [25.0, 75.0, 50.0], [75.0, 75.0, 50.0], \
[125.0, 75.0, 50.0], [175.0, 75.0, 50.0]]
    """
    rows = []
    for f in scales:
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 < f <= 1:
            raise OptionError(f"scales: expected numbers in (0, 1], got {f!r}")
        side = f * min(height, width)
        nx, ny = max(1, round(width / side)), max(1, round(height / side))
        xs = np.linspace(side / 2, width - side / 2, nx) if nx > 1 else [width / 2]
        ys = np.linspace(side / 2, height - side / 2, ny) if ny > 1 else [height / 2]
        rows += [(float(x), float(y), float(side)) for y in ys for x in xs]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _context(rgb: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
    """The square of side ``2 * side`` centred on the region (mirrored outside), resized to ``size``."""
    import cv2

    cx, cy, side = (float(v) for v in region)
    half = side  # twice the region's side: room for rotation, zoom out and perspective
    pad = math.ceil(half) + 2
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    x0, y0 = round(cx - half) + pad, round(cy - half) + pad
    n = round(2 * half)
    crop = padded[y0 : y0 + n, x0 : x0 + n]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


class _RandomGamma:
    """``x ** gamma`` with ``log gamma`` uniform in ``±log(limit)``, on uint8 images, with probability ``p``."""

    def __init__(self, limit: float, p: float) -> None:
        self.limit, self.p = limit, p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.limit <= 1 or float(torch.rand(())) >= self.p:
            return x
        gamma = math.exp((float(torch.rand(())) * 2 - 1) * math.log(self.limit))
        return (x.float().div(255).pow(gamma).mul(255)).round().to(torch.uint8)


class _RandomJPEG:
    """JPEG compression at a quality uniform in ``[low, high]`` (OpenCV), with probability ``p``.

    torchvision's ``v2.JPEG`` does the same through ``torchvision.io``, deprecated since 0.29.
    """

    def __init__(self, low: int, high: int, p: float) -> None:
        self.low, self.high, self.p = int(low), int(high), p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import cv2

        if float(torch.rand(())) >= self.p:
            return x
        quality = int(torch.randint(self.low, self.high + 1, ()))
        hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
        ok, buf = cv2.imencode(".jpg", hwc, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            return x
        return torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(hwc.shape)).permute(
            2, 0, 1
        )


class _RandomView:
    """A random homography view of the centre half of a ``(2S, 2S, 3)`` uint8 window -> ``(3, S, S)``.

    The output square's corners are the region's corners (the window's centre half), flipped
    horizontally with probability 0.5, scaled by ``1 / zoom`` (zoom log-uniform in
    ``[1 - 0.3 s, 1 + 0.35 s]``), rotated by up to ``±25 s`` degrees, shifted by up to ``±8 s %`` of
    the side and, with probability 0.5, each moved by up to ``0.15 s`` of the side (perspective).
    One OpenCV warp (bilinear, mirrored border) makes the view: torchvision's ``RandomAffine`` and
    ``RandomPerspective`` draw the same family of maps but cost ~100 ms a view on two cores.
    """

    def __init__(self, size: int, strength: float) -> None:
        self.size, self.s = int(size), float(strength)

    def corners(self) -> np.ndarray:
        """``(4, 2)`` source corners (in the window) of the output's TL, TR, BR, BL corners."""
        size, s = self.size, self.s
        r = torch.rand(9, dtype=torch.float64).numpy()
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        if r[0] < 0.5:
            unit[:, 0] *= -1
        lo, hi = math.log(max(1 - 0.3 * s, 0.1)), math.log(1 + 0.35 * s)
        zoom = math.exp(lo + r[1] * (hi - lo))
        angle = math.radians((r[2] * 2 - 1) * 25 * s)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        shift = (r[3:5] * 2 - 1) * 0.08 * s
        pts = unit @ rot.T / zoom + shift
        if r[5] < 0.5:
            pts = pts + (torch.rand(4, 2, dtype=torch.float64).numpy() * 2 - 1) * 0.15 * s
        return (pts + 1.0) * size  # window of side 2S, centre at S

    def __call__(self, window: np.ndarray) -> torch.Tensor:
        import cv2

        size = self.size
        out = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float32)
        h = cv2.getPerspectiveTransform(out, self.corners().astype(np.float32))
        view = cv2.warpPerspective(
            window,
            h,
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        return torch.from_numpy(np.ascontiguousarray(view)).permute(2, 0, 1)


def instance_augmentation(size: int, *, strength: float = 1.0) -> Any:
    """The view augmentation: ``(2S, 2S, 3)`` uint8 context window -> ``(3, S, S)`` float in [0, 1].

    Geometry: one random homography (flip, zoom 0.7-1.35, rotation ±25°, shift ±8 %, perspective;
    times ``strength``, see :class:`_RandomView`). Photometry (torchvision v2): colour jitter without hue (hue costs ~50 ms)
    (p 0.8), grayscale (p 0.1), gamma up to 1.5× (p 0.5), Gaussian blur (p 0.3), JPEG quality
    30-95 (p 0.3), Gaussian noise σ 0.02 (p 0.3). Random draws come from the global torch RNG.
    """
    from torchvision.transforms import v2

    s = float(strength)
    return v2.Compose(
        [
            _RandomView(size, s),
            v2.RandomApply([v2.ColorJitter(0.4 * s, 0.4 * s, 0.4 * s)], p=0.8),
            v2.RandomGrayscale(p=0.1),
            _RandomGamma(1 + 0.5 * s, p=0.5),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.3),
            _RandomJPEG(30, 95, p=0.3),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([v2.GaussianNoise(sigma=0.02)], p=0.3),
        ]
    )


def _photo_rgb(name: str, max_side: int) -> np.ndarray:
    import cv2

    rgb = bundled_photos([name])[0].rgb
    side = max(rgb.shape[:2])
    if side > max_side:
        f = max_side / side
        size = (round(rgb.shape[1] * f), round(rgb.shape[0] * f))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


@register("dataset", "bundled_instances")
class BundledInstances(Dataset):
    """Augmented views of regions of the bundled training photos, one class per region.

    Args:
        seed: seed of the procedural images (the views are drawn from the global torch RNG, which
            the training engine seeds).
        image_size: side ``S`` of the views.
        photos: training photos (default: every bundled photo except
            :data:`~lookalike.data.bundled.HELD_OUT_PHOTOS`; naming one of those is an error).
        scales: region sides as fractions of a photo's shorter side (:func:`region_grid`).
        samples_per_class: views per class in one epoch (the data set's length is
            ``num_classes * samples_per_class``; every access draws a fresh view).
        procedural: number of dead-leaves images added as classes (0: none).
        max_side: photos with a longer side are downscaled to it first.
        strength: augmentation strength (:func:`instance_augmentation`).

    Attributes:
        labels: ``(N,)`` int64 class of every sample, in ``[0, num_classes)``.
        num_classes: number of regions (plus procedural images).
        class_counts: ``(C,)`` samples per class (all equal).
        regions: ``(C, 4)`` rows ``(photo index or -1, cx, cy, side)``.

    Example:
        >>> import lookalike
        >>> data = lookalike.create("dataset", "bundled_instances", photos=["camera"],
        ...                         scales=[1.0, 0.5], image_size=64, samples_per_class=2)
        >>> view, label = data[3]
        >>> tuple(view.shape), label, data.num_classes, len(data)
        ((3, 64, 64), 1, 5, 10)
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        image_size: int = 128,
        photos: Sequence[str] | None = None,
        scales: Sequence[float] = (1.0, 0.5, 0.3, 0.2),
        samples_per_class: int = 32,
        procedural: int = 0,
        max_side: int = 640,
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        check_int(image_size, "image_size", 16)
        check_positive(samples_per_class, "samples_per_class")
        check_positive(max_side, "max_side")
        check_positive(strength, "strength")
        check_int(procedural, "procedural", 0)
        if not scales:
            raise OptionError("scales: expected at least one scale, got none")
        chosen = (
            [p for p in BUNDLED_PHOTOS if p not in HELD_OUT_PHOTOS]
            if photos is None
            else list(photos)
        )
        for name in chosen:
            check_option(name, BUNDLED_PHOTOS, "photo name")
            if name in HELD_OUT_PHOTOS:
                raise OptionError(
                    f"photos: {name!r} is held out for validation (HELD_OUT_PHOTOS); "
                    "choose training photos only"
                )
        if not chosen and not procedural:
            raise OptionError("photos: expected at least one training photo, got none")
        self.photos, self.scales = tuple(chosen), tuple(float(s) for s in scales)
        self.seed, self.image_size = int(seed), int(image_size)
        self.samples_per_class, self.max_side = int(samples_per_class), int(max_side)
        self.procedural, self.strength = int(procedural), float(strength)
        self.windows, self.regions = self._windows(self.photos, self.scales)
        if self.procedural:
            self.windows = np.concatenate([self.windows, self._procedural()])
            extra = np.full((self.procedural, 4), -1.0)
            self.regions = np.concatenate([self.regions, extra])
        self.num_classes = int(self.windows.shape[0])
        self.labels = np.repeat(np.arange(self.num_classes), self.samples_per_class)
        self.class_counts = np.full(self.num_classes, self.samples_per_class, dtype=np.int64)
        self.transform = instance_augmentation(self.image_size, strength=self.strength)

    def _windows(
        self, photos: Sequence[str], scales: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        windows, regions = [], []
        for index, name in enumerate(photos):
            rgb = _photo_rgb(name, self.max_side)
            for region in region_grid(rgb.shape[0], rgb.shape[1], scales):
                windows.append(_context(rgb, region, 2 * self.image_size))
                regions.append((index, *region))
        if not windows:
            side = 2 * self.image_size
            return np.zeros((0, side, side, 3), np.uint8), np.zeros((0, 4))
        return np.stack(windows), np.asarray(regions, dtype=np.float64)

    def _procedural(self) -> np.ndarray:
        from lookalike.data.procedural import dead_leaves

        rng = np.random.default_rng([self.seed, 7])
        side = 2 * self.image_size
        images = [dead_leaves(side, rng=rng) for _ in range(self.procedural)]
        return np.stack(images)

    def __len__(self) -> int:
        return int(self.labels.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(view (3, S, S) float32 in [0, 1], label int)``; a fresh random view on every call."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        label = int(self.labels[index])
        return self.transform(self.windows[label]), label

    def validation_set(self, *, n_points: int | None = None) -> ValidationSet:
        """Views of regions of the held-out photos (never trained on), fixed whatever the seed.

        Regions at scales 0.5 and 0.3 of chelsea, coffee and gravel, four augmented views each
        (consecutive); one positive pair (views 0 and 1) per region and as many negative pairs.
        ``n_points`` caps the number of regions (``None``: all). The views are drawn under a
        forked torch RNG, so building the set leaves the training stream untouched.
        """
        if n_points is not None:
            check_positive(n_points, "n_points")
        held = BundledInstances.__new__(BundledInstances)
        held.image_size, held.max_side = self.image_size, self.max_side
        windows, _ = held._windows(HELD_OUT_PHOTOS, _VAL_SCALES)
        n = len(windows) if n_points is None else min(int(n_points), len(windows))
        transform = instance_augmentation(self.image_size, strength=self.strength)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_VAL_SEED)
            views = torch.stack([transform(w) for w in windows[:n] for _ in range(_VAL_VIEWS)])
        labels = np.repeat(np.arange(n), _VAL_VIEWS)
        rng = np.random.default_rng(_VAL_SEED)
        pos = np.stack([np.arange(n) * _VAL_VIEWS, np.arange(n) * _VAL_VIEWS + 1], axis=1)
        a = rng.integers(n, size=n)
        b = (a + 1 + rng.integers(max(n - 1, 1), size=n)) % n
        va, vb = rng.integers(_VAL_VIEWS, size=(2, n))
        neg = np.stack([a * _VAL_VIEWS + va, b * _VAL_VIEWS + vb], axis=1)
        keep = labels[neg[:, 0]] != labels[neg[:, 1]]
        pairs = np.concatenate([pos, neg[keep]])
        is_match = np.r_[np.ones(n, dtype=bool), np.zeros(int(keep.sum()), dtype=bool)]
        return ValidationSet(
            patches=views,
            labels=torch.from_numpy(labels),
            pairs=torch.from_numpy(pairs.astype(np.int64)),
            is_match=torch.from_numpy(is_match),
        )


def retrieval_scores(
    descriptors: torch.Tensor, labels: torch.Tensor | np.ndarray
) -> dict[str, float]:
    """mAP and recall@1 when every row queries all the others (cosine similarity of the rows).

    Args:
        descriptors: ``(N, D)`` descriptors (normalised inside).
        labels: ``(N,)`` integer labels; rows with the query's label are relevant.

    Returns:
        ``{"map": ..., "recall_at_1": ...}`` averaged over queries with at least one relevant row.

    Convention:
        The query itself is excluded; ties are ranked by index (lower first), as
        :func:`lookalike.eval.protocols.retrieval.rank`.

    Example:
        >>> import torch
        >>> rows = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> retrieval_scores(rows, [0, 0, 1, 1])
        {'map': 1.0, 'recall_at_1': 1.0}
    """
    from lookalike.core.check import check_shape

    dims = check_shape(descriptors, ["N", "D"], "descriptors")
    labels = torch.as_tensor(np.asarray(labels)).long()
    check_shape(labels, ["N"], "labels", dims)
    x = torch.nn.functional.normalize(descriptors.double(), dim=1)
    scores = x @ x.T
    n = scores.shape[0]
    scores[torch.arange(n), torch.arange(n)] = -math.inf
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, : n - 1]
    relevant = (labels[order] == labels[:, None]).double()
    total = relevant.sum(dim=1)
    valid = total > 0
    if not bool(valid.any()):
        raise OptionError("labels: expected at least one label shared by two rows, got none")
    hits = relevant.cumsum(dim=1)
    ranks = torch.arange(1, n, dtype=torch.float64)
    ap = (hits / ranks * relevant).sum(dim=1)[valid] / total[valid]
    return {
        "map": round(float(ap.mean()), 4),
        "recall_at_1": round(float(relevant[valid, 0].mean()), 4),
    }
