"""Person re-identification evaluation: describe query and gallery, rank, score (protocol ``reid``).

:func:`evaluate_reid` runs one descriptor on one :class:`~lookalike.data.reid.readers.ReidBenchmark`:

1. a descriptor with a ``fit(images, ids, cams)`` method that is not fitted yet (``lomo-xqda``) is
   fitted on the benchmark's TRAINING images only (VIPeR: the training ids of the split);
2. query and gallery crops are read at the descriptor's ``crop_size`` (default 256 x 128) and
   described in batches in eval mode without gradients (a learned metric, XQDA, by its
   ``metric_rows``: the paper's distance, not the cosine of the unit rows);
3. Euclidean distances, optionally k-reciprocal re-ranked (:func:`lookalike.index.rerank.k_reciprocal_rerank`,
   paper settings k1 = 20, k2 = 6, lambda = 0.3);
4. :func:`~lookalike.eval.metrics.reid.reid_metrics` (Market-style: same id + same camera removed), or
   :func:`~lookalike.eval.metrics.reid.single_shot_cmc` for single-shot benchmarks (VIPeR).

:func:`run_viper` repeats this over the 10 VIPeR splits for several descriptors (mean and standard
deviation, minutes per split). The protocol ``reid`` is ``create("protocol", "reid", rerank=...)``
called as ``protocol(describer, benchmark) -> dict`` (``rank1``, ``rank5``, ``rank10``, ``rank20``,
``mAP``, ``mINP``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookalike._registry import register
from lookalike.core.check import check_int
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.reid.datasets import load_crops
from lookalike.data.reid.readers import VIPER_SPLITS, ReidBenchmark, ReidImages, read_viper
from lookalike.descriptors.describe import eval_mode, module_device
from lookalike.eval.metrics.reid import RANKS, ReidScores, reid_metrics, single_shot_cmc

__all__ = ["ReidProtocol", "ReidResult", "describe_images", "evaluate_reid", "run_viper"]

DEFAULT_CROP = (256, 128)


@dataclass
class ReidResult:
    """One descriptor on one benchmark.

    Attributes:
        descriptor: the spec or class name evaluated; ``benchmark``: the benchmark's name.
        scores: :class:`~lookalike.eval.metrics.reid.ReidScores`.
        reranked: whether k-reciprocal re-ranking was applied.
        ranked: ``(n, 10)`` gallery indices of the top 10 of the first ``n`` queries (for pictures).
        seconds: wall time (fit + describe + rank + score); ``fit_seconds``: of the fit alone.
    """

    descriptor: str
    benchmark: str
    scores: ReidScores
    reranked: bool = False
    ranked: np.ndarray = field(default_factory=lambda: np.zeros((0, 10), dtype=np.int64))
    seconds: float = 0.0
    fit_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "descriptor": self.descriptor,
            "benchmark": self.benchmark,
            "reranked": self.reranked,
            **self.scores.as_dict(),
            "cmc": [float(v) for v in self.scores.cmc],
            "num_valid_queries": self.scores.num_valid_queries,
            "seconds": self.seconds,
            "fit_seconds": self.fit_seconds,
        }


def _model(describer: Any) -> tuple[Any, str]:
    if isinstance(describer, str):  # a registry spec or an ensemble YAML file
        from lookalike.eval.protocols.retrieval import build_describer

        return build_describer(describer), describer
    if not callable(describer):
        raise OptionError(
            f"describer: expected a descriptor spec or a module, got {type(describer).__name__}"
        )
    return describer, type(describer).__name__


def _crop_size(model: Any) -> tuple[int, int]:
    """``(height, width)`` crops are read at: the model's ``crop_size``, else :data:`DEFAULT_CROP`."""
    return tuple(getattr(model, "crop_size", None) or DEFAULT_CROP)  # type: ignore[return-value]


def describe_images(model: Any, images: ReidImages, *, batch_size: int = 64) -> torch.Tensor:
    """``(N, D)`` float32 CPU rows of ``images`` read at ``model.crop_size`` (eval mode, no gradients).

    A descriptor with a learned metric (``metric_rows``: ``lomo-xqda``, ``xqda``) gives those rows,
    whose Euclidean distances are the metric's; any other gives its L2-normalised rows.
    """
    if len(images) == 0:
        raise EmptyInputError("describe_images: expected at least one image, got none")
    size = _crop_size(model)
    device = module_device(model)
    # a learned metric (XQDA) ranks by its own rows: Euclidean distances = the metric's distances
    rows_of = getattr(model, "metric_rows", None)
    describe = rows_of if callable(rows_of) else model
    out = []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            crops = load_crops(images.paths[start : start + batch_size], size)
            out.append(describe(crops.to(device)).float().cpu())
    return torch.cat(out)


