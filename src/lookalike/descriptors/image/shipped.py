"""Which global image descriptor a user gets by default (``lookalike index build``, ``lookalike serve``)."""

from __future__ import annotations

__all__ = ["GLOBAL_FALLBACK", "GLOBAL_SHIPPED_CANDIDATES", "best_shipped_global_descriptor"]

#: Trained global descriptors that may ship with the package, best first (chosen on the held-out
#: bundled photos, never on evaluation data); a test checks that each listed one is installed.
GLOBAL_SHIPPED_CANDIDATES: tuple[str, ...] = ()
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
