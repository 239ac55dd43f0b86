"""Image retrieval protocols: UKBench, scenes (homography sequences as instances), revisited Oxford/Paris.

A :class:`RetrievalBenchmark` lists database and query images and the ground truth; the ``retrieval``
protocol (kind ``protocol``) describes every image with a global descriptor, ranks the database by
exact search (one matrix product, top-``k`` by a stable sort), optionally re-ranks (DBA, αQE) and
scores with :mod:`lookalike.eval.metrics.retrieval`:

============  ========================================================  ================================
benchmark     queries and relevance                                     metrics
============  ========================================================  ================================
``ukbench``   every image against all (itself included); its group     ``ns`` (N-S score), ``map`` and
              of 4 is relevant                                          ``recall@4`` without the query
``scenes``    every image of every homography sequence; the other      ``map``, ``recall@1``, ``recall@5``
              images of its sequence are relevant (itself excluded)
``revisited`` the 70 cropped queries of ROxford5k / RParis6k            ``easy/map`` ... ``hard/mp@10``
``gldv2``     GLDv2 retrieval: ``test/`` queries with a solution row,   ``map@100`` (Kaggle), ``recall@1``
              against ``index/``; ``retrieval_solution_v2.1.csv``
============  ========================================================  ================================

Images are read as RGB, scaled so that the longer side is at most ``max_size`` pixels, and described
one shape at a time (images of one size are batched). Evaluation only: never tune on these numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookalike._registry import register
from lookalike.core.check import check_option
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.descriptors.describe import eval_mode
from lookalike.eval.protocols.retrieval_benchmarks import (
    BENCHMARKS,
    RetrievalBenchmark,
    load_benchmark,
)

__all__ = [
    "BASELINES",
    "BENCHMARKS",
    "MAIN_METRIC",
    "RERANKERS",
    "RetrievalBenchmark",
    "RetrievalProtocol",
    "RetrievalReport",
    "RetrievalRow",
    "build_describer",
    "describe_images",
    "load_benchmark",
    "rank",
    "read_rgb",
    "run_retrieval",
]

log = logging.getLogger(__name__)

RERANKERS = ("dba", "aqe")
#: The metric that picks the best row of a table, per benchmark kind.
MAIN_METRIC = {"ukbench": "ns", "scenes": "map", "revisited": "medium/map", "gldv2": "map@100"}


def read_rgb(path: Path, *, max_size: int, box: Any = None) -> torch.Tensor:
    """``(3, H, W)`` float image in [0, 1], cropped to ``box`` and shrunk to a longer side ``<= max_size``."""
    import cv2

    from lookalike.data.images import read_image

    rgb = read_image(path, gray=False)
    if box is not None:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        rgb = rgb[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
    scale = max_size / max(rgb.shape[:2])
    if scale < 1:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def _fit(x: torch.Tensor, spec: Any) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` into the descriptor's accepted size range (keeping the aspect)."""
    low, high = spec.size_range if spec is not None else (1, 1 << 30)
    h, w = x.shape[-2:]
    scale = max(low / min(h, w), 1.0) * min(high / max(h, w), 1.0)
    if scale == 1.0:
        return x
    size = (max(low, round(h * scale)), max(low, round(w * scale)))
    return torch.nn.functional.interpolate(
        x, size=size, mode="bilinear", antialias=True, align_corners=False
    )


