"""Rendering: tables printed outside a terminal are plain markdown and never cut."""

from __future__ import annotations

import io

from rich.console import Console

from lookalike.eval.protocols.homography import MatchingReport, PairResult
from lookalike.eval.report.markdown import markdown_table
from lookalike.eval.report.terminal import (
    matching_rich,
    matching_summary_markdown,
    print_table,
)

LONG = "opencv-sift-with-a-very-long-descriptor-name:weights.safetensors"


def _report() -> MatchingReport:
    pairs = [PairResult("hpatches-sequences/v_x", 1, tuple([0.5] * 10), 10, (20, 20), 0.5, 8)]
    return MatchingReport(pairs={LONG: pairs, "sift": pairs}, seconds={LONG: 1.0, "sift": 2.0})


def test_not_a_terminal_prints_full_markdown():
    buffer = io.StringIO()
    console = Console(file=buffer, width=40)  # narrow, and not a terminal
    report = _report()
    print_table(console, matching_rich(report), matching_summary_markdown(report))
    text = buffer.getvalue()
    assert LONG in text and "…" not in text
    assert text.splitlines()[0].startswith("| descriptor |")


def test_a_narrow_terminal_would_cut_the_rich_table():
    """The failure the rule avoids: rich shortens cells to the console width."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=40, force_terminal=True)
    print_table(console, matching_rich(_report()), "unused")
    assert LONG not in buffer.getvalue()


def test_markdown_table_alignment():
    assert markdown_table(["a", "b", "c"], [[1, 2, 3]], right=1)[1] == "|---|---:|---:|"
