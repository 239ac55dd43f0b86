"""Contract examples contributed per area: each module here defines ``EXAMPLES = {kind: {name: Example}}``.

``tests/test_contracts.py`` merges them into its table, so a family adds its components' examples in
its own file (e.g. ``index.py``, ``layers.py``) instead of editing one shared table.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Example", "contributed_examples"]


@dataclass
class Example:
    """A minimal example of one registered component.

    Attributes:
        kwargs: constructor keywords for ``lookalike.create``.
        inputs: ``(tmp_path) -> args`` for a call that must work.
        bad: ``(tmp_path) -> args`` for a call that must raise a :class:`LookalikeError`.
        build: ``(tmp_path) -> component`` when ``create`` alone is not enough (data sets, fitted layers).
        bad_build: ``(tmp_path) -> None`` that must raise a :class:`LookalikeError` (missing data).
        out_shape: expected output shape of a layer for ``inputs``.
    """

    kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: Callable[[Path], tuple] | None = None
    bad: Callable[[Path], tuple] | None = None
    build: Callable[[Path], Any] | None = None
    bad_build: Callable[[Path], Any] | None = None
    out_shape: tuple[int, ...] | None = None


def contributed_examples() -> dict[str, dict[str, Example]]:
    """The union of every module's ``EXAMPLES`` (a name given twice is an error)."""
    merged: dict[str, dict[str, Example]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for kind, table in getattr(module, "EXAMPLES", {}).items():
            clash = set(merged.get(kind, {})) & set(table)
            if clash:
                raise ValueError(f"contract examples for {kind} {sorted(clash)} given twice")
            merged.setdefault(kind, {}).update(table)
    return merged