def describe_images(
    model: Callable[[torch.Tensor], torch.Tensor],
    paths: Sequence[Path],
    *,
    max_size: int = 512,
    batch_size: int = 16,
    boxes: Sequence[Any] | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``(N, D)`` float32 rows of ``paths`` (images of one shape batched; eval mode restored after)."""
    with eval_mode(model):
        images = [
            read_rgb(p, max_size=max_size, box=None if boxes is None else boxes[i])
            for i, p in enumerate(paths)
        ]
        rows: list[torch.Tensor | None] = [None] * len(images)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            shapes.setdefault(tuple(img.shape), []).append(i)
        spec = getattr(model, "input_spec", None)
        for index in shapes.values():
            for start in range(0, len(index), batch_size):
                part = index[start : start + batch_size]
                batch = _fit(torch.stack([images[i] for i in part]), spec).to(device)
                out = model(batch).float().cpu()
                for i, row in zip(part, out):
                    rows[i] = row
        return torch.stack(rows) if rows else torch.zeros(0, 0)


def rank(
    queries: torch.Tensor,
    database: torch.Tensor,
    *,
    k: int | None = None,
    exclude: Sequence[int] | None = None,
) -> np.ndarray:
    """``(Q, k)`` database indices by decreasing dot product (ties: lower index first).

    ``exclude[q]``: a database index removed from query ``q``'s ranking (the query itself).

    Example:
        >>> import torch
        >>> rank(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.7, 0.7]])).tolist()
        [[1, 2, 0]]
    """
    scores = queries.float() @ database.float().T
    if exclude is not None:
        scores[torch.arange(len(exclude)), torch.as_tensor(exclude)] = -float("inf")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    k = (
        scores.shape[1] - (1 if exclude is not None else 0)
        if k is None
        else min(k, scores.shape[1])
    )
    return order[:, :k].numpy()


# ----------------------------------------------------------------------------------- protocol
def _rerank(
    queries: torch.Tensor,
    database: torch.Tensor,
    rerank: Sequence[str],
    k: int,
    alpha: float,
    shared: bool,
):
    from lookalike.index.expansion import alpha_query_expansion, database_augmentation

    if "dba" in rerank:
        database = database_augmentation(database, k=k, alpha=alpha)
        if shared:
            queries = database
    if "aqe" in rerank:
        queries = alpha_query_expansion(queries, database, k=k + (1 if shared else 0), alpha=alpha)
    return queries, database


def _scores(
    bench: RetrievalBenchmark, q: torch.Tensor, db: torch.Tensor
) -> tuple[dict[str, float], np.ndarray]:
    from lookalike.eval.metrics.retrieval import map_at_k, recall_at_k, revisited_map, ukbench_score

    n = db.shape[0]
    if bench.kind == "revisited":
        ranked = rank(q, db)
        return revisited_map(ranked, bench.ground_truth, ks=(1, 5, 10)), ranked
    if bench.kind == "gldv2":
        ranked = rank(q, db, k=100)
        relevant = [g["relevant"] for g in bench.ground_truth]
        scores = {"map@100": map_at_k(ranked, relevant, k=100)}
        return {**scores, "recall@1": recall_at_k(ranked, relevant, ks=(1,))[1]}, ranked
    labels = bench.labels
    relevant = [np.flatnonzero((labels == labels[i]) & (np.arange(n) != i)) for i in range(n)]
    ranked = rank(q, db, exclude=list(range(n)))
    out = {"map": map_at_k(ranked, relevant, k=n)}
    if bench.kind == "ukbench":
        with_self = rank(q, db, k=4)
        out["ns"] = ukbench_score(with_self, labels, labels, k=4)
        out["recall@4"] = recall_at_k(ranked, relevant, ks=(4,))[4]
    else:
        out.update({f"recall@{k}": v for k, v in recall_at_k(ranked, relevant, ks=(1, 5)).items()})
    return out, ranked


@register("protocol", "retrieval")
class RetrievalProtocol:
    """Describe, search exactly, re-rank, score: ``protocol(describer, benchmark) -> dict``.

    Args:
        max_size: longer side images are shrunk to.
        rerank: re-ranking steps in order, from ``("dba", "aqe")``.
        rerank_k: neighbours used by DBA and αQE.
        alpha: similarity exponent of DBA and αQE.
        batch_size: images per forward pass.
        device: where the descriptor runs.

    The call takes a descriptor module (or any callable from ``(B, 3, H, W)`` images in [0, 1] to
    ``(B, D)`` rows) or a registered spec string, and a :class:`RetrievalBenchmark`. The ranking of the
    last call is kept in :attr:`last_ranking` (for the ranked-list picture).
    """

    def __init__(
        self,
        *,
        max_size: int = 512,
        rerank: Sequence[str] = (),
        rerank_k: int = 2,
        alpha: float = 3.0,
        batch_size: int = 16,
        device: str = "cpu",
    ) -> None:
        for step in rerank:
            check_option(step, RERANKERS, "rerank")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 16:
            raise OptionError(f"max_size: expected an integer >= 16, got {max_size!r}")
        if isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or rerank_k < 1:
            raise OptionError(f"rerank_k: expected an integer >= 1, got {rerank_k!r}")
        self.max_size, self.rerank, self.rerank_k = max_size, tuple(rerank), rerank_k
        self.alpha, self.batch_size, self.device = float(alpha), batch_size, device
        self.last_ranking: np.ndarray | None = None

    def describe(
        self, describer: Any, bench: RetrievalBenchmark
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised ``(Q, D)`` query and ``(N, D)`` database rows, before re-ranking."""
        import lookalike

        model = (
            lookalike.create("descriptor", describer) if isinstance(describer, str) else describer
        )
        if isinstance(model, torch.nn.Module):
            model = model.to(self.device)
        opts = {"max_size": self.max_size, "batch_size": self.batch_size, "device": self.device}
        db = describe_images(model, bench.database, **opts)
        q = (
            db
            if bench.queries is None
            else describe_images(model, bench.queries, boxes=bench.boxes, **opts)
        )
        norm = torch.nn.functional.normalize
        return norm(q, dim=1), norm(db, dim=1)

    def score(
        self, bench: RetrievalBenchmark, q: torch.Tensor, db: torch.Tensor
    ) -> dict[str, float]:
        """Re-rank (if asked) and score described rows."""
        shared = bench.queries is None
        q, db = _rerank(q, db, self.rerank, self.rerank_k, self.alpha, shared)
        scores, self.last_ranking = _scores(bench, q, db)
        return scores

    def __call__(self, describer: Any, bench: RetrievalBenchmark) -> dict[str, float]:
        if not isinstance(bench, RetrievalBenchmark):
            raise OptionError(
                f"data: expected a RetrievalBenchmark (load_benchmark), got {type(bench).__name__}"
            )
        if bench.num_queries == 0 or len(bench.database) < 2:
            raise EmptyInputError(f"{bench.name}: expected queries and at least 2 database images")
        q, db = self.describe(describer, bench)
        return self.score(bench, q, db)


