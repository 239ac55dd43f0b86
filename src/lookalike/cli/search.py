"""``lookalike search INDEX QUERY_IMAGE... -k 10 [--json] [--out grid.png]``: the nearest images.

Convention:
    - Queries are described with the index's own descriptor and read like its images (the index
      folder's ``max_size``); scores are cosine similarities, best first.
    - ``--out`` draws one row per query: the query, then its ``k`` nearest images with rank, score
      and id (thumbnails are read from the indexed files' paths; a file gone since indexing is drawn
      as a grey "missing" tile).
    - ``--out`` and every query path are checked before the index is opened; errors are one line
      with exit code 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
THUMBNAIL = 192


def search_images(
    index_dir: str, queries: list[str], *, k: int = 10, nprobe: int | None = None, device="cpu"
) -> list[dict[str, Any]]:
    """The ``k`` nearest items of every query image: ``[{"query", "results": [{"rank", "id",
    "score", "metadata"}]}]``."""
    from lookalike.index.image_index import open_image_index
    from lookalike.index.images import describe_query

    target = open_image_index(index_dir, device=device)
    rows = np.stack(
        [describe_query(target.descriptor, q, max_size=target.max_size) for q in queries]
    )
    params = {} if nprobe is None else {"nprobe": nprobe}
    found = target.index.search(rows, k=k, **params)
    out = []
    for q, ids, scores in zip(queries, found.ids, found.scores):
        results = [
            {
                "rank": r + 1,
                "id": item,
                "score": float(score),
                "metadata": target.index.get_metadata(item),
            }
            for r, (item, score) in enumerate(zip(ids, scores))
        ]
        out.append({"query": str(q), "results": results})
    return out


def _thumbnail(path: str | None) -> np.ndarray | None:
    from lookalike.core.errors import LookalikeError
    from lookalike.eval.protocols.retrieval import read_rgb

    if not path:
        return None
    try:
        return read_rgb(Path(path), max_size=THUMBNAIL).permute(1, 2, 0).numpy()
    except (LookalikeError, OSError):
        return None


def draw_grid(hits: list[dict[str, Any]], k: int, out: Path) -> Path:
    """One row per query: the query and its ranked neighbours with scores (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = k + 1
    fig, axes = plt.subplots(len(hits), cols, figsize=(1.9 * cols, 2.2 * len(hits)), squeeze=False)
    for row, hit in zip(axes, hits):
        tiles = [(hit["query"], "query\n" + Path(hit["query"]).name, "tab:blue")]
        for r in hit["results"]:
            label = f"#{r['rank']}  {r['score']:.3f}\n{_short(r['id'])}"
            tiles.append((r["metadata"].get("path"), label, "black"))
        for ax, tile in zip(row, tiles + [None] * (cols - len(tiles))):
            ax.set_xticks([]), ax.set_yticks([])
            if tile is None:
                ax.axis("off")
                continue
            path, label, colour = tile
            image = _thumbnail(path)
            if image is None:
                ax.imshow(np.full((8, 8, 3), 0.8))
                ax.text(4, 4, "missing", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(image)
            ax.set_title(label, fontsize=7, color=colour)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _print_tables(hits: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for hit in hits:
        table = Table(title=f"query {hit['query']}")
        for col, justify in (("rank", "right"), ("score", "right"), ("id", "left")):
            table.add_column(col, justify=justify)
        table.add_column("size", justify="right")
        for r in hit["results"]:
            meta = r["metadata"]
            size = f"{meta['width']}x{meta['height']}" if "width" in meta else "-"
            table.add_row(str(r["rank"]), f"{r['score']:.4f}", r["id"], size)
        console.print(table)


def _run(args: argparse.Namespace) -> int:
    from lookalike.cli._common import check_output_file
    from lookalike.core.errors import DataNotFoundError, OptionError

    out = check_output_file(args.out, suffixes=GRID_SUFFIXES) if args.out else None
    if args.k < 1:
        raise OptionError(f"-k: expected a positive integer, got {args.k}")
    for q in args.queries:
        if not Path(q).is_file():
            raise DataNotFoundError(f"query image not found: {q}")
    hits = search_images(args.index, args.queries, k=args.k, nprobe=args.nprobe, device=args.device)
    if args.json:
        print(json.dumps({"index": args.index, "k": args.k, "queries": hits}, indent=2))
    else:
        _print_tables(hits)
    if out is not None:
        draw_grid(hits, args.k, out)
        if not args.json:
            print(f"wrote the ranked grid to {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``search`` subcommand."""
    parser = sub.add_parser(
        "search",
        help="find the nearest images of query images in an index",
        description="Describe each query image with the index's descriptor and print its k "
        "nearest images (cosine similarity, best first); --out draws them as a grid.",
    )
    parser.add_argument("index", metavar="INDEX", help="an index folder (lookalike index build)")
    parser.add_argument("queries", nargs="+", metavar="QUERY_IMAGE", help="query image files")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument(
        "--nprobe", type=int, default=None, help="IVF lists visited (default: the index's own)"
    )
    parser.add_argument("--device", default="cpu", help="torch device to describe on (cpu)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--out", help="draw the ranked grid (.png, .jpg, .jpeg, .pdf, .svg); its folder must exist"
    )
    parser.set_defaults(func=_run)
