"""The result files each evaluation command writes (folders are created; files are replaced).

- patch table: ``results.json`` and ``results.md``;
- image matching: ``results.md``, ``results.json`` and ``mma.png``;
- demo: see :func:`lookalike.eval.report.demo.write_demo`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.eval.report.markdown import matching_markdown, patch_table_markdown
from lookalike.eval.report.plots import plot_mma

if TYPE_CHECKING:
    from lookalike.eval.protocols.homography import MatchingReport
    from lookalike.eval.protocols.patch_table import PatchTable

__all__ = ["write_matching", "write_patch_table"]


def write_patch_table(table: PatchTable, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.json`` and ``results.md`` into ``out_dir`` (created); return their paths."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(table.to_dict(), indent=1))
    paths["markdown"].write_text(patch_table_markdown(table))
    return paths


def write_matching(report: MatchingReport, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.md``, ``results.json`` and ``mma.png`` (MMA vs threshold) into ``out_dir``."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "json": out / "results.json", "plot": out / "mma.png"}
    paths["markdown"].write_text(matching_markdown(report))
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1))
    plot_mma(report, paths["plot"])
    return paths
