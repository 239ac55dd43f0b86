"""The HTTP search service (``lookalike serve INDEX``): search an index by image or vector, over HTTP
and from a web page.

``create_app(INDEX)`` builds the FastAPI app (:mod:`lookalike.service.app` documents every endpoint and
error code); :class:`~lookalike.service.engine.SearchEngine` is the part without a web framework. Both
are imported on first use, so ``import lookalike.service`` stays light (no FastAPI, no torch).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchEngine", "ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from lookalike.service.app import create_app

        return create_app
    if name == "SearchEngine":
        from lookalike.service.engine import SearchEngine

        return SearchEngine
    if name == "ServiceSettings":
        from lookalike.service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
