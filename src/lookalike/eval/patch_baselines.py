"""Patch describers for the descriptor table: ours, OpenCV's and kornia's behind one interface.

A *patch describer* maps ``(N, P, P)`` uint8 patches (HPatches' 65 x 65) to ``(N, D)`` float32
descriptors compared with the Euclidean distance, and has a ``name``. :func:`create_patch_describer`
builds one from a spec string:

==========================  ===============================================================
spec                        descriptor
==========================  ===============================================================
``"sift"``, ``"hardnet:bundled"``, ``"hardnet:/path/w.safetensors"``
                            any registered ``descriptor``, on patches area-resized to its ``patch_size``
``"kornia-sift"``           ``kornia.feature.SIFTDescriptor(41, rootsift=False)``
``"kornia-rootsift"``       the same with ``rootsift=True``
``"kornia-mkd"``            ``kornia.feature.MKDDescriptor(32, whitening=None)`` (238-d, no learned part)
``"opencv-sift"``           OpenCV's SIFT descriptor, one upright keypoint per patch
``"opencv-rootsift"``       the same, then RootSIFT (L1-normalise, square root)
``"opencv-vgg"``            ``cv2.xfeatures2d.VGG`` (120-d float)
``"opencv-boostdesc"``      ``cv2.xfeatures2d.BoostDesc`` (BinBoost, 256 bits)
``"opencv-teblid"``         ``cv2.xfeatures2d.TEBLID`` (256 bits)
==========================  ===============================================================

Convention:
    - OpenCV descriptors are computed on each patch as an image of its own with one keypoint at its
      centre, ``((P - 1) / 2, (P - 1) / 2)``, angle 0 (upright: the patches are already oriented).
      OpenCV's batched ``compute(images, keypoints)`` does this in one call per chunk.
    - SIFT keypoint size (HPatches benchmark, ``extract_opencv_sift.py``): OpenCV samples a disc of
      radius ``3 * (size / 2) * sqrt(2) * (d + 1) / 2 = 5.303 * size`` (``d = 4`` cells per side) and
      pools a ``4 x 4`` grid ``6 * size`` wide. The benchmark sets ``size = P / 5.303`` (12.26 px for
      ``P = 65``), so the disc has radius ``P`` and the grid is ``1.13 P`` wide: the outer cells overhang
      the patch, and OpenCV leaves the missing pixels out. This is why each patch is its own image: in
      a mosaic the overhang would read the neighbouring tiles (or padding) instead.
    - VGG, BoostDesc, TEBLID resample a square of side ``scale_factor * size`` around the keypoint; with
      :data:`~lookalike.matching.describe.OPENCV_DESCRIPTORS`' SIFT scale factor (6.75) the size is
      ``P / 6.75``, so their sampling grid spans exactly the patch: the whole patch is described, as it
      is for the networks, whose input is the patch resized to their ``patch_size``.
    - Float OpenCV descriptors come out L2-normalised. Binary ones (BoostDesc, TEBLID) come out as
      their unpacked bits in ``{0, 1}``: the squared Euclidean distance is then the Hamming distance, so
      every ranking (and every number of the HPatches tasks) is that of the Hamming distance.
    - Torch descriptors (ours and kornia's) see gray patches in ``[0, 1]``, resized by
      :func:`area_resize` when their ``patch_size`` differs from ``P``; their outputs are taken as they
      come (the registered descriptors are L2-normalised).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from lookalike.core.check import check_not_empty, check_positive
from lookalike.core.errors import OptionError, ShapeError
from lookalike.eval.patch_protocols import DescribedSequence

if TYPE_CHECKING:
    from lookalike.data.hpatches_patches import PatchSequence

__all__ = [
    "KORNIA_BASELINES",
    "OPENCV_PATCH_KINDS",
    "DescriptorUnavailableError",
    "OpenCVPatchDescriber",
    "TorchPatchDescriber",
    "area_resize",
    "create_patch_describer",
    "describe_sequence",
    "patch_descriptor_choices",
    "resolve_describers",
    "sift_keypoint_size",
]

log = logging.getLogger(__name__)

#: OpenCV descriptors the table can compute on patches (``"opencv-<kind>"``).
OPENCV_PATCH_KINDS: tuple[str, ...] = ("sift", "rootsift", "vgg", "boostdesc", "teblid")
#: kornia baselines by spec.
KORNIA_BASELINES: tuple[str, ...] = ("kornia-sift", "kornia-rootsift", "kornia-mkd")
_SIFT_CELLS = 4  # OpenCV SIFT: d x d spatial cells
_SIFT_CELL_SCALE = 3.0  # SIFT_DESCR_SCL_FCTR: a cell is 3 * (size / 2) pixels wide
#: A patch describer: ``(N, P, P)`` uint8 -> ``(N, D)`` float32, with a ``name`` attribute.
Describer = Callable[[np.ndarray], np.ndarray]


class DescriptorUnavailableError(OptionError):
    """A known descriptor that this installation cannot compute (e.g. missing from this OpenCV)."""


def sift_keypoint_size(patch_size: int) -> float:
    """OpenCV keypoint size whose SIFT sampling disc has radius ``patch_size`` (HPatches benchmark).

    Example:
        >>> round(sift_keypoint_size(65), 3)
        12.257
    """
    check_positive(patch_size, "patch_size")
    radius_per_size = _SIFT_CELL_SCALE / 2 * math.sqrt(2) * (_SIFT_CELLS + 1) / 2  # 5.303
    return patch_size / radius_per_size


@lru_cache(maxsize=16)
def _area_weights(src: int, dst: int) -> torch.Tensor:
    """``(dst, src)`` float64: output pixel ``i`` averages input ``[i s, (i + 1) s)``, ``s = src / dst``."""
    scale = src / dst
    edges = np.arange(dst + 1, dtype=np.float64) * scale
    pixel = np.arange(src, dtype=np.float64)[None, :]
    overlap = np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel)
    return torch.from_numpy(np.clip(overlap, 0.0, None) / scale)


def area_resize(patches: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, P, P)`` patches to ``(B, C, size, size)`` by area averaging.

    Convention:
        Shrinking averages every input pixel by the fraction of it an output pixel covers (OpenCV's
        ``INTER_AREA``; a pixel's square is ``[j, j + 1)``), as one separable linear map. Enlarging falls
        back to bilinear interpolation (``align_corners=False``). The dtype and device are kept.

    Example:
        >>> import torch
        >>> area_resize(torch.arange(16.0).view(1, 1, 4, 4), 2)[0, 0]
        tensor([[ 2.5000,  4.5000],
                [10.5000, 12.5000]])
    """
    if patches.ndim != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ShapeError(f"patches: expected shape (B, C, P, P), got {tuple(patches.shape)}")
    check_positive(size, "size")
    src = int(patches.shape[-1])
    if src == size:
        return patches
    if size > src:
        return F.interpolate(patches, size=(size, size), mode="bilinear", align_corners=False)
    weights = _area_weights(src, int(size)).to(patches.device, patches.dtype)
    return weights @ patches @ weights.T


