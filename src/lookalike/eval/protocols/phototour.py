"""UBC PhotoTour ("Brown") protocols: FPR95 on the pair lists and the Brown-revisited SNN mAP.

Protocols ``fpr95``, ``brown_snn_map`` and ``phototour``, each called as ``protocol(describer, data)``
(the uniform signature of kind ``protocol``, see :mod:`lookalike.eval.protocols`), with ``data`` a
:class:`~lookalike.data.phototour.PhotoTour` subset (or anything with its ``patches``, ``pairs``,
``is_match``, ``labels``, ``image_ids`` and ``patch_size`` attributes).

Convention:
    Patches are described by :func:`lookalike.descriptors.describe.describe_patches` at the descriptor's
    ``patch_size`` (else the data set's), area-resized. Only the patches a protocol needs are described.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.eval.metrics.patch import fpr_at_recall, snn_map
from lookalike.eval.protocols.hpatches import resolve_descriptor

__all__ = ["FPR95", "BrownSNNMap", "PhotoTourProtocol", "phototour_evaluate"]


def _describe(describer: Any, data: Any, index: np.ndarray, batch_size: int) -> np.ndarray:
    from lookalike.descriptors.describe import describe_patches

    size = getattr(describer, "patch_size", None) or data.patch_size
    desc = describe_patches(describer, data.patches[index], patch_size=size, batch_size=batch_size)
    return desc.detach().to("cpu").numpy()


def phototour_evaluate(
    describer: Any,
    data: Any,
    *,
    batch_size: int = 512,
    recall: float = 0.95,
    tasks: tuple[str, ...] = ("fpr95", "snn_map"),
) -> dict[str, float]:
    """FPR at ``recall`` on the subset's pairs and, with ``interest.txt``, the Brown-revisited SNN mAP.

    Args:
        describer: a patch descriptor (``(B, 1, p, p)`` in [0, 1] -> ``(B, D)``) or a registered spec.
        data: a PhotoTour subset.
        batch_size: patches per forward pass.
        recall: recall of the false-positive rate (0.95: FPR95).
        tasks: any of ``"fpr95"``, ``"snn_map"``; ``snn_map`` is left out when the subset has no image
            groups (no ``interest.txt``), unless it is the only task asked.

    Returns:
        ``{"fpr95": ..., "snn_map": ...}`` (the tasks computed).

    Raises:
        EmptyInputError: ``fpr95`` without pairs, or ``snn_map`` alone without image groups.
        OptionError: an unknown task.
    """
    check_positive(batch_size, "batch_size")
    unknown = sorted(set(tasks) - {"fpr95", "snn_map"})
    if unknown or not tasks:
        raise OptionError(f"tasks: expected some of ['fpr95', 'snn_map'], got {list(tasks)!r}")
    describer = resolve_descriptor(describer)
    want_fpr = "fpr95" in tasks
    want_snn = "snn_map" in tasks and data.image_ids is not None
    if want_fpr and data.pairs is None:
        raise EmptyInputError("phototour: the dataset was read without pairs")
    if "snn_map" in tasks and not want_snn and not want_fpr:
        raise EmptyInputError("brown_snn_map: the dataset has no image groups (interest.txt)")
    used = np.arange(len(data)) if want_snn else np.unique(data.pairs)
    desc = _describe(describer, data, used, batch_size)
    out: dict[str, float] = {}
    if want_fpr:
        where = np.full(len(data), -1)
        where[used] = np.arange(used.size)
        a, b = desc[where[data.pairs[:, 0]]], desc[where[data.pairs[:, 1]]]
        out["fpr95"] = fpr_at_recall(np.linalg.norm(a - b, axis=1), data.is_match, recall=recall)
    if want_snn:
        out["snn_map"] = snn_map(desc, data.labels, data.image_ids)
    return out


@register("protocol", "fpr95")
class FPR95:
    """FPR at a recall (0.95) on a pair data set: ``protocol(describer, data) -> {"fpr95": ...}``.

    Example:
        >>> import lookalike
        >>> lookalike.create("protocol", "fpr95", recall=0.9).recall
        0.9
    """

    def __init__(self, *, recall: float = 0.95, batch_size: int = 512) -> None:
        if not (isinstance(recall, (int, float)) and 0.0 < recall <= 1.0):
            raise OptionError(f"recall: expected a number in (0, 1], got {recall!r}")
        check_positive(batch_size, "batch_size")
        self.recall = float(recall)
        self.batch_size = int(batch_size)

    def __call__(self, describer: Any, data: Any) -> dict[str, float]:
        return phototour_evaluate(
            describer, data, batch_size=self.batch_size, recall=self.recall, tasks=("fpr95",)
        )


@register("protocol", "brown_snn_map")
class BrownSNNMap:
    """Brown-revisited SNN mAP: ``protocol(describer, data) -> {"snn_map": ...}`` (:func:`snn_map`)."""

    def __init__(self, *, batch_size: int = 512) -> None:
        check_positive(batch_size, "batch_size")
        self.batch_size = int(batch_size)

    def __call__(self, describer: Any, data: Any) -> dict[str, float]:
        return phototour_evaluate(describer, data, batch_size=self.batch_size, tasks=("snn_map",))


@register("protocol", "phototour")
class PhotoTourProtocol:
    """FPR95 and SNN mAP on a PhotoTour subset: ``protocol(describer, data) -> dict``."""

    def __init__(self, *, batch_size: int = 512) -> None:
        check_positive(batch_size, "batch_size")
        self.batch_size = int(batch_size)

    def __call__(self, describer: Any, data: Any) -> dict[str, float]:
        return phototour_evaluate(describer, data, batch_size=self.batch_size)
