"""Which global image descriptor a user gets by default (``lookalike index build``, ``lookalike serve``)."""

from __future__ import annotations

__all__ = ["GLOBAL_FALLBACK", "GLOBAL_SHIPPED_CANDIDATES", "best_shipped_global_descriptor"]

#: Global descriptors that ship with the package, best first. ``gem-color`` (gem:bundled + HSV colour
#: histogram) was chosen on whole held-out photos (``benchmarks/held_out_retrieval.py``: nine bundled
#: photos as colour scenes under five nuisances, scored with a gem trained without them by
#: ``configs/gem_bundled_leave_out.yaml``; never evaluation data): mAP .762, the network alone .711,
#: ``gem-tch`` (transformed colour histogram) .689. ``dolg:bundled`` comes after ``gem:bundled`` by
#: the region views of chelsea/coffee/gravel (0.383 against 0.474). A composite without weights of its
#: own counts as installed when its members' weights are (:func:`lookalike._registry.is_shipped`). A
#: test checks that each listed one is installed.
GLOBAL_SHIPPED_CANDIDATES: tuple[str, ...] = ("gem-color", "gem:bundled", "dolg:bundled")
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
