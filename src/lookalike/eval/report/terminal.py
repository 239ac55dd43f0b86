"""Terminal tables (rich) of the evaluation results, and the rule for output that is not a terminal.

Convention:
    :func:`print_table` prints a rich table only on an interactive terminal. When the console writes to
    a file or a pipe (``lookalike evaluate ... > out.txt``, CI logs) it prints the plain markdown of the
    same numbers instead, so no cell is ever cut to the console width ("opencv-si…").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lookalike.core.errors import OptionError

if TYPE_CHECKING:
    from lookalike.eval.protocols.demo import DemoResult
    from lookalike.eval.protocols.homography import MatchingReport
    from lookalike.eval.protocols.patch_table import PatchTable

__all__ = [
    "DEMO_LEGEND",
    "demo_markdown",
    "demo_rich",
    "matching_rich",
    "matching_summary_markdown",
    "patch_table_rich",
    "print_table",
]

#: What the demo's colours and numbers mean (terminal caption, pictures and report).
DEMO_LEGEND = (
    "green: correct match (within 3 px of the ground-truth homography); red: wrong match; "
    "precision = correct / matches; H ok: estimated homography within 3 px (mean corner error)"
)


def print_table(console: Any, table: Any, markdown: str) -> None:
    """Print the rich ``table`` on a terminal, else the plain ``markdown`` (never cut; module Convention).

    Example:
        >>> import io
        >>> from rich.console import Console
        >>> buffer = io.StringIO()
        >>> print_table(Console(file=buffer), None, "| a |")
        >>> buffer.getvalue()
        '| a |\\n'
    """
    if console.is_terminal and table is not None:
        console.print(table)
    else:
        console.print(markdown, markup=False, highlight=False, soft_wrap=True)


def patch_table_rich(table: PatchTable, group: str = "all") -> Any:
    """A ``rich.table.Table`` of one group: each task as ``mean (easy/hard/tough)``."""
    from rich.table import Table

    from lookalike.eval.protocols.patch_table import ALL, LEVELS, TASKS
    from lookalike.eval.report.markdown import patch_table_titles

    if group != ALL and group not in table.groups:
        raise OptionError(f"group: expected one of {[ALL, *table.groups]}, got {group!r}")
    out = Table(title=f"patch descriptors: {table.group_title(group)}")
    out.add_column("descriptor", style="bold", no_wrap=True)
    out.add_column("dim", justify="right")
    for t in TASKS:
        out.add_column(f"{patch_table_titles[t]}{' ↓' if t == 'fpr95' else ''}", justify="right")
    out.add_column("ms/1k", justify="right")
    for r in table.rows:
        cells = [r.name, "-" if r.dim is None else str(r.dim)]
        for t in TASKS:
            mean = r.value(t, "mean", group)
            levels = [r.value(t, lv, group) for lv in LEVELS[:3]]
            if mean is None:
                cells.append("-")
                continue
            detail = "/".join("-" if v is None else f"{v:.2f}" for v in levels)
            cells.append(f"{mean:.3f} ({detail})")
        cells.append("-" if r.ms_per_1000 is None else f"{r.ms_per_1000:.0f}")
        out.add_row(*cells, style="dim" if r.skipped else None)
    return out


def _matching_cells(report: MatchingReport) -> tuple[list[str], list[list[str]]]:
    t = report.headline_threshold
    header = ["descriptor"]
    groups = report.groups()
    for g in [*groups, "all"]:
        header += [f"{g} MMA@{t:g}", f"{g} H@3"]
    header.append("time")
    rows = []
    for name in report.descriptors:
        cells = [name]
        for g in [*groups, None]:
            s = report.summary(name, group=g)
            if not s["pairs"]:
                cells += ["-", "-"]
                continue
            cells += [f"{report.mma_at(s):.3f}", f"{s['homography_accuracy']['3']:.2f}"]
        rows.append([*cells, f"{report.seconds.get(name, 0.0):.0f}s"])
    return header, rows


def matching_rich(report: MatchingReport) -> Any:
    """The summary table of ``evaluate matching``: MMA@3 and H@3 per data set and overall."""
    from rich.table import Table

    header, rows = _matching_cells(report)
    t = report.headline_threshold
    table = Table(
        title=f"image matching: MMA@{t:g} (mutual NN) and homography accuracy @3 px",
        caption="per data set and over all pairs; matches and 1/5 px in results.md",
    )
    table.add_column(header[0], style="bold", no_wrap=True)
    for title in header[1:]:
        table.add_column(title.replace(" ", "\n", 1), justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def matching_summary_markdown(report: MatchingReport) -> str:
    """The same numbers as :func:`matching_rich`, as markdown."""
    from lookalike.eval.report.markdown import markdown_table

    header, rows = _matching_cells(report)
    return "\n".join(markdown_table(header, rows, right=1))


def _demo_cells(result: DemoResult) -> tuple[list[str], list[list[str]]]:
    header = ["descriptor", "precision", "correct / matches", "H ok", "s/pair"]
    rows = []
    for name, s in result.summary().items():
        rows.append(
            [
                name,
                f"{s['precision']:.3f}",
                f"{s['correct']} / {s['matches']}",
                f"{s['h_ok']}/{s['pairs']}",
                f"{s['seconds']:.2f}",
            ]
        )
    return header, rows


def demo_rich(result: DemoResult) -> Any:
    """The demo's summary table, with the legend as caption."""
    from rich.table import Table

    header, rows = _demo_cells(result)
    photos = ", ".join(dict.fromkeys(p.photo for p in result.pairs))
    table = Table(
        title=f"matching on held-out bundled photos ({photos}; moderate and strong homographies)",
        caption=DEMO_LEGEND,
    )
    table.add_column(header[0], style="bold", no_wrap=True)
    for title in header[1:]:
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def demo_markdown(result: DemoResult) -> str:
    """The demo's summary table as markdown, followed by the legend."""
    from lookalike.eval.report.markdown import markdown_table

    header, rows = _demo_cells(result)
    return "\n".join([*markdown_table(header, rows, right=1), "", DEMO_LEGEND])
