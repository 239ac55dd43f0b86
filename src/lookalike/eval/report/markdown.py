"""Markdown tables of the evaluation results (``results.md``, and the terminal when it is not a tty).

Every table is plain GitHub markdown: cells are never shortened, so a piped or redirected output keeps
full descriptor names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lookalike.eval.metrics.matching import ACCURACY_THRESHOLDS

if TYPE_CHECKING:
    from lookalike.eval.protocols.homography import MatchingReport
    from lookalike.eval.protocols.patch_table import PatchTable

__all__ = ["markdown_table", "matching_markdown", "patch_table_markdown", "patch_table_titles"]

#: Column titles of the four patch tasks.
patch_table_titles = {
    "fpr95": "FPR95",
    "verification": "verification mAP",
    "matching": "matching mAP",
    "retrieval": "retrieval mAP",
}


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], *, right: int = 0
) -> list[str]:
    """Lines of a markdown table; the columns from ``right`` on are right-aligned (0: none).

    Example:
        >>> markdown_table(["a", "b"], [[1, "x"]], right=1)
        ['| a | b |', '|---|---:|', '| 1 | x |']
    """
    align = ["---" if i < right or not right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _best(values: list[float | None], lower: bool) -> float | None:
    present = [round(v, 3) for v in values if v is not None]
    if len(present) < 2:
        return None
    return min(present) if lower else max(present)


def _settings(config: dict[str, Any]) -> list[str]:
    if not config:
        return []
    return ["", "## Settings", "", "```json", json.dumps(config, indent=2), "```"]


def _patch_rows(table: PatchTable, group: str) -> list[list[str]]:
    from lookalike.eval.protocols.patch_table import LEVELS, TASKS

    best = {
        (t, lv): _best([r.value(t, lv, group) for r in table.rows], lower=t == "fpr95")
        for t in TASKS
        for lv in LEVELS
    }
    rows = []
    for r in table.rows:
        cells = [r.name, "-" if r.dim is None else str(r.dim)]
        for t in TASKS:
            for lv in LEVELS:
                v = r.value(t, lv, group)
                text = "-" if v is None else f"{v:.3f}"
                bold = v is not None and round(v, 3) == best[(t, lv)]
                cells.append(f"**{text}**" if bold else text)
        cells.append("-" if r.ms_per_1000 is None else f"{r.ms_per_1000:.0f}")
        rows.append(cells)
    return rows


def patch_table_markdown(table: PatchTable) -> str:
    """A table over all sequences, then one per data set; best value per column in bold."""
    from lookalike.eval.protocols.patch_table import LEVELS, TASKS

    lines = [
        "# Patch descriptors: HPatches tasks on the same patches",
        "",
        "FPR95: false positive rate at 95 % recall of the verification pairs (lower is better); "
        "verification / matching / retrieval: mean average precision (higher is better), per "
        "jitter level (easy / hard / tough) and their mean. ms/1k: describe time per 1000 "
        "patches.",
    ]
    header = ["descriptor", "dim"]
    header += [
        f"{patch_table_titles[t].split()[0]} {lv[0] if lv != 'mean' else 'mean'}"
        for t in TASKS
        for lv in LEVELS
    ]
    header.append("ms/1k")
    for group in table.groups_shown():
        lines += ["", f"## {table.group_title(group)}", ""]
        lines += markdown_table(header, _patch_rows(table, group), right=1)
    notes = [f"- {r.name}: {r.note}" for r in table.rows if r.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += _settings(table.config)
    return "\n".join(lines) + "\n"


def matching_markdown(report: MatchingReport) -> str:
    """Tables: MMA at the headline threshold and homography accuracy per data set, then per sequence."""
    groups = report.groups()
    t = report.headline_threshold
    lines = ["# Image matching on homography sequences", ""]
    lines += [
        f"MMA@{t:g}: mean matching accuracy at {t:g} px (mutual NN, D2-Net protocol); "
        "H@e: fraction of pairs whose estimated homography has a mean corner error <= e px "
        "(pipeline matcher + MAGSAC++); #m: mutual NN matches per pair.",
        "",
    ]
    header = ["descriptor"]
    for g in [*groups, "all"]:
        header += [f"{g} MMA@{t:g}", f"{g} H@1/3/5", f"{g} #m"]
    rows = []
    for name in report.descriptors:
        row = [name]
        for g in [*groups, None]:
            s = report.summary(name, group=g)
            if not s["pairs"]:
                row += ["-", "-", "-"]
                continue
            acc = s["homography_accuracy"]
            row += [
                f"{report.mma_at(s):.3f}",
                "/".join(f"{acc[str(a)]:.2f}" for a in ACCURACY_THRESHOLDS),
                f"{s['matches']:.0f}",
            ]
        rows.append(row)
    lines += markdown_table(header, rows)
    lines += ["", f"## Per sequence (MMA@{t:g} / H@3)", ""]
    cells = []
    for seq in report.sequences():
        row = [seq]
        for name in report.descriptors:
            s = report.summary(name, sequence=seq)
            row.append(
                f"{report.mma_at(s):.2f} / {s['homography_accuracy']['3']:.2f}"
                if s["pairs"]
                else "-"
            )
        cells.append(row)
    lines += markdown_table(["sequence", *report.descriptors], cells)
    lines += _settings(report.config)
    return "\n".join(lines) + "\n"
