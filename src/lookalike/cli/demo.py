"""``lookalike demo [--out DIR]``: the whole matching pipeline on held-out photos that ship with the packages.

No data set is needed. The held-out bundled photos (:data:`lookalike.data.bundled.HELD_OUT_PHOTOS`: no
shipped model trains on them) are each warped by a moderate and a strong seeded random homography
(:mod:`lookalike.eval.protocols.demo`); OpenCV's SIFT, our SIFT and our best shipped descriptor match
every pair. A match is correct within 3 px of the ground truth; precision = correct / matches.

The command prints a table (with the legend), and writes one picture per pair and descriptor (correct
matches green, wrong ones red, with the legend), ``results.json`` and a self-contained ``report.html``
into ``--out`` (default ``runs/<timestamp>-demo/``). Descriptor names and the output path are checked
before any work; a failed run leaves no folder behind.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from lookalike.eval.protocols.demo import DEMO_PHOTOS, THRESHOLD_PX

__all__ = ["DEMO_PHOTOS", "THRESHOLD_PX", "add_commands", "demo_descriptors"]


def demo_descriptors() -> list[str]:
    """OpenCV's SIFT, our SIFT and our best shipped descriptor (when it is not SIFT itself)."""
    from lookalike.matching.pipeline import DEFAULT_DESCRIPTOR, best_shipped_descriptor

    names = ["opencv-sift", DEFAULT_DESCRIPTOR]
    best = best_shipped_descriptor()
    if best not in names:
        names.append(best)
    return names


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.cli._common import check_output_dir, default_run_dir
    from lookalike.cli.evaluate import check_trained
    from lookalike.eval.protocols.demo import run_demo
    from lookalike.eval.report.demo import write_demo
    from lookalike.eval.report.terminal import demo_markdown, demo_rich, print_table

    console = Console()
    start = time.perf_counter()
    names = _split(args.descriptors) if args.descriptors else demo_descriptors()
    check_trained(names, allow_random=args.allow_random)
    out = check_output_dir(args.out if args.out is not None else default_run_dir("demo"))
    with console.status("matching held-out photos") as status:

        def step(name: str, pair: str) -> None:
            status.update(f"{name} on {pair}")

        # every descriptor is built (unknown names raise) before any pair is matched or file written
        result = run_demo(names, seed=args.seed, max_keypoints=args.max_keypoints, progress=step)
    created = not out.exists()
    try:
        paths = write_demo(result, out)
    except BaseException:
        if created and out.is_dir():
            shutil.rmtree(out)  # nothing half-written left behind
        raise
    print_table(console, demo_rich(result), demo_markdown(result))
    console.print(f"report: {Path(paths['report']).resolve()}")
    console.print(f"pictures and results.json: {out.resolve()}")
    console.print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``demo`` subcommand."""
    from lookalike.cli._common import add_allow_random

    parser = sub.add_parser(
        "demo",
        help="match held-out bundled photos under random homographies; no data needed",
        description=(
            "Run detect/describe/match/RANSAC on photos bundled with scikit-image that no shipped "
            f"model trains on ({', '.join(DEMO_PHOTOS)}), each under a moderate and a strong seeded "
            "random homography, for OpenCV SIFT, our SIFT and our best shipped descriptor. A match "
            f"is correct within {THRESHOLD_PX:g} px of the ground truth; precision = correct / "
            "matches. Prints a table and writes pictures (green: correct, red: wrong) and an HTML "
            "report."
        ),
    )
    parser.add_argument("--out", default=None, help="output folder (default runs/<timestamp>-demo)")
    parser.add_argument("--descriptors", help="comma-separated descriptors instead of the defaults")
    parser.add_argument(
        "--max-keypoints", type=int, default=1024, help="keypoints per image (default 1024)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random homographies")
    add_allow_random(parser)
    parser.set_defaults(func=_run)
