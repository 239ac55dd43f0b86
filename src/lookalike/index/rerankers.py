"""Re-rankers (kind ``reranker``): one call signature, so that they chain.

A re-ranker maps a :class:`Shortlist` (per query, the ranked database candidates, their scores and
the global descriptors they came from) and an optional :class:`RerankContext` (what some re-rankers
need besides descriptors: the images, a labelled reference set) to a new :class:`Shortlist`::

    shortlist = Shortlist.search(queries, database, k=100)
    for step in build_rerankers(["dba", "aqe", "spatial"]):
        shortlist = step(shortlist, context)

=================  ==========================================================  ======================
name               what                                                        needs
=================  ==========================================================  ======================
``dba``            database-side augmentation, then search again               descriptors
``aqe``            α-weighted query expansion, then search again               descriptors
``k_reciprocal``   k-reciprocal encoding (Zhong et al. 2017), search again     descriptors
``label_voting``   the 2021 winners' soft up/down-ranking of the shortlist     ``reference`` rows with
                                                                               labels in the context
``spatial``        inlier counts of our local matching pipeline re-rank the   images in the context
                   top-k (:mod:`lookalike.index.spatial`)
=================  ==========================================================  ======================

The maths are the pure functions of :mod:`lookalike.index.expansion` and
:mod:`lookalike.index.rerank`; the classes here hold options and keep the shortlist consistent.

Convention:
    - Rows are L2-normalised and compared by the dot product; ``scores`` are non-increasing along
      each row of a shortlist (ties keep the earlier candidate first). Their meaning depends on the
      last step: cosine similarities after a search, ``-distance`` after ``k_reciprocal``, adjusted
      similarities after ``label_voting``, inlier-based keys after ``spatial``.
    - ``self_index[q]`` (optional) is the database index of query ``q`` when queries are database
      images (UKBench, scenes). ``exclude_self`` leaves it out of the list. αQE then expands with
      ``k + 1`` neighbours (the query itself is the first), DBA augments the queries with the
      database.
    - Steps that search again keep the shortlist's width ``K``.
    - Every re-ranker class has ``name`` (its registry name) and ``needs`` (the
      :class:`RerankContext` parts it reads: ``"images"``, ``"reference"``), so that a caller can
      refuse a chain it cannot feed before running it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from lookalike._registry import register
from lookalike.core.check import check_finite, check_int, check_positive, check_shape, check_tensor
from lookalike.core.errors import OptionError, ShapeError

__all__ = [
    "AlphaQueryExpansion",
    "DatabaseAugmentation",
    "KReciprocal",
    "LabelVoting",
    "RerankContext",
    "Shortlist",
    "build_rerankers",
    "check_shortlist",
    "parse_rerank",
]


def _rows(x: Any, name: str, dims: dict, spec: tuple[str, str]) -> torch.Tensor:
    check_tensor(x, name)
    check_shape(x, list(spec), name, dims)
    if not x.is_floating_point():
        raise OptionError(f"{name}: expected floating rows, got {x.dtype}")
    check_finite(x, name)
    return x


@dataclass(frozen=True)
class Shortlist:
    """Ranked database candidates per query, with the global descriptors they were ranked from.

    Attributes:
        ranked: ``(Q, K)`` int64 database indices, best first.
        scores: ``(Q, K)`` float scores, non-increasing along each row (module Convention).
        queries: ``(Q, D)`` L2-normalised query rows.
        database: ``(N, D)`` L2-normalised database rows.
        self_index: ``(Q,)`` int64 database index of each query when queries are database images,
            else ``None``.
        exclude_self: leave ``self_index`` out of each list.

    Example:
        >>> import torch
        >>> db = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> Shortlist.search(db[:1], db).ranked.tolist()
        [[0, 1, 2]]
        >>> Shortlist.search(db, db, self_index=torch.arange(3), exclude_self=True).ranked.tolist()
        [[1, 2], [2, 0], [1, 0]]
    """

    ranked: torch.Tensor
    scores: torch.Tensor
    queries: torch.Tensor
    database: torch.Tensor
    self_index: torch.Tensor | None = None
    exclude_self: bool = False

    @property
    def width(self) -> int:
        """``K``, the candidates per query."""
        return int(self.ranked.shape[1])

    @classmethod
    def search(
        cls,
        queries: torch.Tensor,
        database: torch.Tensor,
        *,
        k: int | None = None,
        self_index: torch.Tensor | None = None,
        exclude_self: bool = False,
    ) -> Shortlist:
        """Exact search by the dot product: the top ``k`` (default: all) candidates of each query.

        Raises:
            ShapeError, OptionError: rows of different widths, non-finite rows, bad ``k`` or
                ``self_index``.
        """
        dims: dict = {}
        _rows(queries, "queries", dims, ("Q", "D"))
        _rows(database, "database", dims, ("N", "D"))
        self_index = _self_index(self_index, queries.shape[0], database.shape[0])
        if exclude_self and self_index is None:
            raise OptionError("exclude_self: needs self_index")
        full = queries.float() @ database.float().T
        return cls.from_scores(
            full, queries, database, k=k, self_index=self_index, exclude_self=exclude_self
        )

    @classmethod
    def from_scores(
        cls,
        full: torch.Tensor,
        queries: torch.Tensor,
        database: torch.Tensor,
        *,
        k: int | None = None,
        self_index: torch.Tensor | None = None,
        exclude_self: bool = False,
    ) -> Shortlist:
        """The top ``k`` of ``(Q, N)`` scores ``full`` (ties: the lower database index first)."""
        n = full.shape[1]
        if exclude_self:
            full = full.clone()
            full[torch.arange(full.shape[0]), self_index] = -float("inf")
        avail = n - (1 if exclude_self else 0)
        k = avail if k is None else min(check_int(k, "k", 1), avail)
        order = torch.sort(full, dim=1, descending=True, stable=True)
        return cls(
            order.indices[:, :k],
            order.values[:, :k],
            queries,
            database,
            self_index,
            bool(exclude_self),
        )

    def research(self, queries: torch.Tensor, database: torch.Tensor) -> Shortlist:
        """Search again with new rows, keeping the width and the self convention."""
        return Shortlist.search(
            queries,
            database,
            k=self.width,
            self_index=self.self_index,
            exclude_self=self.exclude_self,
        )

    def reorder(self, order: torch.Tensor, scores: torch.Tensor) -> Shortlist:
        """The candidates permuted by ``order`` (``(Q, K)`` positions) with new ``scores``."""
        return replace(self, ranked=self.ranked.gather(1, order), scores=scores)


def _self_index(index: Any, q: int, n: int) -> torch.Tensor | None:
    if index is None:
        return None
    check_tensor(index, "self_index")
    if tuple(index.shape) != (q,) or index.is_floating_point():
        raise ShapeError(f"self_index: expected ({q},) integer indices, got {tuple(index.shape)}")
    if q and (int(index.min()) < 0 or int(index.max()) >= n):
        raise OptionError(f"self_index: expected indices in [0, {n}), got {index.tolist()[:5]}...")
    return index.long()


def check_shortlist(shortlist: Any) -> Shortlist:
    """Raise a :class:`~lookalike.core.errors.LookalikeError` unless ``shortlist`` is consistent."""
    if not isinstance(shortlist, Shortlist):
        raise OptionError(f"shortlist: expected a Shortlist, got {type(shortlist).__name__}")
    dims: dict = {}
    _rows(shortlist.queries, "queries", dims, ("Q", "D"))
    _rows(shortlist.database, "database", dims, ("N", "D"))
    check_shape(shortlist.ranked, ["Q", "K"], "ranked", dims)
    check_shape(shortlist.scores, ["Q", "K"], "scores", dims)
    if shortlist.ranked.is_floating_point():
        raise OptionError(f"ranked: expected integer indices, got {shortlist.ranked.dtype}")
    if shortlist.ranked.numel() and (
        int(shortlist.ranked.min()) < 0 or int(shortlist.ranked.max()) >= dims["N"]
    ):
        raise OptionError(f"ranked: expected database indices in [0, {dims['N']})")
    _self_index(shortlist.self_index, dims["Q"], dims["N"])
    return shortlist


@dataclass(frozen=True)
class RerankContext:
    """What some re-rankers need besides the descriptors.

    Attributes:
        query_images, database_images: one image per query / database row (paths, arrays or
            tensors, as :class:`~lookalike.matching.ImageMatcher` reads them), for ``spatial``.
        reference: ``(R, D)`` L2-normalised labelled rows (e.g. a training set), for
            ``label_voting``.
        reference_labels: ``(R,)`` integer labels ``>= 0`` of ``reference``.
    """

    query_images: Sequence[Any] | None = None
    database_images: Sequence[Any] | None = None
    reference: torch.Tensor | None = None
    reference_labels: torch.Tensor | None = None


# ----------------------------------------------------------------------------------- expansions
class _Expansion:
    """The options αQE and DBA share: ``k`` neighbours (``>= 1``), similarity exponent ``alpha``
    (``>= 0``, stored as a float); both read only descriptors.

    Example:
        >>> step = _Expansion(k=3, alpha=2)
        >>> step.k, step.alpha, step.needs
        (3, 2.0, ())
    """

    needs: tuple[str, ...] = ()

    def __init__(self, *, k: int = 2, alpha: float = 3.0) -> None:
        self.k = check_int(k, "k", 1)
        check_positive(alpha, "alpha", strict=False)
        self.alpha = float(alpha)


@register("reranker", "aqe")
class AlphaQueryExpansion(_Expansion):
    """αQE (:func:`~lookalike.index.expansion.alpha_query_expansion`), then search again.

    Args:
        k: database neighbours added to each query.
        alpha: similarity exponent.

    Example:
        >>> import torch
        >>> db = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> q = torch.tensor([[0.6, 0.8]])
        >>> AlphaQueryExpansion(k=1, alpha=1.0)(Shortlist.search(q, db)).ranked.tolist()
        [[1, 2, 0]]
    """

    name = "aqe"

    def __call__(self, shortlist: Shortlist, context: RerankContext | None = None) -> Shortlist:
        from lookalike.index.expansion import alpha_query_expansion

        check_shortlist(shortlist)
        extra = 1 if shortlist.self_index is not None else 0  # the query itself is neighbour 1
        queries = alpha_query_expansion(
            shortlist.queries, shortlist.database, k=self.k + extra, alpha=self.alpha
        )
        return shortlist.research(queries, shortlist.database)


@register("reranker", "dba")
class DatabaseAugmentation(_Expansion):
    """DBA (:func:`~lookalike.index.expansion.database_augmentation`), then search again.

    With ``self_index`` the queries are replaced by their augmented database rows.

    Args:
        k: neighbours averaged into each database row.
        alpha: similarity exponent.
    """

    name = "dba"

    def __call__(self, shortlist: Shortlist, context: RerankContext | None = None) -> Shortlist:
        from lookalike.index.expansion import database_augmentation

        check_shortlist(shortlist)
        database = database_augmentation(shortlist.database, k=self.k, alpha=self.alpha)
        queries = shortlist.queries
        if shortlist.self_index is not None:
            queries = database[shortlist.self_index]
        return shortlist.research(queries, database)


@register("reranker", "k_reciprocal")
class KReciprocal:
    """k-reciprocal re-ranking (:func:`~lookalike.index.rerank.k_reciprocal_rerank`) of the rows.

    Distances are Euclidean distances of the unit rows, ``sqrt(2 - 2 s)``; the new scores are the
    negated re-ranked distances. With ``self_index`` each query also meets itself in the gallery
    (distance 0), as in UKBench's protocol where the query belongs to the database.

    Args:
        k1, k2, lambda_value: as :func:`~lookalike.index.rerank.k_reciprocal_rerank` (paper: 20, 6,
            0.3); ``k1 + 1`` must not exceed ``Q + N``.
    """

    name = "k_reciprocal"
    needs: tuple[str, ...] = ()

    def __init__(self, *, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> None:
        self.k1, self.k2 = check_int(k1, "k1", 1), check_int(k2, "k2", 1)
        if not isinstance(lambda_value, (int, float)) or not 0.0 <= float(lambda_value) <= 1.0:
            raise OptionError(f"lambda_value: expected a number in [0, 1], got {lambda_value!r}")
        self.lambda_value = float(lambda_value)

    def __call__(self, shortlist: Shortlist, context: RerankContext | None = None) -> Shortlist:
        from lookalike.index.rerank import k_reciprocal_rerank

        check_shortlist(shortlist)
        q, db = shortlist.queries.float(), shortlist.database.float()

        def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (2.0 - 2.0 * (a @ b.T)).clamp_min(0.0).sqrt()

        d = k_reciprocal_rerank(
            dist(q, db),
            dist(q, q),
            dist(db, db),
            k1=self.k1,
            k2=self.k2,
            lambda_value=self.lambda_value,
        )
        return Shortlist.from_scores(
            -d,
            shortlist.queries,
            shortlist.database,
            k=shortlist.width,
            self_index=shortlist.self_index,
            exclude_self=shortlist.exclude_self,
        )


# ----------------------------------------------------------------------------------- label voting
@register("reranker", "label_voting")
class LabelVoting:
    """The 2021 landmark-retrieval winners' soft re-ranking of the shortlist.

    Queries and candidates get a label and a confidence from their ``k`` nearest rows of the
    labelled ``context.reference`` (:func:`~lookalike.index.expansion.knn_labels`); each candidate's
    score moves by ``± weight * c_q * c_n`` when the labels agree / disagree
    (:func:`~lookalike.index.expansion.label_voting`), and the shortlist is sorted again (stable).

    Args:
        k: labelled neighbours that vote.
        weight: strength of the adjustment.

    Example:
        >>> import torch
        >>> db = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> q = torch.tensor([[0.8, 0.6]])
        >>> context = RerankContext(reference=torch.tensor([[0.0, 1.0]]), reference_labels=torch.tensor([3]))
        >>> LabelVoting(k=1, weight=1.0)(Shortlist.search(q, db), context).ranked.tolist()
        [[1, 0]]
    """

    name = "label_voting"
    needs: tuple[str, ...] = ("reference",)

    def __init__(self, *, k: int = 3, weight: float = 1.0) -> None:
        self.k = check_int(k, "k", 1)
        check_positive(weight, "weight", strict=False)
        self.weight = float(weight)

    def __call__(self, shortlist: Shortlist, context: RerankContext | None = None) -> Shortlist:
        from lookalike.index.expansion import knn_labels, label_voting

        check_shortlist(shortlist)
        if context is None or context.reference is None or context.reference_labels is None:
            raise OptionError(
                "label_voting: needs a labelled reference set (RerankContext.reference and "
                "reference_labels, e.g. the training images); the benchmarks have none"
            )
        ref, labels = context.reference.to(shortlist.queries), context.reference_labels
        ql, qc = knn_labels(shortlist.queries, ref, labels, k=self.k)
        dl, dc = knn_labels(shortlist.database, ref, labels, k=self.k)
        rows = []
        for i, cand in enumerate(shortlist.ranked):  # the pure function over each query's list
            rows.append(
                label_voting(
                    shortlist.scores[i : i + 1].to(shortlist.queries.dtype),
                    ql[i : i + 1],
                    qc[i : i + 1],
                    dl[cand],
                    dc[cand],
                    weight=self.weight,
                )
            )
        adjusted = torch.cat(rows) if rows else shortlist.scores
        order = torch.sort(adjusted, dim=1, descending=True, stable=True)
        return shortlist.reorder(order.indices, order.values)


# ----------------------------------------------------------------------------------- chains
def parse_rerank(text: str | Sequence[str] | None) -> list[str]:
    """``"dba,aqe"`` or ``["dba", "aqe"]`` to a list of re-ranker names; ``None``/``"none"``: []."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [str(p).strip() for p in parts if str(p).strip()]
    return [] if names == ["none"] else names


def build_rerankers(
    names: str | Sequence[str] | None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Any]:
    """The registered re-rankers ``names`` (in order), each built with ``options.get(name, {})``.

    Raises:
        RegistryError: an unknown name (the message lists the registered ones).
        OptionError: options for a re-ranker that is not in the chain, or that it does not take.

    Example:
        >>> [type(r).__name__ for r in build_rerankers("dba,aqe", {"aqe": {"k": 1}})]
        ['DatabaseAugmentation', 'AlphaQueryExpansion']
    """
    import lookalike

    steps = parse_rerank(names)
    options = dict(options or {})
    unused = sorted(set(options) - set(steps))
    if unused:
        raise OptionError(f"rerank options for {unused}, which are not in the chain {steps}")
    return [lookalike.create("reranker", name, **dict(options.get(name, {}))) for name in steps]
