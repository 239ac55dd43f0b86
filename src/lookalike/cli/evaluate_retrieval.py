"""``lookalike evaluate retrieval``: global image descriptors on UKBench, scenes or revisited Oxford/Paris.

``lookalike evaluate retrieval --data DIR --benchmark ukbench|scenes|revisited|gldv2 [--descriptors a,b]
[--rerank dba,aqe [--rerank spatial ...]] [--rerank-option spatial.top_k=10] [--out DIR]`` prints one
table (baseline rows first: colour histogram, a random-init ResNet-50 + GeM, RootSIFT-VLAD over the
bundled codebook), writes ``results.md``, ``results.json`` and ``ranked.png`` (the ranked lists of the
first queries for the best row: green frame = relevant, red = not). Every ``--rerank`` is a chain of
registered re-rankers (kind ``reranker``) and adds a row per descriptor. The library runs
(:func:`lookalike.eval.protocols.retrieval.run_retrieval`); this module checks the arguments and
renders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: Metric columns shown per benchmark kind.
COLUMNS = {
    "ukbench": ("ns", "map", "recall@4"),
    "scenes": ("map", "recall@1", "recall@5"),
    "revisited": ("easy/map", "medium/map", "hard/map", "medium/mp@10", "hard/mp@10"),
    "gldv2": ("map@100", "recall@1"),
}


def _cells(report: Any) -> tuple[list[str], list[list[str]]]:
    columns = COLUMNS[report.benchmark.kind]
    header = ["descriptor", "re-ranking", *columns, "describe s", "re-rank s"]
    rows = []
    for row in report.rows:
        values = [f"{row.scores[c]:.3f}" for c in columns]
        times = [f"{row.seconds:.1f}", f"{row.rerank_seconds:.1f}"]
        rows.append([row.label, "+".join(row.rerank) or "-", *values, *times])
    return header, rows


def retrieval_markdown(report: Any) -> str:
    """The results table as markdown, with the benchmark and settings above it."""
    from lookalike.eval.report.markdown import markdown_table

    header, rows = _cells(report)
    bench = report.benchmark
    lines = [
        f"# Retrieval: {bench.name}",
        "",
        f"{len(bench.database)} database images, {bench.num_queries} queries; "
        f"settings: {json.dumps(report.config, default=str)}",
        "",
        *markdown_table(header, rows, right=2),
        "",
    ]
    return "\n".join(lines)


def _rich(report: Any) -> Any:
    from rich.table import Table

    header, rows = _cells(report)
    table = Table(title=f"retrieval: {report.benchmark.name}")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i >= 2 else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _relevant(bench: Any, query: int, item: int) -> bool:
    if bench.kind == "revisited":
        gt = bench.ground_truth[query]
        return bool(item in set(gt["easy"].tolist()) | set(gt["hard"].tolist()))
    if bench.kind == "gldv2":
        return bool(item in set(bench.ground_truth[query]["relevant"].tolist()))
    return bool(bench.labels[item] == bench.labels[query])


def ranked_grid(report: Any, *, queries: int = 6, top: int = 6, cell: int = 96) -> Any:
    """``(H, W, 3)`` uint8 picture: per row a query then its top results framed green / red."""
    import cv2
    import numpy as np

    from lookalike.eval.protocols.retrieval import read_rgb

    bench, ranking = report.benchmark, report.best_ranking
    step = max(1, bench.num_queries // queries)
    picks = list(range(0, bench.num_queries, step))[:queries]
    sources = bench.database if bench.queries is None else bench.queries

    def thumb(path: Path, colour: tuple[int, int, int], box: Any = None) -> np.ndarray:
        rgb = (read_rgb(path, max_size=cell, box=box).permute(1, 2, 0).numpy() * 255).astype(
            np.uint8
        )
        canvas = np.full((cell, cell, 3), 255, np.uint8)
        canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
        return cv2.rectangle(canvas, (0, 0), (cell - 1, cell - 1), colour, 4)

    lines = []
    for q in picks:
        box = None if bench.boxes is None else bench.boxes[q]
        row = [thumb(sources[q], (60, 60, 60), box)]
        for item in ranking[q, :top]:
            good = _relevant(bench, q, int(item))
            row.append(thumb(bench.database[int(item)], (0, 170, 0) if good else (220, 0, 0)))
        lines.append(np.concatenate(row, axis=1))
    return np.concatenate(lines, axis=0)


def write_retrieval(report: Any, out: Path) -> dict[str, Path]:
    """Write ``results.md``, ``results.json`` and ``ranked.png`` into ``out`` (created)."""
    from lookalike.data.images import write_image

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / "results.md",
        "json": out / "results.json",
        "picture": out / "ranked.png",
    }
    paths["markdown"].write_text(retrieval_markdown(report))
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1, default=str))
    if report.best_ranking is not None:
        write_image(paths["picture"], ranked_grid(report))
    else:
        paths.pop("picture")
    return paths


def rerank_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["spatial.top_k=10", "aqe.alpha=2"]`` to ``{"spatial": {"top_k": 10}, "aqe": {"alpha": 2.0}}``.

    Values are read as YAML scalars (``10`` an int, ``2.5`` a float, ``true`` a bool, else text).

    Raises:
        OptionError: an item that is not ``NAME.KEY=VALUE``.

    Example:
        >>> rerank_options(["spatial.top_k=10", "spatial.geometry=fundamental"])
        {'spatial': {'top_k': 10, 'geometry': 'fundamental'}}
    """
    import yaml

    from lookalike.core.errors import OptionError

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        name, dot, option = key.strip().partition(".")
        if not (sep and dot and name and option):
            raise OptionError(f"--rerank-option: expected NAME.KEY=VALUE, got {item!r}")
        out.setdefault(name, {})[option] = yaml.safe_load(value)
    return out


