"""``lookalike evaluate pose --data DIR [--descriptors ...] [--out DIR]``: relative pose on ScanNet-style pairs.

The library runs (:func:`lookalike.eval.protocols.pose.run_pose`); this module checks the arguments,
renders the table (pose AUC at 5/10/20 degrees, match precision, matches per pair) and writes
``results.md`` and ``results.json`` to ``--out`` or ``runs/<timestamp>-evaluate-pose/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.eval.protocols.pose import PoseReport

#: Descriptors of ``evaluate pose`` unless ``--descriptors`` is given (ours, then the anchors).
DEFAULT_POSE_DESCRIPTORS = ("sift", "rootsift", "opencv-sift", "opencv-rootsift")


def pose_cells(report: PoseReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table: AUC (percent) per threshold, precision, matches, time."""
    header = ["descriptor", *(f"AUC@{t:g}°" for t in report.thresholds)]
    header += ["precision", "#matches", "#inliers", "failed", "time"]
    rows = []
    for name in report.descriptors:
        s = report.summary(name)
        auc = [f"{100 * s['auc'][f'{t:g}']:.1f}" for t in report.thresholds]
        rows.append(
            [
                name,
                *auc,
                f"{100 * s['precision']:.1f}",
                f"{s['matches']:.0f}",
                f"{s['inliers']:.0f}",
                f"{s['failed']}/{s['pairs']}",
                f"{report.seconds.get(name, 0.0):.0f}s",
            ]
        )
    return header, rows


def pose_markdown(report: PoseReport) -> str:
    """``results.md``: what the numbers mean, the table, the settings."""
    from lookalike.eval.report.markdown import markdown_table

    config: dict[str, Any] = report.config
    lines = [
        "# Relative pose",
        "",
        "AUC@t: area under the pose-error curve up to t degrees, in percent (pose error = max of the "
        "rotation and translation angles; SuperGlue's protocol: images resized with K scaled, "
        "OpenCV USAC MAGSAC++ essential matrix, recoverPose). precision: percent of matches whose "
        f"symmetric epipolar error is < {config.get('epipolar_threshold', 5e-4):g} (normalised "
        "coordinates). failed: pairs without a pose. Evaluation only: do not tune on these numbers.",
        "",
    ]
    lines += markdown_table(*pose_cells(report), right=1)
    if config:
        lines += ["", "## Settings", "", "```json", json.dumps(config, indent=2), "```"]
    return "\n".join(lines) + "\n"


def _rich(report: PoseReport) -> Any:
    from rich.table import Table

    header, rows = pose_cells(report)
    table = Table(title="relative pose: AUC (%) and match precision (%)")
    table.add_column(header[0], style="bold", no_wrap=True)
    for title in header[1:]:
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _run_pose(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.cli._common import check_output_dir
    from lookalike.cli.evaluate import check_trained
    from lookalike.core.runs import start_run
    from lookalike.eval.protocols.pose import PoseOptions, run_pose
    from lookalike.eval.report.markdown import markdown_table
    from lookalike.eval.report.terminal import print_table

    console = Console()
    names = [p.strip() for p in (args.descriptors or "").split(",") if p.strip()]
    names = names or list(DEFAULT_POSE_DESCRIPTORS)
    check_trained(names, allow_random=args.allow_random)
    out = check_output_dir(args.out) if args.out is not None else None
    if out is None:
        check_output_dir(args.runs, what="--runs")
    options = PoseOptions(
        matcher=args.matcher,
        detector=args.detector,
        max_keypoints=args.max_keypoints,
        ratio_threshold=args.ratio,
        ransac_threshold=args.ransac_threshold,
    )
    report = run_pose(args.data, names, options=options)
    folder = out if out is not None else start_run(args.runs, "evaluate-pose", report.config).path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.md").write_text(pose_markdown(report))
    (folder / "results.json").write_text(json.dumps(report.to_dict(), indent=1))
    print_table(console, _rich(report), "\n".join(markdown_table(*pose_cells(report), right=1)))
    console.print(f"wrote {folder / 'results.md'} and results.json")
    return 0


def add_evaluate_command(protocols: argparse._SubParsersAction) -> None:
    """Contribute ``lookalike evaluate pose``."""
    from lookalike.cli._common import add_allow_random
    from lookalike.cli.match import DETECTORS, MATCHERS

    parser = protocols.add_parser(
        "pose",
        help="relative pose on ScanNet-style pairs (pose AUC@5/10/20, match precision)",
        description=(
            "Match every pair of a ScanNet-style pair list (the scannet-sample layout: "
            "scannet_sample_pairs_with_gt.txt + scannet_sample_images/), estimate the essential "
            "matrix with OpenCV USAC MAGSAC++, recover R and t and report the pose AUC at 5/10/20 "
            "degrees and the precision of the matches (symmetric epipolar error < 5e-4). Evaluation "
            "only: do not tune on these numbers."
        ),
    )
    parser.add_argument(
        "--data",
        help="the scannet-sample folder or a folder holding it (default: LOOKALIKE_DATA)",
    )
    parser.add_argument(
        "--descriptors",
        help="comma-separated descriptors (default: " + ",".join(DEFAULT_POSE_DESCRIPTORS) + ")",
    )
    parser.add_argument("--out", help="output folder (default: runs/<timestamp>-evaluate-pose)")
    parser.add_argument("--runs", default="runs", help="parent of run folders (default: runs)")
    parser.add_argument("--max-keypoints", type=int, default=2048, help="keypoints per image")
    parser.add_argument("--detector", default="dog", choices=DETECTORS, help="detector")
    parser.add_argument(
        "--matcher", default="smnn", choices=MATCHERS, help="matcher (default smnn)"
    )
    parser.add_argument("--ratio", type=float, default=None, help="ratio threshold (default 0.9)")
    parser.add_argument(
        "--ransac-threshold",
        type=float,
        default=1.0,
        help="essential-matrix inlier threshold in px (default 1, divided by the focal length)",
    )
    add_allow_random(parser)
    parser.set_defaults(func=_run_pose)
