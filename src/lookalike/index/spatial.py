"""Spatial verification (kind ``reranker``, name ``spatial``): local matches re-rank global search.

For each query the top ``top_k`` candidates of the shortlist are matched with our local matching
pipeline (:class:`~lookalike.matching.ImageMatcher`: DoG keypoints, our RootSIFT, mutual nearest
neighbours with the ratio test, MAGSAC++ homography or fundamental matrix) and re-ranked by their
inlier counts. Keypoints and descriptors are computed once per image and cached for the life of the
re-ranker (never re-detected per pair), so one re-ranker serves several descriptors of a benchmark.

Convention:
    - A candidate is *verified* when it has at least ``min_inliers`` inliers. Verified candidates come
      first, by decreasing inlier count; ties, the unverified candidates and everything after the
      top ``top_k`` keep the shortlist's order.
    - New scores (non-increasing along each row): ``inliers + t`` for verified candidates and
      ``t - 1`` for the others, with ``t = (K - r) / (2 K)`` in ``(0, 0.5]`` from the candidate's
      position ``r`` before verification; so ``floor(score)`` of a verified candidate is its inlier
      count.
    - :data:`MIN_INLIERS` = 15 was chosen a priori, the usual order of magnitude in the spatial
      verification literature (Philbin et al. 2007; Radenović et al. 2018), and checked on synthetic
      warps of the held-out bundled photos (``tests/index/test_spatial.py``), never on evaluation data.
    - Images of the context are read like the matching pipeline reads them (paths, arrays or
      tensors); a query that is a database image (``self_index``) is matched with itself too.
      Features of images given by path stay cached across calls (:meth:`clear_cache` frees them),
      and so do the inlier counts of pairs of paths (the chains ``spatial`` and ``dba,aqe,spatial``
      verify mostly the same pairs); those of arrays only within one call.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

from lookalike._registry import register
from lookalike.core.check import check_int
from lookalike.core.errors import OptionError
from lookalike.index.rerankers import RerankContext, Shortlist, check_shortlist

__all__ = ["MIN_INLIERS", "SpatialVerification", "spatial_scores"]

log = logging.getLogger(__name__)

#: Inliers a candidate needs to count as verified (see the module Convention).
MIN_INLIERS = 15


def spatial_scores(inliers: torch.Tensor, *, min_inliers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, scores)`` of one shortlist from the ``(Q, K)`` inlier counts of its candidates.

    Unverified entries may hold any count below ``min_inliers`` (``0`` for candidates not matched).

    Example:
        >>> import torch
        >>> order, scores = spatial_scores(torch.tensor([[3, 40, 0, 40]]), min_inliers=15)
        >>> order.tolist(), scores.tolist()
        ([[1, 3, 0, 2]], [[40.375, 40.125, -0.5, -0.75]])
    """
    check_int(min_inliers, "min_inliers", 1)
    q, k = inliers.shape
    position = torch.arange(k, dtype=torch.float64).expand(q, k)
    t = (k - position) / (2.0 * k)
    verified = inliers >= min_inliers
    key = torch.where(verified, inliers.double() + t, t - 1.0)
    order = torch.sort(key, dim=1, descending=True, stable=True)
    return order.indices, order.values.float()


