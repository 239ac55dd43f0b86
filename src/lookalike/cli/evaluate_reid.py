"""``lookalike evaluate reid``: person re-identification on a benchmark (CMC, mAP, mINP).

``lookalike evaluate reid --data DIR --benchmark viper|market1501|duke|msmt17|cuhk03|folder
--descriptors lomo-xqda,stripe-hsv [--split K] [--xqda rows|strips] [--rerank] [--out DIR]`` prints a
table and writes ``results.json``, ``results.md``, ``cmc.png`` (CMC curves) and ``ranked.png`` (query,
top 10, correct matches framed in green, wrong in red) to ``--out`` (default
``runs/<timestamp>-evaluate-reid``).

Descriptors with a ``fit`` method (``lomo-xqda``) are fitted on the benchmark's training images (for
VIPeR: the training ids of split K only) and are not refused as untrained; learned networks without
weights are refused unless ``--allow-random``. ``--xqda rows|strips`` adds, for every re-ID network
given (``relation_net:W``, ``rga:W``), a row with XQDA fitted on the same training images, on the
network's descriptor rows or on its multi-stage strip features (the ``xqda`` descriptor).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

BENCHMARK_CHOICES = ("viper", "market1501", "duke", "msmt17", "cuhk03", "folder")


def _markdown(results: list[Any], bench: Any) -> str:
    lines = [
        f"# Re-identification: {bench.name}",
        "",
        bench.summary(),
        "",
        "| descriptor | re-ranked | rank-1 | rank-5 | rank-10 | rank-20 | mAP | mINP | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r.scores.as_dict()
        ranks = " | ".join(
            f"{100 * s[f'rank{k}']:.1f}" if f"rank{k}" in s else "-" for k in (1, 5, 10, 20)
        )
        minp = f"{100 * s['mINP']:.1f}" if "mINP" in s else "-"
        lines.append(
            f"| {r.descriptor} | {'yes' if r.reranked else 'no'} | {ranks} | {100 * s['mAP']:.1f} | "
            f"{minp} | {r.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _plot_cmc(results: list[Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        cmc = r.scores.cmc
        ax.plot(range(1, len(cmc) + 1), 100 * cmc, label=r.descriptor)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, len(results[0].scores.cmc))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_ranked(result: Any, bench: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from lookalike.data.reid import load_crops

    rows = result.ranked
    fig, axes = plt.subplots(len(rows), 11, figsize=(11 * 0.9, len(rows) * 2.0), squeeze=False)
    for i, ranked in enumerate(rows):
        crops = load_crops(
            [bench.query.paths[i], *(bench.gallery.paths[j] for j in ranked)], (128, 64)
        )
        for k, ax in enumerate(axes[i]):
            ax.set_xticks([]), ax.set_yticks([])
            if k >= len(crops):
                ax.axis("off")
                continue
            ax.imshow(crops[k].permute(1, 2, 0).numpy())
            if k == 0:
                ax.set_title("query", fontsize=8)
                continue
            correct = bench.gallery.ids[ranked[k - 1]] == bench.query.ids[i]
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if correct else "red")
                spine.set_linewidth(3 if correct else 1)
    fig.suptitle(f"{result.descriptor}: top 10 (green frame = same person)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _check_descriptors(specs: list[str], allow_random: bool) -> None:
    import lookalike
    from lookalike._registry import get_entry, split_spec
    from lookalike.cli._common import require_trained

    registered = set(lookalike.list_registered("descriptor"))
    for spec in specs:
        if spec.endswith((".yaml", ".yml")):  # an ensemble file, read when evaluated
            continue
        name = split_spec(spec)[0]
        if name not in registered:
            from lookalike.core.errors import OptionError

            raise OptionError(
                f"--descriptors: unknown descriptor {name!r}; registered: {sorted(registered)}"
            )
        if not callable(getattr(get_entry("descriptor", name).factory, "fit", None)):
            require_trained(spec, allow_random=allow_random)


def _networks(specs: list[str]) -> list[str]:
    """The specs among ``specs`` that name a re-ID network (what ``--xqda`` fits a metric on)."""
    from lookalike._registry import get_entry, split_spec
    from lookalike.descriptors.reid._backbone import ReidNetwork

    found = []
    for spec in specs:
        if spec.endswith((".yaml", ".yml")):
            continue
        factory = get_entry("descriptor", split_spec(spec)[0]).factory
        if isinstance(factory, type) and issubclass(factory, ReidNetwork):
            found.append(spec)
    return found


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    import lookalike
    from lookalike.cli.evaluate import _check_out, _result_dir, _split
    from lookalike.core.data import data_root
    from lookalike.data.reid import read_benchmark
    from lookalike.eval.protocols.reid import evaluate_reid

    console = Console()
    specs = _split(args.descriptors)
    _check_descriptors(specs, args.allow_random)
    networks = _networks(specs) if args.xqda else []
    if args.xqda and not networks:
        from lookalike.core.errors import OptionError

        raise OptionError(
            f"--xqda: expected a re-ID network (relation_net:W, rga:W) among --descriptors, "
            f"got {specs}"
        )
    out = _check_out(args)
    bench = read_benchmark(
        args.benchmark, args.data or data_root(), split=args.split, variant=args.variant
    )
    console.print(bench.summary())
    results = []
    for spec in specs:
        console.print(f"evaluating {spec} ...")
        results.append(evaluate_reid(spec, bench, rerank=args.rerank, max_rank=args.max_rank))
        if spec in networks:  # XQDA fitted on the network's rows / strips of the training ids
            head = lookalike.create(
                "descriptor", "xqda", base=spec, features=args.xqda, allow_random=args.allow_random
            )
            result = evaluate_reid(head, bench, rerank=args.rerank, max_rank=args.max_rank)
            results.append(dataclasses.replace(result, descriptor=f"{spec} + xqda ({args.xqda})"))
    config = {
        "benchmark": args.benchmark,
        "split": args.split,
        "descriptors": specs,
        "xqda": args.xqda,
        "rerank": args.rerank,
    }
    folder = _result_dir(args, out, "evaluate-reid", config)
    folder.mkdir(parents=True, exist_ok=True)
    markdown = _markdown(results, bench)
    (folder / "results.md").write_text(markdown)
    payload = {"benchmark": bench.name, "config": config, "results": [r.as_dict() for r in results]}
    (folder / "results.json").write_text(json.dumps(payload, indent=2))
    _plot_cmc(results, folder / "cmc.png")
    _plot_ranked(results[0], bench, folder / "ranked.png")
    console.print(markdown)
    console.print(f"wrote {folder / 'results.md'}, results.json, cmc.png and ranked.png")
    return 0


def add_evaluate_command(protocols: argparse._SubParsersAction) -> None:
    """Contribute ``lookalike evaluate reid``."""
    from lookalike.cli._common import add_allow_random

    parser = protocols.add_parser(
        "reid",
        help="person re-identification (CMC, mAP, mINP; VIPeR, Market-1501, Duke, MSMT17, CUHK03)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--data", help="data root or the benchmark's folder (default: LOOKALIKE_DATA)"
    )
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_CHOICES)
    parser.add_argument(
        "--descriptors",
        default="lomo-xqda,stripe-hsv",
        help="comma-separated descriptor specs, or an ensemble YAML file "
        "(members: [lomo-xqda, relation_net:W], family_weights: [1, 0.25])",
    )
    parser.add_argument("--split", type=int, default=0, help="VIPeR split 0-9 (default 0)")
    parser.add_argument(
        "--xqda",
        choices=("rows", "strips"),
        default=None,
        help="also evaluate every re-ID network given with XQDA fitted on the training ids, on its "
        "descriptor rows or its multi-stage strip features",
    )
    parser.add_argument(
        "--variant", default="labeled", choices=("labeled", "detected"), help="CUHK03 boxes"
    )
    parser.add_argument(
        "--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6)"
    )
    parser.add_argument("--max-rank", type=int, default=50, help="length of the CMC curve")
    parser.add_argument("--out", help="output folder (default: runs/<timestamp>-evaluate-reid)")
    parser.add_argument("--runs", default="runs", help="parent of run folders (default: runs)")
    add_allow_random(parser)
    parser.set_defaults(func=_run)