# ----------------------------------------------------------------------------------- many descriptors
#: Baseline rows of every retrieval table: a hand-crafted histogram and an untrained CNN with GeM.
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "color-hist (baseline)": ("color-hist", {}),
    "gem random-init resnet50 (baseline)": ("gem", {"backbone": "resnet50"}),
}


@dataclass
class RetrievalRow:
    """One table row: what was evaluated, with which re-ranking, and its scores."""

    label: str
    spec: str
    rerank: tuple[str, ...]
    scores: dict[str, float]
    seconds: float


@dataclass
class RetrievalReport:
    """Rows of one benchmark, the benchmark, the run settings, and the ranking of the best row."""

    benchmark: RetrievalBenchmark
    rows: list[RetrievalRow]
    config: dict[str, Any]
    best_ranking: np.ndarray | None = field(default=None, repr=False)

    @property
    def main_metric(self) -> str:
        return MAIN_METRIC[self.benchmark.kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark.name,
            "images": len(self.benchmark.database),
            "queries": self.benchmark.num_queries,
            "config": self.config,
            "rows": [
                {
                    "label": r.label,
                    "spec": r.spec,
                    "rerank": list(r.rerank),
                    "scores": r.scores,
                    "seconds": r.seconds,
                }
                for r in self.rows
            ],
        }


def build_describer(spec: str, *, allow_random: bool = False, **kwargs: Any) -> Any:
    """A descriptor from a registry spec (``name`` / ``name:weights``) or an ensemble YAML file."""
    import lookalike

    if spec.endswith((".yaml", ".yml")):
        from lookalike.descriptors.image.ensemble import load_ensemble

        return load_ensemble(spec, allow_random=allow_random)
    return lookalike.create("descriptor", spec, **kwargs)


def run_retrieval(
    benchmark: str,
    data: str | os.PathLike[str] | None,
    descriptors: Sequence[str],
    *,
    rerank: Sequence[str] = (),
    baselines: bool = True,
    allow_random: bool = False,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> RetrievalReport:
    """Evaluate baselines and ``descriptors`` (each plain and, when ``rerank``, re-ranked) on one benchmark.

    ``options`` go to :class:`RetrievalProtocol` (``max_size``, ``rerank_k``, ``alpha``, ``batch_size``,
    ``device``). Each descriptor is described once; the re-ranked row reuses its rows.
    """
    import time

    plain = RetrievalProtocol(**options)
    reranked = RetrievalProtocol(rerank=tuple(rerank), **options) if rerank else None
    bench = load_benchmark(benchmark, data)
    entries = [(label, spec, kw) for label, (spec, kw) in BASELINES.items()] if baselines else []
    entries += [(spec, spec, {}) for spec in descriptors]
    rows: list[RetrievalRow] = []
    best: tuple[float, np.ndarray | None] = (-float("inf"), None)
    for label, spec, kwargs in entries:
        if progress is not None:
            progress(label)
        start = time.perf_counter()
        torch.manual_seed(0)
        model = build_describer(spec, allow_random=allow_random, **kwargs)
        q, db = plain.describe(model, bench)
        seconds = time.perf_counter() - start
        for protocol in (p for p in (plain, reranked) if p is not None):
            scores = protocol.score(bench, q, db)
            rows.append(RetrievalRow(label, spec, protocol.rerank, scores, seconds))
            key = MAIN_METRIC[bench.kind]
            if scores[key] > best[0]:
                best = (scores[key], protocol.last_ranking)
    config = {
        "benchmark": benchmark,
        "descriptors": list(descriptors),
        "rerank": list(rerank),
        **options,
    }
    return RetrievalReport(bench, rows, config, best[1])
