"""Which global image descriptor a user gets by default (``lookalike index build``, ``lookalike serve``)."""

from __future__ import annotations

__all__ = ["GLOBAL_FALLBACK", "GLOBAL_SHIPPED_CANDIDATES", "best_shipped_global_descriptor"]

#: Global descriptors that ship with the package, best first, ordered by retrieval mAP on the held-out
#: bundled photos (``bundled_instances`` validation views of chelsea/coffee/gravel, never evaluation
#: data): gem-tch (gem:bundled + transformed colour histogram) 0.470, gem:bundled 0.401, dolg:bundled
#: 0.383 (colour histogram 0.145). A composite without weights of its own (``gem-tch``) counts as
#: installed when its members' weights are. A test checks that each listed one is installed.
GLOBAL_SHIPPED_CANDIDATES: tuple[str, ...] = ("gem-tch", "gem:bundled", "dolg:bundled")
#: What the default falls back to when no trained global descriptor is installed: needs no weights.
GLOBAL_FALLBACK = "color-hist"


def best_shipped_global_descriptor() -> str:
    """The best global image descriptor usable offline (never downloads).

    Example:
        >>> best_shipped_global_descriptor() in (GLOBAL_FALLBACK, *GLOBAL_SHIPPED_CANDIDATES)
        True
    """
    from lookalike._registry import is_shipped

    for spec in GLOBAL_SHIPPED_CANDIDATES:
        if is_shipped("descriptor", spec) or _composite_installed(spec):
            return spec
    return GLOBAL_FALLBACK


def _composite_installed(spec: str) -> bool:
    """Whether ``spec`` names a composite (a factory with a ``MEMBERS`` tuple, such as ``gem-tch``)
    whose members' weights are all installed."""
    from lookalike._registry import get_entry, is_shipped, split_spec
    from lookalike.core.errors import LookalikeError

    name, weights = split_spec(spec)
    try:
        members = getattr(get_entry("descriptor", name).factory, "MEMBERS", None)
    except LookalikeError:
        return False
    if weights is not None or not members:
        return False
    return all(is_shipped("descriptor", m) for m in members if split_spec(m)[1] is not None)
