"""``lookalike evaluate PROTOCOL ...``: evaluation protocols, one sub-command each.

- ``lookalike evaluate matching --data FOLDER [--descriptors sift,opencv-sift,...] [--out DIR]``:
  image matching on every homography sequence (HPatches, Oxford affine, EVD layouts) found below
  FOLDER: MMA at 1-10 px, matches, homography accuracy; writes ``results.md``, ``results.json`` and
  ``mma.png``.

- ``lookalike evaluate patches --data FOLDER [--descriptors sift,hardnet:bundled,...] [--out DIR]``:
  HPatches-style verification / matching / retrieval on patches cut from the same sequences; writes
  ``results.md`` and ``results.json``.

Each protocol contributes a ``_add_<protocol>(subparsers)`` function called by :func:`add_commands`.
"""

from __future__ import annotations

import argparse
from typing import Any

#: Descriptors of ``evaluate matching`` unless ``--descriptors`` is given (ours, then the anchors).
DEFAULT_MATCHING_DESCRIPTORS = ("sift", "rootsift", "kornia-sift", "opencv-sift", "opencv-rootsift")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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


def _run_matching(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from lookalike import __version__
    from lookalike.core.data import data_root
    from lookalike.core.errors import DataNotFoundError
    from lookalike.core.runs import git_revision, start_run
    from lookalike.data.sequences import find_sequences
    from lookalike.eval.homography import evaluate_matching, write_report
    from lookalike.matching.pipeline import ImageMatcher

    console = Console()
    root = args.data if args.data is not None else data_root()
    sequences = find_sequences(root)
    if args.sequences:
        wanted = _split(args.sequences)
        sequences = [s for s in sequences if any(w in s.name for w in wanted)]
    if not sequences:
        raise DataNotFoundError(
            f"no homography sequence (HPatches, Oxford affine or EVD layout) found below {root}"
        )
    names = _matching_descriptors(args)
    settings: dict[str, Any] = {
        "matcher": args.matcher,
        "detector": args.detector,
        "max_keypoints": args.max_keypoints,
        "ratio_threshold": args.ratio,
        "ransac_threshold": args.ransac_threshold,
    }
    matchers = {name: ImageMatcher(name, **settings) for name in names}
    config = {
        "data": str(root),
        "descriptors": names,
        "sequences": [s.name for s in sequences],
        "protocol": "MMA: mutual NN (D2-Net); homography: pipeline matcher + MAGSAC++, corner error",
        **settings,
        "lookalike": __version__,
        "git": git_revision(),
    }
    n_pairs = sum(len(s.homographies) for s in sequences)
    console.print(
        f"evaluating {len(names)} descriptors on {len(sequences)} sequences ({n_pairs} pairs) "
        f"from {root}"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("matching", total=len(sequences) * len(names))

        def step(label: str, sequence: str) -> None:
            progress.update(task, advance=1, description=f"{label:>16} {sequence}")

        report = evaluate_matching(sequences, matchers, progress=step)
    report.config = config
    if args.out is not None:
        out_dir = args.out
    else:
        out_dir = start_run(args.runs, "evaluate-matching", config).path
    paths = write_report(report, out_dir)

    table = Table(
        title="image matching: MMA@3 (mutual NN) and homography accuracy @3 px",
        caption="per data set and over all pairs; matches and 1/5 px in results.md",
    )
    table.add_column("descriptor", style="bold", no_wrap=True)
    groups = report.groups()
    for g in [*groups, "all"]:
        short = g.split("-")[0]
        table.add_column(f"{short}\nMMA@3", justify="right")
        table.add_column(f"{short}\nH@3", justify="right")
    table.add_column("time", justify="right")
    for name in report.descriptors:
        cells = []
        for g in [*groups, None]:
            s = report.summary(name, group=g)
            cells += [f"{s['mma'][2]:.3f}", f"{s['homography_accuracy']['3']:.2f}"]
        table.add_row(name, *cells, f"{report.seconds[name]:.0f}s")
    console.print(table)
    console.print(f"wrote {paths['markdown']}, {paths['json'].name} and {paths['plot'].name}")
    return 0


def _add_matching(sub: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--data", help="folder holding the sequences (default: the data root)")
    parser.add_argument(
        "--descriptors",
        help="comma-separated descriptors: registered names (sift, hardnet:bundled...), "
        "opencv-{sift,rootsift,vgg,boostdesc,teblid,orb}, kornia-{sift,rootsift} "
        f"(default: {','.join(DEFAULT_MATCHING_DESCRIPTORS)} and the best shipped one)",
    )
    parser.add_argument("--out", help="output folder (default: a new run folder under --runs)")
    parser.add_argument("--runs", default="runs", help="parent of run folders (default: runs)")
    parser.add_argument("--sequences", help="keep sequences whose name contains one of these")
    parser.add_argument("--max-keypoints", type=int, default=2048, help="keypoints per image")
    parser.add_argument("--detector", default="dog", help="dog, harris-laplace or hessian")
    parser.add_argument(
        "--matcher", default="smnn", help="matcher for the homography estimation (default smnn)"
    )
    parser.add_argument("--ratio", type=float, default=None, help="ratio threshold (default 0.9)")
    parser.add_argument(
        "--ransac-threshold", type=float, default=None, help="MAGSAC++ threshold in px (default 3)"
    )
    parser.set_defaults(func=_run_matching)


def _run_patches(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.eval.patch_table import DEFAULT_DESCRIPTORS, run_patch_table

    console = Console()
    descriptors = _split(args.descriptors) if args.descriptors else list(DEFAULT_DESCRIPTORS)
    table = run_patch_table(
        args.data,
        descriptors,
        groups=_split(args.groups) if args.groups else None,
        sequences=_split(args.sequences) if args.sequences else None,
        budget=args.budget,
        seed=args.seed,
        out_dir=args.out,
        progress=not args.quiet,
        device=args.device,
    )
    console.print(table.rich_table())
    console.print(f"results: {args.out}/results.md and {args.out}/results.json")
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
    parser.add_argument(
        "--data", default=None, help="folder of sequences (default: LOOKALIKE_DATA)"
    )
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
    parser.add_argument("--out", default="results/patches", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_patches)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``evaluate`` command and its protocol sub-commands."""
    parser = sub.add_parser(
        "evaluate",
        help="run an evaluation protocol (matching, patches)",
        description="Evaluation protocols. Evaluation data is for reporting only, never for tuning.",
    )
    protocols = parser.add_subparsers(
        dest="protocol", metavar="PROTOCOL", parser_class=type(parser)
    )
    _add_matching(protocols)
    _add_patches(protocols)

    def _usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
