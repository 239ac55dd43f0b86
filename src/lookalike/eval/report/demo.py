"""The demo's files: one picture per pair and descriptor, ``results.json`` and a self-contained ``report.html``.

Every picture carries a legend strip under the two images: what green and red mean (correct within
3 px of the ground truth, wrong) and the pair's precision (correct / matches).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.eval.report.terminal import DEMO_LEGEND

if TYPE_CHECKING:
    from lookalike.eval.protocols.demo import DemoResult

__all__ = ["legend_strip", "write_demo"]

_GREEN = (40, 220, 40)
_RED = (230, 40, 40)


def legend_strip(width: int, title: str, row: dict[str, Any]) -> np.ndarray:
    """A ``(48, width, 3)`` uint8 RGB strip: the title with the pair's precision, then the colour legend."""
    import cv2

    strip = np.full((48, int(width), 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    text = (
        f"{title}: precision {row['precision']:.2f} = {row['correct']} correct / "
        f"{row['matches']} matches"
    )
    cv2.putText(strip, text, (6, 18), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    x = 6
    for words, colour in (
        ("green: correct (within 3 px of the ground truth)", _GREEN),
        ("  red: wrong", _RED),
    ):
        cv2.putText(strip, words, (x, 38), font, scale, colour, 1, cv2.LINE_AA)
        x += cv2.getTextSize(words, font, scale, 1)[0][0]
    return strip


def _picture(result: DemoResult, pair: Any, name: str, row: dict[str, Any]) -> np.ndarray:
    from lookalike.matching.draw import draw_matches

    match, correct = result.matches[(pair.name, name)]
    canvas = draw_matches(
        pair.image0, pair.image1, match, correct=correct, inliers_only=False, max_matches=200
    )
    return np.concatenate([canvas, legend_strip(canvas.shape[1], f"{pair.name}, {name}", row)])


def _html_summary(result: DemoResult) -> list[str]:
    esc = html.escape
    parts = [
        "<h2>Summary</h2><table><tr><th>descriptor</th><th>precision (mean over pairs)</th>"
        "<th>correct / matches</th><th>H ok (corner error &le; 3 px)</th><th>seconds / pair</th></tr>"
    ]
    for name, s in result.summary().items():
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{s['precision']:.3f}</td>"
            f"<td>{s['correct']} / {s['matches']}</td><td>{s['h_ok']}/{s['pairs']}</td>"
            f"<td>{s['seconds']:.2f}</td></tr>"
        )
    parts.append(
        "</table><h2>Pairs</h2><table><tr><th>pair</th><th>descriptor</th><th>matches</th>"
        "<th>correct</th><th>precision</th><th>inliers</th><th>corner error</th>"
        "<th>seconds</th></tr>"
    )
    for r in result.rows:
        ce = "-" if not np.isfinite(r["corner_error"]) else f"{r['corner_error']:.2f}"
        parts.append(
            f"<tr><td>{esc(r['pair'])}</td><td>{esc(r['descriptor'])}</td><td>{r['matches']}</td>"
            f"<td>{r['correct']}</td><td>{r['precision']:.3f}</td><td>{r['inliers']}</td>"
            f"<td>{ce}</td><td>{r['seconds']:.2f}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _html(result: DemoResult, pictures: dict[tuple[str, str], Path]) -> str:
    esc = html.escape
    photos = ", ".join(dict.fromkeys(p.photo for p in result.pairs))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lookalike demo</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        "img{max-width:100%;margin:4px 0 16px}</style></head><body>",
        "<h1>lookalike demo: image matching on held-out bundled photos</h1>",
        f"<p>Photos: {esc(photos)} (held out: no shipped model trains on them), each under a moderate "
        "and a strong seeded random homography.</p>",
        f"<p>{esc(DEMO_LEGEND)}.</p>",
        *_html_summary(result),
    ]
    for (pair, name), path in pictures.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h3>{esc(pair)}: {esc(name)}</h3>")
        parts.append(f"<img alt='{esc(path.name)}' src='data:image/jpeg;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_demo(result: DemoResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the pictures (``<photo>-<strength>-<descriptor>.jpg``), ``results.json`` and ``report.html``.

    Returns:
        ``{"report": ..., "json": ..., "folder": ...}``.
    """
    from lookalike.data.images import write_image

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[tuple[str, str], Path] = {}
    for r in result.rows:
        pair = next(p for p in result.pairs if p.name == r["pair"])
        stem = f"{pair.photo}-{pair.strength}-{r['descriptor'].replace(':', '-').replace('/', '-')}"
        picture = _picture(result, pair, r["descriptor"], r)
        pictures[(pair.name, r["descriptor"])] = write_image(out / f"{stem}.jpg", picture)
    paths = {"json": out / "results.json", "report": out / "report.html", "folder": out}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1))
    paths["report"].write_text(_html(result, pictures))
    return paths
