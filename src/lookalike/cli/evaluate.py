"""``lookalike evaluate PROTOCOL ...``: evaluation protocols, one sub-command each.

- ``lookalike evaluate matching --data FOLDER [--descriptors sift,opencv-sift,...] [--out DIR]``:
  image matching on every homography sequence (HPatches, Oxford affine, EVD layouts) found below
  FOLDER: MMA at 1-10 px, matches, homography accuracy; writes ``results.md``, ``results.json`` and
  ``mma.png``.

- ``lookalike evaluate patches --data FOLDER [--descriptors sift,hardnet:bundled,...] [--out DIR]``:
  HPatches-style verification / matching / retrieval on patches cut from the same sequences; writes
  ``results.md`` and ``results.json``.

The library runs (:func:`lookalike.eval.protocols.run_matching`,
:func:`lookalike.eval.protocols.run_patch_table`); this module checks the arguments, renders the
results (:mod:`lookalike.eval.report`) and says where they went. Output folders follow
:mod:`lookalike.cli._common`: ``--out`` or ``runs/<timestamp>-<command>/``, checked before any work.
Each protocol contributes a ``_add_<protocol>(subparsers)`` function called by :func:`add_commands`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lookalike.cli._common import (
    add_allow_random,
    add_data_argument,
    add_output_arguments,
    add_views_argument,
    check_run_output,
    check_trained,
    parse_views,
    result_dir,
)
from lookalike.cli._common import split_list as _split

__all__ = ["DEFAULT_MATCHING_DESCRIPTORS", "add_commands", "check_trained"]

#: Descriptors of ``evaluate matching`` unless ``--descriptors`` is given (ours, then the anchors).
DEFAULT_MATCHING_DESCRIPTORS = ("sift", "rootsift", "kornia-sift", "opencv-sift", "opencv-rootsift")


def _check_out(args: argparse.Namespace) -> Path | None:
    """``--out`` checked (nothing created yet); None when results go to a new run folder."""
    return check_run_output(args.out, args.runs)


def _result_dir(args: argparse.Namespace, out: Path | None, command: str, config: dict) -> Path:
    """``--out``, or a new ``<runs>/<timestamp>-<command>/`` holding ``config.yaml`` and the versions."""
    return result_dir(out, args.runs, command, config)


def _matching_descriptors(args: argparse.Namespace) -> list[str]:
    import lookalike
    from lookalike.matching.pipeline import best_shipped_descriptor

    if args.descriptors:
        return _split(args.descriptors)
    registered = set(lookalike.list_registered("descriptor"))
    names = [d for d in DEFAULT_MATCHING_DESCRIPTORS if "-" in d or d in registered]
    best = best_shipped_descriptor()
    if best not in names:
        names.insert(0, best)
    return names


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True)


def _run_matching(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.eval.protocols import MatchingOptions, find_evaluation_sequences, run_matching
    from lookalike.eval.report.files import write_matching
    from lookalike.eval.report.terminal import matching_rich, matching_summary_markdown, print_table

    console = Console()
    names = _matching_descriptors(args)
    check_trained(names, allow_random=args.allow_random)
    out = _check_out(args)
    options = MatchingOptions(
        matcher=args.matcher,
        detector=args.detector,
        max_keypoints=args.max_keypoints,
        ratio_threshold=args.ratio,
        ransac_threshold=args.ransac_threshold,
        views=parse_views(args.views),
    )
    wanted = _split(args.sequences) if args.sequences else None
    root, found = find_evaluation_sequences(args.data, names=wanted)
    console.print(f"evaluating {len(names)} descriptors on {len(found)} sequences from {root}")
    with _progress(console) as progress:
        task = progress.add_task("matching", total=len(found) * len(names))

        def step(label: str, sequence: str) -> None:
            progress.update(task, advance=1, description=f"{label:>16} {sequence}")

        report = run_matching(root, names, sequences=wanted, options=options, progress=step)
    paths = write_matching(report, _result_dir(args, out, "evaluate-matching", report.config))
    print_table(console, matching_rich(report), matching_summary_markdown(report))
    console.print(f"wrote {paths['markdown']}, {paths['json'].name} and {paths['plot'].name}")
    return 0


def _add_matching(sub: argparse._SubParsersAction) -> None:
    from lookalike.cli.match import DETECTORS, MATCHERS

    parser = sub.add_parser(
        "matching",
        help="image matching on homography sequences (MMA, homography accuracy)",
        description=(
            "Match every pair (1, k) of every homography sequence found below --data "
            "(HPatches, Oxford affine and EVD layouts). Reports MMA at 1-10 px (mutual NN, D2-Net "
            "protocol), matches per pair and homography accuracy at 1/3/5 px per sequence, per "
            "data set and overall. Evaluation only: do not tune on these numbers."
        ),
    )
    add_data_argument(parser, "folder holding the sequences")
    parser.add_argument(
        "--descriptors",
        help="comma-separated descriptors: registered names (sift, hardnet:bundled...), "
        "opencv-{sift,rootsift,vgg,boostdesc,teblid,orb}, kornia-{sift,rootsift} "
        f"(default: {','.join(DEFAULT_MATCHING_DESCRIPTORS)} and the best shipped one)",
    )
    add_output_arguments(parser, "evaluate-matching")
    parser.add_argument("--sequences", help="keep sequences whose name contains one of these")
    parser.add_argument("--max-keypoints", type=int, default=2048, help="keypoints per image")
    parser.add_argument("--detector", default="dog", choices=DETECTORS, help="detector")
    parser.add_argument(
        "--matcher",
        default="smnn",
        choices=MATCHERS,
        help="matcher for the homography estimation (default smnn)",
    )
    parser.add_argument("--ratio", type=float, default=None, help="ratio threshold (default 0.9)")
    parser.add_argument(
        "--ransac-threshold", type=float, default=None, help="MAGSAC++ threshold in px (default 3)"
    )
    add_views_argument(parser)
    add_allow_random(parser)
    parser.set_defaults(func=_run_matching)


def _run_patches(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.eval.protocols import run_patch_table
    from lookalike.eval.protocols.patch_table import DEFAULT_DESCRIPTORS
    from lookalike.eval.report.files import write_patch_table
    from lookalike.eval.report.markdown import patch_table_markdown
    from lookalike.eval.report.terminal import patch_table_rich, print_table

    console = Console()
    descriptors = _split(args.descriptors) if args.descriptors else list(DEFAULT_DESCRIPTORS)
    check_trained(descriptors, allow_random=args.allow_random)
    out = _check_out(args)
    table = run_patch_table(
        args.data,
        descriptors,
        groups=_split(args.groups) if args.groups else None,
        sequences=_split(args.sequences) if args.sequences else None,
        budget=args.budget,
        seed=args.seed,
        progress=not args.quiet,
        device=args.device,
    )
    paths = write_patch_table(table, _result_dir(args, out, "evaluate-patches", table.config))
    print_table(console, patch_table_rich(table), patch_table_markdown(table))
    console.print(f"results: {paths['markdown']} and {paths['json']}")
    return 0


def _add_patches(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "patches",
        help="HPatches-style patch tasks cut from real homography sequences",
        description=(
            "Cut HPatches-style patches (easy/hard/tough jitter) from every homography sequence "
            "below --data and report FPR95 and verification / matching / retrieval mAP for each "
            "descriptor, all on the same patches."
        ),
    )
    add_data_argument(parser, "folder of sequences")
    parser.add_argument(
        "--descriptors",
        default=None,
        help="comma-separated specs: ours (sift, rootsift, hardnet:bundled, NAME:WEIGHTS.safetensors) "
        "and anchors (opencv-sift, opencv-rootsift, opencv-vgg, opencv-boostdesc, opencv-teblid, "
        "kornia-sift, kornia-mkd)",
    )
    parser.add_argument("--groups", default=None, help="comma-separated: hpatches, oxford, evd")
    parser.add_argument(
        "--sequences", default=None, help="keep sequences whose name contains these"
    )
    parser.add_argument("--budget", type=int, default=1000, help="keypoints per reference image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter and the task pairs")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    add_output_arguments(parser, "evaluate-patches")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_allow_random(parser)
    parser.set_defaults(func=_run_patches)


def _add_contributed(protocols: argparse._SubParsersAction) -> None:
    """Sub-commands of other modules: every ``lookalike.cli.evaluate_<protocol>`` module's
    ``add_evaluate_command(protocols)`` (one module per family, so this file stays small)."""
    import importlib
    import pkgutil

    package = importlib.import_module("lookalike.cli")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("evaluate_"):
            module = importlib.import_module(f"lookalike.cli.{info.name}")
            module.add_evaluate_command(protocols)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``evaluate`` command and its protocol sub-commands."""
    parser = sub.add_parser(
        "evaluate",
        help="run an evaluation protocol (matching, patches, pose, retrieval, reid)",
        description="Evaluation protocols. Evaluation data is for reporting only, never for tuning.",
    )
    protocols = parser.add_subparsers(
        dest="protocol", metavar="PROTOCOL", parser_class=type(parser)
    )
    _add_matching(protocols)
    _add_patches(protocols)
    _add_contributed(protocols)

    def _usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