@register("reranker", "spatial")
class SpatialVerification:
    """Re-rank the top ``top_k`` candidates of each query by inliers of local matching.

    Args:
        top_k: candidates verified per query.
        min_inliers: inliers a verified candidate needs (default :data:`MIN_INLIERS`).
        descriptor: local descriptor spec of the pipeline (default our ``rootsift``).
        max_keypoints: keypoint budget per image.
        max_size: longest image side the pipeline works on.
        geometry: ``"homography"`` or ``"fundamental"``.
        matcher: ``"smnn"`` (mutual nearest neighbours with the ratio test) or another matcher of
            :func:`~lookalike.matching.match_descriptors`.
        **pipeline: other :class:`~lookalike.matching.ImageMatcher` keywords (``ratio_threshold``,
            ``ransac_threshold``, ``detector``...).

    The call takes a :class:`~lookalike.index.rerankers.Shortlist` and a
    :class:`~lookalike.index.rerankers.RerankContext` with ``query_images`` and
    ``database_images``. :attr:`last_inliers` keeps the ``(Q, K)`` counts of the last call
    (positions of the input shortlist; ``0`` beyond ``top_k``).
    """

    name = "spatial"
    needs: tuple[str, ...] = ("images",)

    def __init__(
        self,
        *,
        top_k: int = 20,
        min_inliers: int = MIN_INLIERS,
        descriptor: str = "rootsift",
        max_keypoints: int = 1024,
        max_size: int = 640,
        geometry: str = "homography",
        matcher: str = "smnn",
        **pipeline: Any,
    ) -> None:
        from lookalike.matching import ImageMatcher

        self.top_k = check_int(top_k, "top_k", 1)
        self.min_inliers = check_int(min_inliers, "min_inliers", 1)
        if geometry not in ("homography", "fundamental"):
            raise OptionError(f"geometry: expected 'homography' or 'fundamental', got {geometry!r}")
        self.matcher = ImageMatcher(
            descriptor,
            matcher=matcher,
            max_keypoints=max_keypoints,
            max_size=max_size,
            geometry=geometry,
            **pipeline,
        )
        self._cache: dict[Any, Any] = {}
        self._pairs: dict[tuple[str, str], int] = {}
        self.last_inliers: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"SpatialVerification(top_k={self.top_k}, min_inliers={self.min_inliers}, {self.matcher!r})"

    def clear_cache(self) -> None:
        """Forget the cached keypoints, descriptors and inlier counts."""
        self._cache.clear()
        self._pairs.clear()

    def features(self, image: Any, local: dict[Any, Any] | None = None, key: Any = None) -> Any:
        """Described keypoints of ``image``, computed once.

        An image given by its path is cached for the life of the re-ranker under its path; any other
        image under ``key`` in the ``local`` cache of one call (or not at all).
        """
        if isinstance(image, (str, os.PathLike)):
            cache, key = self._cache, os.fspath(image)
        else:
            cache = local if local is not None and key is not None else None
        if cache is None:
            return self.matcher.features(image)
        found = cache.get(key)
        if found is None:
            found = cache[key] = self.matcher.features(image)
        return found

    def inliers(self, f0: Any, f1: Any) -> int:
        """Inliers of the verified matches between two described images."""
        indices, _ = self.matcher.match_features(f0, f1)
        fit = self.matcher.verify(f0.keypoints.xy[indices[:, 0]], f1.keypoints.xy[indices[:, 1]])
        return fit.num_inliers

    def _pair(self, query: Any, item: Any, local: dict[Any, Any], i: int, j: int) -> int:
        paths = isinstance(query, (str, os.PathLike)) and isinstance(item, (str, os.PathLike))
        key = (os.fspath(query), os.fspath(item)) if paths else None
        if key is not None and key in self._pairs:
            return self._pairs[key]
        fq = self.features(query, local, ("query", i))
        count = self.inliers(fq, self.features(item, local, ("database", j)))
        if key is not None:
            self._pairs[key] = count
        return count

    def _images(self, shortlist: Shortlist, context: RerankContext | None):
        if context is None or context.query_images is None or context.database_images is None:
            raise OptionError(
                "spatial: needs the images (RerankContext.query_images and database_images)"
            )
        q, n = shortlist.queries.shape[0], shortlist.database.shape[0]
        if len(context.query_images) != q or len(context.database_images) != n:
            raise OptionError(
                f"spatial: expected {q} query and {n} database images, got "
                f"{len(context.query_images)} and {len(context.database_images)}"
            )
        return context.query_images, context.database_images

    def __call__(self, shortlist: Shortlist, context: RerankContext | None = None) -> Shortlist:
        check_shortlist(shortlist)
        queries, database = self._images(shortlist, context)
        k = min(self.top_k, shortlist.width)
        counts = np.zeros(tuple(shortlist.ranked.shape), dtype=np.int64)
        local: dict[Any, Any] = {}
        for i, candidates in enumerate(shortlist.ranked[:, :k].tolist()):
            for r, j in enumerate(candidates):
                counts[i, r] = self._pair(queries[i], database[j], local, i, j)
        self.last_inliers = torch.from_numpy(counts)
        order, scores = spatial_scores(self.last_inliers, min_inliers=self.min_inliers)
        return shortlist.reorder(order, scores)
