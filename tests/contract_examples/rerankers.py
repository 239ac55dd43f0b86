"""Contract examples of the re-rankers (kind ``reranker``): ``reranker(shortlist, context)``."""

from __future__ import annotations

import functools

import numpy as np
import torch

from contract_examples import Example
from lookalike.index.rerankers import RerankContext, Shortlist


def _rows(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1)


def _shortlist(_tmp=None) -> tuple:
    return (Shortlist.search(_rows(3, 0), _rows(10, 1)),)


def _bad(_tmp=None) -> tuple:
    good = Shortlist.search(_rows(3, 0), _rows(10, 1))
    nan = good.queries.clone()
    nan[0, 0] = float("nan")
    return (Shortlist(good.ranked, good.scores, nan, good.database),)


def _labelled(_tmp=None) -> tuple:
    context = RerankContext(
        reference=_rows(6, 2), reference_labels=torch.tensor([0, 0, 1, 1, 2, 2])
    )
    return (*_shortlist(), context)


@functools.cache
def _images() -> tuple[list[np.ndarray], list[np.ndarray]]:
    import cv2

    from lookalike.data.bundled import bundled_photos

    photos = [cv2.resize(p.rgb, (128, 128)) for p in bundled_photos(["chelsea", "coffee"])]
    return photos[:1], [photos[1], np.ascontiguousarray(photos[0][:, ::-1]), photos[0]]


def _with_images(_tmp=None) -> tuple:
    queries, database = _images()
    shortlist = Shortlist.search(_rows(1, 3), _rows(3, 4))
    return shortlist, RerankContext(query_images=queries, database_images=database)


def _without_images(_tmp=None) -> tuple:
    return (_with_images()[0],)


EXAMPLES = {
    "reranker": {
        "aqe": Example(inputs=_shortlist, bad=_bad),
        "dba": Example(inputs=_shortlist, bad=_bad),
        "k_reciprocal": Example(kwargs={"k1": 4, "k2": 2}, inputs=_shortlist, bad=_bad),
        "label_voting": Example(kwargs={"k": 2}, inputs=_labelled, bad=_shortlist),
        "spatial": Example(kwargs={"top_k": 2}, inputs=_with_images, bad=_without_images),
    }
}
