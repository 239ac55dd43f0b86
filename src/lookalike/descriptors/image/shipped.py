"""Which global image descriptor a user gets by default (``lookalike index build``, ``lookalike serve``)."""

from __future__ import annotations

__all__ = ["GLOBAL_FALLBACK", "GLOBAL_SHIPPED_CANDIDATES", "best_shipped_global_descriptor"]

#: Global descriptors that ship with the package, best first, ordered by retrieval mAP on the held-out
#: bundled photos (``bundled_instances`` validation views of chelsea/coffee/gravel, never evaluation
#: data): gem-tch (gem:bundled + transformed colour histogram) 0.531, gem:bundled 0.474, dolg:bundled
#: 0.383 (colour histogram 0.145). A composite without weights of its own (``gem-tch``) counts as
#: installed when its members' weights are (:func:`lookalike._registry.is_shipped`). A test checks
#: that each listed one is installed.
GLOBAL_SHIPPED_CANDIDATES: tuple[str, ...] = ("gem-tch", "gem:bundled", "dolg:bundled")
#: What the default falls back to when no trained global descriptor is installed: needs no weights.
GLOBAL_FALLBACK = "color-hist"


def best_shipped_global_descriptor() -> str:
    """The best global image descriptor usable offline (never downloads).

    Example:
        >>> best_shipped_global_descriptor() in (GLOBAL_FALLBACK, *GLOBAL_SHIPPED_CANDIDATES)
        True
    """
    from lookalike._registry import best_shipped

    return best_shipped("descriptor", GLOBAL_SHIPPED_CANDIDATES, GLOBAL_FALLBACK)
