"""``lookalike index build/add/remove/info``: put a folder of images into a searchable index folder.

Convention:
    - ``build IMAGES_DIR --out INDEX`` describes every image file below ``IMAGES_DIR`` (recursive)
      with ``--descriptor`` (default: the best shipped global descriptor) into a faiss index of
      ``--type`` (see :mod:`lookalike.index.image_index` for the types and their minimum sizes).
      Ids are the paths relative to ``IMAGES_DIR``. Unreadable files are skipped, counted and listed
      in ``INDEX/skipped.txt``. Rerunning the same command resumes: only images not yet in the
      index are described (the index is saved every ``--save-every`` images and on Ctrl-C).
    - ``add INDEX IMAGES...|DIR`` adds files and folders with the index's own descriptor (images
      already in it are left alone); ``remove INDEX ID...`` removes items (an unknown id removes
      nothing and fails); ``info INDEX`` shows the manifest without loading the vectors.
    - Every path and option is checked before any image is described; errors are one line with exit
      code 1, usage errors exit code 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# Kept equal to lookalike.index.image_index.INDEX_TYPES by tests/cli/test_index_cli.py; listed here
# so that building the parser does not import torch.
INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq")
SHOWN_SKIPPED = 10


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _progress_bar(console: Any, label: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _with_progress(label: str, run: Any) -> Any:
    """Call ``run(progress_callback)`` under a rich progress bar on stderr."""
    console = _console()
    with _progress_bar(console, label) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run(update)


def _report_dict(report: Any) -> dict[str, Any]:
    return {
        "index": str(report.path),
        "found": report.found,
        "present": report.present,
        "added": report.added,
        "count": report.count,
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
    }


def _print_report(report: Any, verb: str, listed_in: str | None) -> None:
    print(
        f"{verb} {report.added} new image(s) into {report.path}: {report.count} in the index, "
        f"{report.present} already there, {len(report.skipped)} skipped"
        + (f" (listed in {listed_in})" if report.skipped and listed_in else "")
    )
    for path, reason in report.skipped[:SHOWN_SKIPPED]:
        print(f"  skipped {path}: {reason}")
    if len(report.skipped) > SHOWN_SKIPPED:
        print(f"  ... and {len(report.skipped) - SHOWN_SKIPPED} more")


def _build(args: argparse.Namespace) -> int:
    from lookalike.cli._common import check_output_dir, require_trained
    from lookalike.index.image_index import SKIPPED, build_index

    out = check_output_dir(args.out)
    if args.descriptor is not None:
        require_trained(args.descriptor, allow_random=args.allow_random)
    report = _with_progress(
        "describing",
        lambda progress: build_index(
            args.images_dir,
            out,
            descriptor=args.descriptor,
            kind=args.type,
            batch_size=args.batch_size,
            max_size=args.max_size,
            save_every=args.save_every,
            allow_random=args.allow_random,
            device=args.device,
            progress=progress,
        ),
    )
    if args.json:
        print(json.dumps(_report_dict(report), indent=2))
    else:
        _print_report(report, "indexed", str(out / SKIPPED))
    return 0


def _add(args: argparse.Namespace) -> int:
    from lookalike.index.image_index import add_images

    report = _with_progress(
        "describing",
        lambda progress: add_images(
            args.index,
            args.inputs,
            batch_size=args.batch_size,
            save_every=args.save_every,
            device=args.device,
            progress=progress,
        ),
    )
    if args.json:
        print(json.dumps(_report_dict(report), indent=2))
    else:
        _print_report(report, "added", None)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from lookalike.index import load_index

    index = load_index(args.index)
    index.remove(args.ids)  # an unknown id raises and removes nothing
    index.save(args.index)
    if args.json:
        print(json.dumps({"index": args.index, "removed": args.ids, "count": len(index)}))
    else:
        print(f"removed {len(args.ids)} item(s) from {args.index}: {len(index)} left")
    return 0


def index_info(path: str) -> dict[str, Any]:
    """The manifest and image settings of an index folder, without loading its vectors."""
    from pathlib import Path

    from lookalike.index.image_index import read_settings
    from lookalike.index.io import read_manifest

    manifest = read_manifest(path)
    settings = read_settings(path)
    files = manifest.get("files", {})
    return {
        "index": str(Path(path)),
        "backend": manifest.get("backend"),
        "type": settings.get("type"),
        "factory": manifest.get("options", {}).get("factory"),
        "metric": manifest.get("metric"),
        "dim": manifest.get("dim"),
        "count": manifest.get("count"),
        "descriptor": manifest.get("descriptor"),
        "descriptor_sha256": manifest.get("descriptor_sha256"),
        "max_size": settings.get("max_size"),
        "images": settings.get("root"),
        "skipped": settings.get("skipped"),
        "version": manifest.get("version"),
        "format_version": manifest.get("format_version"),
        "bytes": sum(int(f.get("bytes", 0)) for f in files.values()),
        "options": manifest.get("options", {}),
    }


def _info(args: argparse.Namespace) -> int:
    info = index_info(args.index)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"index {info['index']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in info.items():
        if key not in ("index", "options"):
            table.add_row(key, "-" if value is None else str(value))
    table.add_row("search options", json.dumps(info["options"], sort_keys=True))
    Console().print(table)
    return 0


def _common(parser: argparse.ArgumentParser, *, describe: bool) -> None:
    if describe:
        parser.add_argument("--batch-size", type=int, default=16, help="images described at once")
        parser.add_argument(
            "--save-every",
            type=int,
            default=1000,
            help="save the index after this many new images, or 10%% of its size when more "
            "(default 1000)",
        )
        parser.add_argument("--device", default="cpu", help="torch device to describe on (cpu)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``index`` command and its ``build``, ``add``, ``remove``, ``info`` subcommands."""
    from lookalike.cli._common import add_allow_random

    parser = sub.add_parser(
        "index",
        help="build and edit an image index (build, add, remove, info)",
        description="Describe a folder of images into a searchable index folder (faiss, with ids, "
        "metadata and atomic saves), add or remove images, and show what an index holds.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    parser.set_defaults(
        func=lambda args: parser.error("choose an action: build, add, remove, info")
    )

    build = actions.add_parser(
        "build",
        help="describe every image below a folder into an index (resumable)",
        description="Describe every image file below IMAGES_DIR (recursive) into the index folder "
        "--out. Unreadable files are skipped and listed in OUT/skipped.txt. Rerun the same command "
        "after an interruption: only images not yet in the index are described.",
    )
    build.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (recursive)")
    build.add_argument("--out", required=True, help="the index folder (new, or one to resume)")
    build.add_argument(
        "--descriptor",
        default=None,
        help="a registered global image descriptor, NAME or NAME:WEIGHTS (default: the index's "
        "own when resuming, else the best shipped global descriptor)",
    )
    build.add_argument(
        "--type",
        choices=INDEX_TYPES,
        default=None,
        help="flat (exact, default), hnsw (graph), ivf (needs >= 156 images) or ivfpq "
        "(compressed, needs >= 9984 images)",
    )
    build.add_argument(
        "--max-size",
        type=int,
        default=None,
        help="shrink images to this longer side in pixels before describing (default 512; "
        "queries are read the same way)",
    )
    _common(build, describe=True)
    add_allow_random(build)
    build.set_defaults(func=_build)

    add = actions.add_parser(
        "add",
        help="add image files or folders to an index",
        description="Describe image files and folders with the index's descriptor and add them "
        "(images already in the index are left alone).",
    )
    add.add_argument("index", metavar="INDEX", help="the index folder")
    add.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="image files or folders")
    _common(add, describe=True)
    add.set_defaults(func=_add)

    remove = actions.add_parser("remove", help="remove items by id", description="Remove items.")
    remove.add_argument("index", metavar="INDEX", help="the index folder")
    remove.add_argument("ids", nargs="+", metavar="ID", help="ids (paths relative to the images)")
    _common(remove, describe=False)
    remove.set_defaults(func=_remove)

    info = actions.add_parser("info", help="show an index's manifest", description="Show an index.")
    info.add_argument("index", metavar="INDEX", help="the index folder")
    _common(info, describe=False)
    info.set_defaults(func=_info)
