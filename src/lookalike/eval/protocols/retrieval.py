"""Image retrieval protocols: UKBench, scenes (homography sequences as instances), revisited Oxford/Paris.

A :class:`RetrievalBenchmark` lists database and query images and the ground truth; the ``retrieval``
protocol (kind ``protocol``) describes every image with a global descriptor, ranks the database by
exact search (one matrix product, top-``k`` by a stable sort), optionally re-ranks with a chain of
registered re-rankers (kind ``reranker``: ``dba``, ``aqe``, ``k_reciprocal``, ``spatial``; see
:mod:`lookalike.index.rerankers`) and scores with :mod:`lookalike.eval.metrics.retrieval`:

============  ========================================================  ================================
benchmark     queries and relevance                                     metrics
============  ========================================================  ================================
``ukbench``   every image against all (itself included); its group     ``ns`` (N-S score), ``map`` and
              of 4 is relevant                                          ``recall@4`` without the query
``scenes``    every image of every homography sequence; the other      ``map``, ``recall@1``, ``recall@5``
              images of its scene are relevant (itself excluded;
              copies of one scene in several releases are one scene,
              ``retrieval_benchmarks.SCENE_ALIASES``)
``revisited`` the 70 cropped queries of ROxford5k / RParis6k            ``easy/map`` ... ``hard/mp@10``
``gldv2``     GLDv2 retrieval: ``test/`` queries with a solution row,   ``map@100`` (Kaggle), ``recall@1``
              against ``index/``; ``retrieval_solution_v2.1.csv``
============  ========================================================  ================================

Images are read as RGB, scaled so that the longer side is at most ``max_size`` pixels, and described
one shape at a time (images of one size are batched). Evaluation only: never tune on these numbers.

Convention:
    UKBench ranks every image against the whole database, itself included (the N-S score counts the
    query); its mAP and recall drop the query from the list afterwards. Scenes leave the query out of
    its list. Re-rankers see the same lists (``Shortlist.self_index``), and ``spatial`` reads the
    images from their files (revisited queries cropped to their box).
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
    "RetrievalBenchmark",
    "RetrievalProtocol",
    "RetrievalReport",
    "RetrievalRow",
    "build_describer",
    "describe_images",
    "load_benchmark",
    "rank",
    "read_rgb",
    "rerankers",
    "run_retrieval",
]

log = logging.getLogger(__name__)

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
def rerankers() -> list[str]:
    """The registered re-ranker names (kind ``reranker``) a chain may use."""
    import lookalike

    return lookalike.list_registered("reranker")


def _context(bench: RetrievalBenchmark) -> Any:
    from lookalike.index.rerankers import RerankContext

    return RerankContext(query_images=bench.query_images(), database_images=bench.database)


def _shortlist(bench: RetrievalBenchmark, q: torch.Tensor, db: torch.Tensor) -> Any:
    """The initial lists the metrics of ``bench`` need (module Convention)."""
    from lookalike.index.rerankers import Shortlist

    if bench.kind in ("ukbench", "scenes"):
        index = torch.arange(db.shape[0])
        return Shortlist.search(q, db, self_index=index, exclude_self=bench.kind == "scenes")
    return Shortlist.search(q, db, k=100 if bench.kind == "gldv2" else None)


def _scores(bench: RetrievalBenchmark, shortlist: Any) -> tuple[dict[str, float], np.ndarray]:
    from lookalike.eval.metrics.retrieval import map_at_k, recall_at_k, revisited_map, ukbench_score

    ranked = shortlist.ranked.numpy()
    if bench.kind == "revisited":
        return revisited_map(ranked, bench.ground_truth, ks=(1, 5, 10)), ranked
    if bench.kind == "gldv2":
        relevant = [g["relevant"] for g in bench.ground_truth]
        scores = {"map@100": map_at_k(ranked, relevant, k=100)}
        return {**scores, "recall@1": recall_at_k(ranked, relevant, ks=(1,))[1]}, ranked
    labels, n = bench.labels, ranked.shape[0]
    relevant = [np.flatnonzero((labels == labels[i]) & (np.arange(n) != i)) for i in range(n)]
    out: dict[str, float] = {}
    if bench.kind == "ukbench":
        out["ns"] = ukbench_score(ranked[:, :4], labels, labels, k=4)
        ranked = ranked[ranked != np.arange(n)[:, None]].reshape(n, -1)
    out["map"] = map_at_k(ranked, relevant, k=n)
    if bench.kind == "ukbench":
        out["recall@4"] = recall_at_k(ranked, relevant, ks=(4,))[4]
    else:
        out.update({f"recall@{k}": v for k, v in recall_at_k(ranked, relevant, ks=(1, 5)).items()})
    return out, ranked


def _chain(
    rerank: Sequence[Any], rerank_k: int, alpha: float, options: dict[str, dict[str, Any]]
) -> list[Any]:
    """Re-rankers from names (built here) or ready instances (kept, e.g. to share a cache)."""
    import lookalike

    steps = []
    for step in rerank:
        if not isinstance(step, str):
            if not callable(step):
                raise OptionError(f"rerank: expected names or re-rankers, got {step!r}")
            steps.append(step)
            continue
        check_option(step, rerankers(), "rerank")
        kwargs = {"k": rerank_k, "alpha": alpha} if step in ("dba", "aqe") else {}
        steps.append(lookalike.create("reranker", step, **{**kwargs, **options.get(step, {})}))
    for step in steps:
        if "reference" in getattr(step, "needs", ()):
            raise OptionError(
                f"rerank: {getattr(step, 'name', step)!r} needs a labelled reference set, which "
                "the retrieval benchmarks do not have"
            )
    return steps


@register("protocol", "retrieval")
class RetrievalProtocol:
    """Describe, search exactly, re-rank, score: ``protocol(describer, benchmark) -> dict``.

    Args:
        max_size: longer side images are shrunk to.
        rerank: the re-ranking chain, in order: registered re-ranker names (see :func:`rerankers`)
            or re-ranker instances (e.g. one ``spatial`` shared by several protocols, so that its
            cached features serve them all).
        rerank_k: neighbours used by DBA and αQE.
        alpha: similarity exponent of DBA and αQE.
        rerank_options: keywords per re-ranker name (e.g. ``{"spatial": {"top_k": 10}}``), over
            ``rerank_k``/``alpha``.
        batch_size: images per forward pass.
        device: where the descriptor runs.

    Raises:
        OptionError: an unknown re-ranker or one that needs a labelled reference set
            (``label_voting``), or bad options.

    The call takes a descriptor module (or any callable from ``(B, 3, H, W)`` images in [0, 1] to
    ``(B, D)`` rows) or a registered spec string, and a :class:`RetrievalBenchmark`. The ranking of the
    last call is kept in :attr:`last_ranking` (for the ranked-list picture).
    """

    def __init__(
        self,
        *,
        max_size: int = 512,
        rerank: Sequence[Any] = (),
        rerank_k: int = 2,
        alpha: float = 3.0,
        rerank_options: dict[str, dict[str, Any]] | None = None,
        batch_size: int = 16,
        device: str = "cpu",
    ) -> None:
        if isinstance(rerank, str):
            from lookalike.index.rerankers import parse_rerank

            rerank = parse_rerank(rerank)
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 16:
            raise OptionError(f"max_size: expected an integer >= 16, got {max_size!r}")
        if isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or rerank_k < 1:
            raise OptionError(f"rerank_k: expected an integer >= 1, got {rerank_k!r}")
        self.steps = _chain(rerank, rerank_k, float(alpha), dict(rerank_options or {}))
        self.rerank = tuple(getattr(s, "name", type(s).__name__) for s in self.steps)
        self.max_size, self.rerank_k = max_size, rerank_k
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

    def shortlist(self, bench: RetrievalBenchmark, q: torch.Tensor, db: torch.Tensor) -> Any:
        """Search and run the re-ranking chain: the final :class:`~lookalike.index.rerankers.Shortlist`."""
        shortlist = _shortlist(bench, q, db)
        context = _context(bench) if self.steps else None
        for step in self.steps:
            shortlist = step(shortlist, context)
        return shortlist

    def score(
        self, bench: RetrievalBenchmark, q: torch.Tensor, db: torch.Tensor
    ) -> dict[str, float]:
        """Re-rank (if asked) and score described rows."""
        scores, self.last_ranking = _scores(bench, self.shortlist(bench, q, db))
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
#: Baseline rows of every retrieval table: a hand-crafted histogram, an untrained CNN with GeM, and
#: RootSIFT aggregated by VLAD over a codebook fitted on the bundled photos.
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "color-hist (baseline)": ("color-hist", {}),
    "gem random-init resnet50 (baseline)": ("gem", {"backbone": "resnet50"}),
    "vlad:bundled rootsift (baseline)": ("vlad:bundled", {}),
}


@dataclass
class RetrievalRow:
    """One table row: what was evaluated, with which re-ranking, its scores and wall times."""

    label: str
    spec: str
    rerank: tuple[str, ...]
    scores: dict[str, float]
    seconds: float
    rerank_seconds: float = 0.0


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
                    "rerank_seconds": r.rerank_seconds,
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


def _chains(rerank: Any) -> list[tuple[str, ...]]:
    """``"dba,aqe"``, ``["dba", "aqe"]`` (one chain) or ``[["dba", "aqe"], ["spatial"]]`` (several)."""
    from lookalike.index.rerankers import parse_rerank

    if isinstance(rerank, str) or all(isinstance(r, str) for r in rerank):
        chains = [parse_rerank(rerank)]
    else:
        chains = [parse_rerank(r) for r in rerank]
    return [tuple(c) for c in chains if c]


def run_retrieval(
    benchmark: str,
    data: str | os.PathLike[str] | None,
    descriptors: Sequence[str],
    *,
    rerank: Any = (),
    baselines: bool = True,
    allow_random: bool = False,
    progress: Callable[[str], None] | None = None,
    rerank_options: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> RetrievalReport:
    """Evaluate baselines and ``descriptors``: each plain and with every re-ranking chain.

    ``rerank`` is one chain (``"dba,aqe"`` or ``["dba", "aqe"]``) or several (``[["dba", "aqe"],
    ["spatial"]]``); each adds a row per descriptor. ``options`` go to :class:`RetrievalProtocol`
    (``max_size``, ``rerank_k``, ``alpha``, ``batch_size``, ``device``). Each descriptor is described
    once and its rows reuse the description; one instance of each re-ranker serves every chain and
    descriptor (``spatial`` computes each image's local features once per run).
    """
    import time

    import lookalike

    chains = _chains(rerank)
    rerank_options = dict(rerank_options or {})
    shared: dict[str, Any] = {}
    for name in dict.fromkeys(n for chain in chains for n in chain):
        if name in ("dba", "aqe"):
            continue  # cheap and parameterised by rerank_k / alpha: built per protocol
        check_option(name, rerankers(), "rerank")
        shared[name] = lookalike.create("reranker", name, **rerank_options.get(name, {}))
    protocols = [RetrievalProtocol(rerank_options=rerank_options, **options)]
    protocols += [
        RetrievalProtocol(
            rerank=[shared.get(n, n) for n in chain], rerank_options=rerank_options, **options
        )
        for chain in chains
    ]
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
        q, db = protocols[0].describe(model, bench)
        seconds = time.perf_counter() - start
        for protocol in protocols:
            if progress is not None and protocol.rerank:
                progress(f"{label} + {'+'.join(protocol.rerank)}")
            start = time.perf_counter()
            scores = protocol.score(bench, q, db)
            spent = time.perf_counter() - start
            rows.append(RetrievalRow(label, spec, protocol.rerank, scores, seconds, spent))
            key = MAIN_METRIC[bench.kind]
            if scores[key] > best[0]:
                best = (scores[key], protocol.last_ranking)
    config = {
        "benchmark": benchmark,
        "descriptors": list(descriptors),
        "rerank": [list(c) for c in chains],
        "rerank_options": rerank_options,
        **options,
    }
    return RetrievalReport(bench, rows, config, best[1])