def _check_rerank(chains: list[list[str]], options: dict[str, dict[str, Any]]) -> None:
    """Refuse unknown re-rankers and options for re-rankers in no chain, before any work."""
    from lookalike.core.check import check_option
    from lookalike.core.errors import OptionError
    from lookalike.eval.protocols.retrieval import rerankers

    names = {name for chain in chains for name in chain}
    for name in sorted(names):
        check_option(name, rerankers(), "--rerank")
    unused = sorted(set(options) - names)
    if unused:
        raise OptionError(f"--rerank-option: {unused} are in no --rerank chain")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.cli._common import check_run_output, check_trained, result_dir
    from lookalike.cli._common import split_list as _split
    from lookalike.eval.protocols.retrieval import run_retrieval
    from lookalike.eval.report.terminal import print_table

    console = Console()
    if args.descriptors is None:  # the default of index build / serve, as evaluate matching does
        from lookalike.descriptors.image.shipped import best_shipped_global_descriptor

        specs = [best_shipped_global_descriptor()]
    else:
        specs = _split(args.descriptors)
    check_trained(
        [s for s in specs if not s.endswith((".yaml", ".yml"))], allow_random=args.allow_random
    )
    rerank = [chain for chain in (_split(r) for r in args.rerank or []) if chain != ["none"]]
    options = rerank_options(args.rerank_option)
    _check_rerank(rerank, options)
    out = check_run_output(args.out, args.runs)
    report = run_retrieval(
        args.benchmark,
        args.data,
        specs,
        rerank=rerank,
        rerank_options=options,
        baselines=not args.no_baselines,
        allow_random=args.allow_random,
        progress=lambda label: console.print(f"describing with {label}"),
        max_size=args.max_size,
        rerank_k=args.rerank_k,
        alpha=args.alpha,
        device=args.device,
    )
    paths = write_retrieval(report, result_dir(out, args.runs, "evaluate-retrieval", report.config))
    print_table(console, _rich(report), retrieval_markdown(report))
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def add_evaluate_command(protocols: argparse._SubParsersAction) -> None:
    """Contribute ``lookalike evaluate retrieval``."""
    from lookalike.cli._common import add_allow_random, add_data_argument, add_output_arguments
    from lookalike.eval.protocols.retrieval import BENCHMARKS

    parser = protocols.add_parser(
        "retrieval",
        help="image retrieval with global descriptors (UKBench N-S, scenes mAP, ROxford/RParis, GLDv2)",
        description=(
            "Describe every image with global descriptors, rank the database by exact search, "
            "optionally re-rank (chains of DBA, alpha-QE, k-reciprocal, spatial verification), and "
            "report the benchmark's metrics next to baseline rows (colour histogram, random-init "
            "ResNet-50 + GeM, RootSIFT-VLAD). Evaluation only: never tune on it."
        ),
    )
    add_data_argument(parser, "data folder")
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="which benchmark")
    parser.add_argument(
        "--descriptors",
        help="comma-separated specs: gem-color, gem-tch, gem:bundled, gem:FILE, dolg:FILE, "
        "hybrid_swin:FILE, color-hist, transformed-color-hist, or an ensemble YAML file (members: "
        "[...]) (default: the best shipped one, the default of index build / serve: gem-color)",
    )
    parser.add_argument(
        "--rerank",
        action="append",
        help="a re-ranking chain: comma-separated registered re-rankers, in order (dba, aqe, "
        "k_reciprocal, spatial; label_voting needs a labelled reference set the benchmarks lack); "
        "repeat for more chains, each adds a row per descriptor",
    )
    parser.add_argument(
        "--rerank-option",
        action="append",
        metavar="NAME.KEY=VALUE",
        help="a re-ranker keyword, e.g. spatial.top_k=10 or spatial.geometry=fundamental (repeatable)",
    )
    parser.add_argument(
        "--rerank-k", type=int, default=2, help="neighbours of DBA / alpha-QE (default 2)"
    )
    parser.add_argument(
        "--alpha", type=float, default=3.0, help="alpha of DBA / alpha-QE (default 3)"
    )
    parser.add_argument("--max-size", type=int, default=512, help="longer image side (default 512)")
    parser.add_argument("--no-baselines", action="store_true", help="leave out the baseline rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_output_arguments(parser, "evaluate-retrieval")
    add_allow_random(parser)
    parser.set_defaults(func=_run)