def _fit_if_needed(model: Any, bench: ReidBenchmark, batch_size: int) -> float:
    fit = getattr(model, "fit", None)
    if not callable(fit) or getattr(model, "fitted", True):
        return 0.0
    if len(bench.train) == 0:
        raise EmptyInputError(
            f"{bench.name}: the descriptor needs training images to fit, got none"
        )
    start = time.perf_counter()
    size = _crop_size(model)
    fit(load_crops(bench.train.paths, size), bench.train.ids, bench.train.cams)
    return time.perf_counter() - start


def evaluate_reid(
    describer: Any,
    bench: ReidBenchmark,
    *,
    rerank: bool = False,
    max_rank: int = 50,
    batch_size: int = 64,
    keep_ranked: int = 8,
) -> ReidResult:
    """Evaluate one descriptor on one benchmark (see the module docstring).

    Args:
        describer: a registered spec (``"lomo-xqda"``, ``"name:weights"``), an ensemble YAML file
            (``members: [lomo-xqda, relation_net:W]``) or a descriptor module.
        bench: the benchmark (its ``train`` part is used only to fit descriptors that need it).
        rerank: apply k-reciprocal re-ranking (k1 = 20, k2 = 6, lambda = 0.3; fewer neighbours
            on tiny galleries).
        max_rank: length of the CMC curve.
        batch_size: crops described at once.
        keep_ranked: queries whose top-10 list is kept in :attr:`ReidResult.ranked`.

    Raises:
        EmptyInputError: no query or gallery image, or nothing to fit on.
    """
    if len(bench.query) == 0 or len(bench.gallery) == 0:
        raise EmptyInputError(
            f"{bench.name}: expected query and gallery images, got {len(bench.query)} and {len(bench.gallery)}"
        )
    start = time.perf_counter()
    model, label = _model(describer)
    fit_seconds = _fit_if_needed(model, bench, batch_size)
    q = describe_images(model, bench.query, batch_size=batch_size).double()
    g = describe_images(model, bench.gallery, batch_size=batch_size).double()
    dist = torch.cdist(q, g)
    if rerank:
        from lookalike.index.rerank import k_reciprocal_rerank

        n = len(q) + len(g)
        dist = k_reciprocal_rerank(
            dist, torch.cdist(q, q), torch.cdist(g, g), k1=min(20, n - 1), k2=min(6, n)
        ).double()
    args = (dist, bench.query.ids, bench.gallery.ids, bench.query.cams, bench.gallery.cams)
    metric = single_shot_cmc if bench.single_shot else reid_metrics
    scores = metric(*args, max_rank=max_rank)
    ranked = torch.argsort(dist[:keep_ranked], dim=1, stable=True)[:, :10].numpy()
    return ReidResult(
        label, bench.name, scores, bool(rerank), ranked, time.perf_counter() - start, fit_seconds
    )


@register("protocol", "reid")
class ReidProtocol:
    """Protocol ``reid``: ``protocol(describer, benchmark) -> {"rank1", ..., "mAP", "mINP"}``."""

    def __init__(self, *, rerank: bool = False, max_rank: int = 50, batch_size: int = 64) -> None:
        check_int(max_rank, "max_rank")
        self.rerank, self.max_rank, self.batch_size = bool(rerank), max_rank, int(batch_size)

    def __call__(self, describer: Any, bench: ReidBenchmark) -> dict[str, float]:
        if not isinstance(bench, ReidBenchmark):
            raise OptionError(f"data: expected a ReidBenchmark, got {type(bench).__name__}")
        result = evaluate_reid(
            describer, bench, rerank=self.rerank, max_rank=self.max_rank, batch_size=self.batch_size
        )
        return result.scores.as_dict()


def run_viper(
    root: str | Path,
    describers: Sequence[str],
    *,
    splits: Sequence[int] = range(VIPER_SPLITS),
    rerank: bool = False,
    progress: Callable[[str, int, ReidResult], None] | None = None,
) -> dict[str, list[ReidResult]]:
    """The VIPeR protocol: every descriptor on every split (a fresh, unfitted descriptor per split)."""
    if not describers:
        raise EmptyInputError("run_viper: expected at least one descriptor, got none")
    out: dict[str, list[ReidResult]] = {d: [] for d in describers}
    for split in splits:
        bench = read_viper(root, split=split)
        for spec in describers:
            result = evaluate_reid(spec, bench, rerank=rerank, max_rank=max(RANKS))
            out[spec].append(result)
            if progress is not None:
                progress(spec, split, result)
    return out