def _check_patches(patches: Any) -> np.ndarray:
    arr = np.asarray(patches)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ShapeError(f"patches: expected shape (N, P, P), got {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise OptionError(f"patches: expected uint8 gray levels, got {arr.dtype}")
    return arr


class OpenCVPatchDescriber:
    """An OpenCV descriptor of whole patches (see the module Convention for the keypoint).

    Args:
        kind: one of :data:`OPENCV_PATCH_KINDS`.
        chunk_size: patches per OpenCV call.

    Raises:
        OptionError: unknown kind.
        DescriptorUnavailableError: the installed OpenCV lacks it.

    Example:
        >>> import numpy as np
        >>> sift = OpenCVPatchDescriber("sift")
        >>> sift(np.random.default_rng(0).integers(0, 256, (3, 65, 65), dtype=np.uint8)).shape
        (3, 128)
    """

    def __init__(self, kind: str, *, chunk_size: int = 1024) -> None:
        import cv2

        from lookalike.matching.describe import (
            OPENCV_DESCRIPTORS,
            OpenCVDescriber,
            available_opencv_descriptors,
        )

        if kind not in OPENCV_PATCH_KINDS:
            raise OptionError(
                f"unknown OpenCV patch descriptor {kind!r}; expected one of {list(OPENCV_PATCH_KINDS)}"
            )
        if not available_opencv_descriptors().get(kind, False):
            module, factory, _ = OPENCV_DESCRIPTORS[kind]
            raise DescriptorUnavailableError(
                f"opencv-{kind}: this OpenCV ({cv2.__version__}) has no "
                f"cv2.{module + '.' if module else ''}{factory}"
            )
        check_positive(chunk_size, "chunk_size")
        self.kind = kind
        self.name = f"opencv-{kind}"
        self.chunk_size = int(chunk_size)
        self.scale_factor: float | None = OPENCV_DESCRIPTORS[kind][2].get("scale_factor")
        self.binary = kind in ("boostdesc", "teblid")
        self.extractor = OpenCVDescriber(kind).extractor
        self.note = ""

    def __repr__(self) -> str:
        return f"OpenCVPatchDescriber({self.kind!r})"

    def keypoint_size(self, patch_size: int) -> float:
        """The keypoint size used on ``patch_size`` patches (module Convention)."""
        if self.scale_factor is None:
            return sift_keypoint_size(patch_size)
        return patch_size / self.scale_factor

    def __call__(self, patches: Any) -> np.ndarray:
        """``(N, P, P)`` uint8 -> ``(N, D)`` float32 (D: 128 SIFT, 120 VGG, 256 bits BoostDesc/TEBLID)."""
        import cv2

        arr = _check_patches(patches)
        P = int(arr.shape[-1])
        centre, size = (P - 1) / 2.0, self.keypoint_size(P)
        rows: list[np.ndarray | None] = []
        for start in range(0, len(arr), self.chunk_size):
            chunk = [np.ascontiguousarray(p) for p in arr[start : start + self.chunk_size]]
            keypoints = [[cv2.KeyPoint(centre, centre, size, 0.0)] for _ in chunk]
            kept, desc = self.extractor.compute(chunk, keypoints)
            rows.extend(
                d[0] if k and d is not None and len(d) else None for k, d in zip(kept, desc)
            )
        return self._finish(rows, len(arr))

    def _finish(self, rows: list[np.ndarray | None], n: int) -> np.ndarray:
        width = next((r.size for r in rows if r is not None), 32 if self.binary else 128)
        dropped = sum(r is None for r in rows)
        if dropped:  # never seen with the keypoints above; kept explicit rather than misaligned
            log.warning(
                "%s: OpenCV dropped %d of %d patches (all-zero descriptors)", self.name, dropped, n
            )
        dtype = np.uint8 if self.binary else np.float32
        desc = np.stack([np.zeros(width, dtype) if r is None else r.reshape(-1) for r in rows])
        if n == 0:
            desc = np.zeros((0, width), dtype)
        if self.binary:
            return np.unpackbits(desc, axis=1).astype(np.float32)
        desc = desc.astype(np.float32)
        if self.kind == "rootsift":
            desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))
        return desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)


