"""``lookalike demo [--out DIR]``: the whole matching pipeline on photos that ship with the packages.

No data set is needed. Two kinds of ground truth:

- the Middlebury motorcycle stereo pair bundled with scikit-image: a match ``(x_l, y_l) <-> (x_r, y_r)``
  is correct when ``|x_l - d(x_l, y_l) - x_r| <= t`` and ``|y_l - y_r| <= t`` (``d`` the left disparity;
  matches on pixels of unknown disparity are not counted); the model is a fundamental matrix;
- bundled photos warped by known random homographies (seeded): a match is correct when
  ``|H x0 - x1| <= t``; the model is a homography, scored by its mean corner error.

For OpenCV's SIFT, our SIFT and our best shipped descriptor it prints an accuracy/speed table, and
writes one picture per pair and descriptor (correct matches green, wrong ones red) and a
self-contained ``report.html`` (pictures embedded) into ``--out``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Photos warped by random homographies in the demo (all bundled with scikit-image).
DEMO_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
THRESHOLD_PX = 3.0


@dataclass
class DemoPair:
    """Two images with ground truth: a homography ``H`` or a left disparity map."""

    name: str
    image0: np.ndarray
    image1: np.ndarray
    H: np.ndarray | None = None
    disparity: np.ndarray | None = None


def stereo_correct(
    points_left: np.ndarray, points_right: np.ndarray, disparity: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of stereo matches from the left disparity map.

    Args:
        points_left: ``(M, 2)`` matched points in the left image.
        points_right: ``(M, 2)`` matched points in the right image.
        disparity: ``(H, W)`` left disparity (left ``(x, y)`` shows right ``(x - d, y)``; non-finite
            where unknown).
        threshold: pixels, on both ``x`` and ``y``.

    Returns:
        ``(correct, known)``: two ``(M,)`` bool arrays; ``correct`` is False where not ``known``.

    Example:
        >>> d = np.full((10, 10), 2.0)
        >>> d[0, 0] = np.inf
        >>> stereo_correct(np.array([[5, 5], [5, 5], [0, 0]]), np.array([[3, 5], [1, 5], [0, 0]]), d, 1)
        (array([ True, False, False]), array([ True,  True, False]))
    """
    pl = np.asarray(points_left, dtype=np.float64).reshape(-1, 2)
    pr = np.asarray(points_right, dtype=np.float64).reshape(-1, 2)
    h, w = disparity.shape
    col = np.clip(np.round(pl[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.round(pl[:, 1]).astype(int), 0, h - 1)
    d = disparity[row, col].astype(np.float64)
    known = np.isfinite(d) & (d > 0)
    with np.errstate(invalid="ignore"):
        ok = (np.abs(pl[:, 0] - d - pr[:, 0]) <= threshold) & (
            np.abs(pl[:, 1] - pr[:, 1]) <= threshold
        )
    return ok & known, known


def demo_pairs(seed: int = 0, photos: tuple[str, ...] = DEMO_PHOTOS) -> list[DemoPair]:
    """The stereo pair and one seeded random homography per photo."""
    from lookalike.data import bundled_photos, stereo_pair
    from lookalike.eval.homography import random_homography, warp_image

    left, right, disparity = stereo_pair()
    pairs = [DemoPair("stereo motorcycle", left, right, disparity=disparity)]
    rng = np.random.default_rng(seed)
    for photo in bundled_photos(list(photos)):
        H = random_homography(photo.rgb.shape[:2], rng, max_angle=40.0, scale=(0.7, 1.3))
        pairs.append(
            DemoPair(f"{photo.name} + homography", photo.rgb, warp_image(photo.rgb, H), H=H)
        )
    return pairs


def _evaluate(matcher: Any, pair: DemoPair) -> tuple[Any, dict[str, Any], np.ndarray]:
    from lookalike.eval.homography import corner_error, match_accuracy, project_points

    result = matcher(pair.image0, pair.image1)
    p0, p1 = result.points0, result.points1
    row: dict[str, Any] = {"pair": pair.name, "matches": result.num_matches}
    if pair.H is not None:
        err = np.linalg.norm(project_points(pair.H, p0) - p1, axis=1) if len(p0) else np.zeros(0)
        correct = err <= THRESHOLD_PX
        row["precision"] = float(match_accuracy(p0, p1, pair.H, [THRESHOLD_PX])[0])
        row["corner_error"] = corner_error(result.model, pair.H, pair.image0.shape[:2])
    else:
        correct, known = stereo_correct(p0, p1, pair.disparity, THRESHOLD_PX)
        row["precision"] = float(correct[known].mean()) if known.any() else 0.0
        row["corner_error"] = None
    row["correct"] = int(correct.sum())
    row["inliers"] = result.num_inliers
    row["seconds"] = result.timings["total"]
    return result, row, correct


def _jpeg_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _html(rows: list[dict[str, Any]], summary: dict[str, dict[str, Any]], pictures: dict) -> str:
    def esc(x: Any) -> str:
        return html.escape(str(x))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lookalike demo</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        "img{max-width:100%;margin:4px 0 16px}</style></head><body>",
        "<h1>lookalike demo: image matching on bundled photos</h1>",
        f"<p>A match is correct within {THRESHOLD_PX:g} px of the ground truth (homography, or "
        "stereo disparity for the motorcycle pair). Pictures: correct matches green, wrong red.</p>",
        "<h2>Summary</h2><table><tr><th>descriptor</th><th>homography pairs: precision</th>"
        "<th>homography pairs: corner error &le; 3 px</th><th>stereo: precision</th>"
        "<th>stereo: correct matches</th><th>seconds / pair</th></tr>",
    ]
    for name, s in summary.items():
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{s['h_precision']:.3f}</td><td>{s['h_accuracy']:.2f}</td>"
            f"<td>{s['stereo_precision']:.3f}</td><td>{s['stereo_correct']}</td>"
            f"<td>{s['seconds']:.2f}</td></tr>"
        )
    parts.append(
        "</table><h2>Pairs</h2><table><tr><th>pair</th><th>descriptor</th><th>matches</th>"
        "<th>correct</th><th>precision</th><th>inliers</th><th>corner error</th>"
        "<th>seconds</th></tr>"
    )
    for r in rows:
        ce = "-" if r["corner_error"] is None else f"{r['corner_error']:.2f}"
        parts.append(
            f"<tr><td>{esc(r['pair'])}</td><td>{esc(r['descriptor'])}</td><td>{r['matches']}</td>"
            f"<td>{r['correct']}</td><td>{r['precision']:.3f}</td><td>{r['inliers']}</td>"
            f"<td>{ce}</td><td>{r['seconds']:.2f}</td></tr>"
        )
    parts.append("</table>")
    for (pair, name), path in pictures.items():
        parts.append(f"<h3>{esc(pair)}: {esc(name)}</h3>")
        parts.append(
            f"<img alt='{esc(path.name)}' src='data:image/jpeg;base64,{_jpeg_base64(path)}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _summarize(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    summary = {}
    for name in names:
        mine = [r for r in rows if r["descriptor"] == name]
        hom = [r for r in mine if r["corner_error"] is not None]
        stereo = [r for r in mine if r["corner_error"] is None]
        errors = np.array([r["corner_error"] for r in hom], dtype=np.float64)
        summary[name] = {
            "h_precision": float(np.mean([r["precision"] for r in hom])) if hom else 0.0,
            "h_accuracy": float(np.mean(errors <= THRESHOLD_PX)) if hom else 0.0,
            "stereo_precision": float(np.mean([r["precision"] for r in stereo])) if stereo else 0.0,
            "stereo_correct": int(sum(r["correct"] for r in stereo)),
            "seconds": float(np.mean([r["seconds"] for r in mine])) if mine else 0.0,
        }
    return summary


def demo_descriptors() -> list[str]:
    """OpenCV's SIFT, our SIFT and our best shipped descriptor (when it is not SIFT itself)."""
    from lookalike.matching.pipeline import DEFAULT_DESCRIPTOR, best_shipped_descriptor

    names = ["opencv-sift", DEFAULT_DESCRIPTOR]
    best = best_shipped_descriptor()
    if best not in names:
        names.append(best)
    return names


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from lookalike.data.images import write_image
    from lookalike.matching.draw import draw_matches
    from lookalike.matching.pipeline import ImageMatcher

    console = Console()
    start = time.perf_counter()
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    names = _split(args.descriptors) if args.descriptors else demo_descriptors()
    pairs = demo_pairs(seed=args.seed)
    options = {"max_keypoints": args.max_keypoints}
    matchers = {
        name: (
            ImageMatcher(name, **options),
            ImageMatcher(name, geometry="fundamental", **options),
        )
        for name in names
    }
    rows: list[dict[str, Any]] = []
    pictures: dict[tuple[str, str], Path] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("demo", total=len(pairs) * len(names))
        for pair in pairs:
            for name in names:
                progress.update(task, description=f"{name:>16} {pair.name}")
                matcher = matchers[name][0 if pair.H is not None else 1]
                result, row, correct = _evaluate(matcher, pair)
                row["descriptor"] = name
                rows.append(row)
                picture = draw_matches(
                    pair.image0,
                    pair.image1,
                    result,
                    correct=correct,
                    inliers_only=False,
                    max_matches=200,
                )
                stem = f"{pair.name.split()[0]}-{name.replace(':', '-')}"
                pictures[(pair.name, name)] = write_image(out / f"{stem}.jpg", picture)
                progress.advance(task)
    summary = _summarize(rows, names)
    (out / "results.json").write_text(
        json.dumps({"threshold_px": THRESHOLD_PX, "summary": summary, "pairs": rows}, indent=1)
    )
    report = out / "report.html"
    report.write_text(_html(rows, summary, pictures))

    table = Table(
        title=f"matching on bundled photos (correct within {THRESHOLD_PX:g} px)",
        caption="precision: of the pipeline's matches; H ok: corner error <= 3 px",
    )
    table.add_column("descriptor", style="bold", no_wrap=True)
    table.add_column("H pairs precision", justify="right")
    table.add_column("H ok", justify="right")
    table.add_column("stereo precision", justify="right")
    table.add_column("stereo correct", justify="right")
    table.add_column("s/pair", justify="right")
    n_h = sum(p.H is not None for p in pairs)
    for name, s in summary.items():
        table.add_row(
            name,
            f"{s['h_precision']:.3f}",
            f"{round(s['h_accuracy'] * n_h)}/{n_h}",
            f"{s['stereo_precision']:.3f}",
            str(s["stereo_correct"]),
            f"{s['seconds']:.2f}",
        )
    console.print(table)
    console.print(f"report: {report.resolve()}")
    console.print(f"pictures and results.json: {out.resolve()}")
    console.print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``demo`` subcommand."""
    parser = sub.add_parser(
        "demo",
        help="match bundled photos (stereo pair, random homographies); no data needed",
        description=(
            "Run detect/describe/match/RANSAC on photos bundled with scikit-image: the Middlebury "
            "motorcycle stereo pair (disparity ground truth) and photos under seeded random "
            "homographies, for OpenCV SIFT, our SIFT and our best shipped descriptor. Prints a "
            "table and writes pictures and an HTML report."
        ),
    )
    parser.add_argument(
        "--out", default="lookalike-demo", help="output folder (default lookalike-demo)"
    )
    parser.add_argument("--descriptors", help="comma-separated descriptors instead of the defaults")
    parser.add_argument(
        "--max-keypoints", type=int, default=1024, help="keypoints per image (default 1024)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random homographies")
    parser.set_defaults(func=_run)
