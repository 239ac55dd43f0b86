"""Patch describers for the descriptor table: any registered descriptor behind one interface.

A *patch describer* maps ``(N, P, P)`` uint8 patches (HPatches' 65 x 65) to ``(N, D)`` float32
descriptors compared with the Euclidean distance, and has a ``name``. :func:`create_patch_describer`
builds one from any registered descriptor spec -- ours (``"sift"``, ``"hardnet:bundled"``,
``"hardnet:/path/w.safetensors"``) and the baselines of :mod:`lookalike.baselines`
(``"opencv-sift"``, ``"opencv-teblid"``, ``"opencv-orb"``, ``"kornia-mkd"``...): one name vocabulary.

Convention:
    - Patches go through :func:`lookalike.descriptors.describe.describe_patches`, the one batched
      path: gray in ``[0, 1]``, area-resized to the descriptor's ``patch_size`` when it differs from
      ``P`` (the OpenCV baselines' nominal side is 65, so HPatches patches reach them unchanged).
    - The baselines' patch-mode conventions (one image per patch, the SIFT size ``P / 5.303``, the
      6.75 scale factor of VGG/BoostDesc/TEBLID, ORB's pyramid level) are documented in
      :mod:`lookalike.baselines.opencv`. Binary descriptors (BoostDesc, TEBLID, ORB) come out as their
      unpacked bits in ``{0, 1}``: the squared Euclidean distance is the Hamming distance, so every
      number of the HPatches tasks is that of the Hamming distance.
    - Outputs are taken as the descriptors return them (unit rows; all-zero rows for flat patches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lookalike.baselines._common import DescriptorUnavailableError
from lookalike.baselines.opencv import OPENCV_DESCRIPTORS, sift_keypoint_size
from lookalike.core.check import check_not_empty, check_positive
from lookalike.core.errors import OptionError, ShapeError
from lookalike.descriptors.describe import area_resize, describe_patches
from lookalike.eval.protocols.hpatches import DescribedSequence

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
OPENCV_PATCH_KINDS: tuple[str, ...] = tuple(OPENCV_DESCRIPTORS)
#: kornia baselines by spec.
KORNIA_BASELINES: tuple[str, ...] = ("kornia-sift", "kornia-rootsift", "kornia-mkd")
#: A patch describer: ``(N, P, P)`` uint8 -> ``(N, D)`` float32, with a ``name`` attribute.
Describer = Callable[[np.ndarray], np.ndarray]


def _check_patches(patches: Any) -> np.ndarray:
    arr = np.asarray(patches)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ShapeError(f"patches: expected shape (N, P, P), got {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise OptionError(f"patches: expected uint8 gray levels, got {arr.dtype}")
    return arr


class TorchPatchDescriber:
    """A patch descriptor (``(B, 1, p, p)`` in [0, 1] -> ``(B, D)``) applied to uint8 patches.

    Args:
        model: an ``nn.Module`` (a registered descriptor or baseline) or a callable on tensors.
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
        if isinstance(model, torch.nn.Module) and device is not None:
            model.to(device)
        self.model = model
        self.name = name
        size = patch_size if patch_size is not None else getattr(model, "patch_size", None)
        self.patch_size = int(size) if size is not None else None
        self.device = torch.device(device) if device is not None else None
        self.batch_size = int(batch_size)
        self.note = note

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, patch_size={self.patch_size})"

    def __call__(self, patches: Any) -> np.ndarray:
        """``(N, P, P)`` uint8 -> ``(N, D)`` float32 on the CPU."""
        arr = _check_patches(patches)
        out = describe_patches(
            self.model,
            arr,
            batch_size=self.batch_size,
            patch_size=self.patch_size,
            device=self.device,
        )
        return out.to("cpu", torch.float32).numpy()


class OpenCVPatchDescriber(TorchPatchDescriber):
    """The registered ``opencv-<kind>`` baseline as a patch describer (see :mod:`lookalike.baselines.opencv`).

    Args:
        kind: one of :data:`OPENCV_PATCH_KINDS`.
        chunk_size: patches per OpenCV call (and per batch).

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
        import lookalike

        if kind not in OPENCV_PATCH_KINDS:
            raise OptionError(
                f"unknown OpenCV patch descriptor {kind!r}; expected one of {list(OPENCV_PATCH_KINDS)}"
            )
        model = lookalike.create("descriptor", f"opencv-{kind}", chunk_size=chunk_size)
        super().__init__(model, name=f"opencv-{kind}", batch_size=chunk_size)
        self.kind = kind

    def keypoint_size(self, patch_size: int) -> float:
        """The keypoint size used on ``patch_size`` patches (:mod:`lookalike.baselines.opencv`)."""
        return self.model.keypoint_size(patch_size)


def patch_descriptor_choices() -> list[str]:
    """Every spec :func:`create_patch_describer` accepts (registered names take ``:weights`` too)."""
    import lookalike

    return lookalike.list_registered("descriptor")


def _label(spec: str) -> str:
    """Row label: ``name:weights`` with a weights path shortened to its file name."""
    from lookalike._registry import split_spec

    name, weights = split_spec(spec)
    if weights is None or ("/" not in weights and "\\" not in weights):
        return spec
    return f"{name}:{Path(weights).name}"


def create_patch_describer(
    spec: str, *, device: str | torch.device | None = None, batch_size: int = 512
) -> TorchPatchDescriber:
    """Build a patch describer from a registered descriptor spec (module docstring).

    Raises:
        OptionError: unknown spec; the message lists the valid ones.
        DescriptorUnavailableError: a known OpenCV descriptor missing from this OpenCV.
        lookalike.core.weights.WeightsError: the weights of ``"name:weights"`` cannot be loaded.

    Example:
        >>> create_patch_describer("kornia-mkd").patch_size
        32
        >>> create_patch_describer("opencv-orb").model.metric
        'hamming'
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
    name, weights = split_spec(spec)
    if name not in choices:
        raise OptionError(
            f"unknown patch descriptor {spec!r}; expected one of {', '.join(choices)} "
            "(registered names also as 'name:weights', e.g. 'hardnet:bundled')"
        )
    model = lookalike.create("descriptor", spec)
    learned = getattr(model, "needs_weights", any(True for _ in model.parameters()))
    untrained = weights is None and bool(learned)
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