class TorchPatchDescriber:
    """A torch patch descriptor (``(B, 1, p, p)`` in [0, 1] -> ``(B, D)``) applied to uint8 patches.

    Args:
        model: an ``nn.Module`` or a callable on tensors.
        name: label of the table row.
        patch_size: the model's input side (default: ``model.patch_size``; none: patches kept as given).
        device: where to run (default: the module's device, else CPU).
        batch_size: patches per forward pass.
        note: remark shown in the table (e.g. "random initialisation").

    Example:
        >>> import numpy as np, lookalike
        >>> sift = TorchPatchDescriber(lookalike.create("descriptor", "sift"), name="sift")
        >>> sift(np.zeros((2, 65, 65), np.uint8)).shape
        (2, 128)
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        *,
        name: str,
        patch_size: int | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 512,
        note: str = "",
    ) -> None:
        check_positive(batch_size, "batch_size")
        self.model = model
        self.name = name
        size = patch_size if patch_size is not None else getattr(model, "patch_size", None)
        self.patch_size = int(size) if size is not None else None
        if isinstance(model, torch.nn.Module):
            if device is not None:
                model.to(device)
            tensors = [*model.parameters(), *model.buffers()]
            self.device = tensors[0].device if tensors else torch.device(device or "cpu")
        else:
            self.device = torch.device(device or "cpu")
        self.batch_size = int(batch_size)
        self.note = note

    def __repr__(self) -> str:
        return f"TorchPatchDescriber({self.name!r}, patch_size={self.patch_size})"

    def __call__(self, patches: Any) -> np.ndarray:
        """``(N, P, P)`` uint8 -> ``(N, D)`` float32 on the CPU."""
        arr = _check_patches(patches)
        module = self.model if isinstance(self.model, torch.nn.Module) else None
        was_training = module.training if module is not None else False
        if module is not None:
            module.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(arr), self.batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(arr[start : start + self.batch_size]))
                    x = x.to(self.device, torch.float32)[:, None] / 255.0
                    if self.patch_size is not None:
                        x = area_resize(x, self.patch_size)
                    out.append(self.model(x).detach().to("cpu", torch.float32).numpy())
        finally:
            if module is not None:
                module.train(was_training)
        if not out:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(out)


def patch_descriptor_choices() -> list[str]:
    """Every spec :func:`create_patch_describer` accepts (registered names take ``:weights`` too)."""
    import lookalike

    return [
        *(f"opencv-{k}" for k in OPENCV_PATCH_KINDS),
        *KORNIA_BASELINES,
        *lookalike.list_registered("descriptor"),
    ]


def _label(spec: str) -> str:
    """Row label: ``name:weights`` with a weights path shortened to its file name."""
    from lookalike._registry import split_spec

    name, weights = split_spec(spec)
    if weights is None or ("/" not in weights and "\\" not in weights):
        return spec
    return f"{name}:{Path(weights).name}"


def create_patch_describer(
    spec: str, *, device: str | torch.device | None = None, batch_size: int = 512
) -> OpenCVPatchDescriber | TorchPatchDescriber:
    """Build a patch describer from a spec string (module table).

    Raises:
        OptionError: unknown spec; the message lists the valid ones.
        DescriptorUnavailableError: a known OpenCV descriptor missing from this OpenCV.
        lookalike.core.weights.WeightsError: the weights of ``"name:weights"`` cannot be loaded.

    Example:
        >>> create_patch_describer("kornia-mkd").patch_size
        32
        >>> create_patch_describer("surf")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: unknown patch descriptor 'surf'; expected one of ...
    """
    import lookalike
    from lookalike._registry import split_spec

    if not isinstance(spec, str) or not spec:
        raise OptionError(f"descriptor: expected a spec string, got {spec!r}")
    choices = patch_descriptor_choices()
    if spec.startswith("opencv-") and spec in choices:
        return OpenCVPatchDescriber(spec.removeprefix("opencv-"))
    if spec in ("kornia-sift", "kornia-rootsift"):
        from lookalike.matching.describe import _kornia_sift

        return TorchPatchDescriber(
            _kornia_sift(spec == "kornia-rootsift"), name=spec, device=device, batch_size=batch_size
        )
    if spec == "kornia-mkd":
        import kornia.feature as KF

        model = KF.MKDDescriptor(patch_size=32, whitening=None)
        return TorchPatchDescriber(model, name=spec, device=device, batch_size=batch_size)
    name, weights = split_spec(spec)
    if name not in lookalike.list_registered("descriptor") or spec.startswith("opencv-"):
        raise OptionError(
            f"unknown patch descriptor {spec!r}; expected one of {', '.join(choices)} "
            "(registered names also as 'name:weights', e.g. 'hardnet:bundled')"
        )
    model = lookalike.create("descriptor", spec)
    untrained = weights is None and any(True for _ in model.parameters())
    return TorchPatchDescriber(
        model,
        name=_label(spec),
        device=device,
        batch_size=batch_size,
        note="untrained: random initialisation" if untrained else "",
    )


def resolve_describers(
    descriptors: Sequence[Any], *, device: str | torch.device | None = None, batch_size: int = 512
) -> list[tuple[str, Describer | None, str]]:
    """``(name, describer, note)`` for specs and describers; unavailable ones have no describer.

    Every spec is checked before anything runs: an unknown one raises (listing the valid ones), a
    known one this installation cannot compute (:class:`DescriptorUnavailableError`) is kept with a
    ``"skipped: ..."`` note. A describer is any callable ``(N, P, P) uint8 -> (N, D)`` with a ``name``;
    a name given twice is kept once.

    Example:
        >>> [name for name, _, _ in resolve_describers(["sift", "opencv-sift", "sift"])]
        ['sift', 'opencv-sift']
    """
    check_not_empty(list(descriptors), "descriptors")
    out: list[tuple[str, Describer | None, str]] = []
    for spec in descriptors:
        if isinstance(spec, str):
            try:
                describer: Any = create_patch_describer(spec, device=device, batch_size=batch_size)
            except DescriptorUnavailableError as exc:
                log.warning("%s skipped: %s", spec, exc)
                out.append((spec, None, f"skipped: {exc}"))
                continue
        elif callable(spec) and isinstance(getattr(spec, "name", None), str):
            describer = spec
        else:
            raise OptionError(
                f"descriptor: expected a spec string or a describer with a name, got {spec!r}"
            )
        if any(name == describer.name for name, _, _ in out):
            log.warning("descriptor %s named twice: kept once", describer.name)
            continue
        out.append((describer.name, describer, getattr(describer, "note", "")))
    return out


def describe_sequence(describer: Describer, seq: PatchSequence) -> tuple[DescribedSequence, float]:
    """Describe all patches of a sequence in one call: the descriptors and the call's seconds.

    Raises:
        ShapeError: the describer does not return one row per patch.
    """
    keys = list(seq.targets)
    n = len(seq)
    patches = np.concatenate([seq.ref, *(seq.targets[k] for k in keys)])
    start = time.perf_counter()
    desc = np.asarray(describer(patches), dtype=np.float32)
    seconds = time.perf_counter() - start
    if desc.ndim != 2 or desc.shape[0] != len(patches):
        raise ShapeError(
            f"{getattr(describer, 'name', describer)}: expected ({len(patches)}, D) descriptors, "
            f"got {tuple(desc.shape)}"
        )
    targets = {k: desc[(i + 1) * n : (i + 2) * n] for i, k in enumerate(keys)}
    std = seq.ref.reshape(n, -1).astype(np.float64).std(axis=1)
    return DescribedSequence(seq.name, desc[:n], targets, std), seconds
