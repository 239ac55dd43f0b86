"""Issue 11's held-out retrieval proxy: ``lookalike evaluate retrieval --benchmark scenes`` on whole photos.

The shared UKBench and scenes sets are for evaluation only, so choices between global descriptors need a
held-out set that looks like them: distinct objects and scenes, each seen in several views. The region
views of :meth:`~lookalike.data.bundled_instances.BundledInstances.validation_set` are not that: their
classes are regions of the same three photos, colour-jittered like the training views, so they cannot
reward a colour signal and they reward fitting the training task. This script renders every photo of
``--photos`` as one colour scene (:func:`~lookalike.data.nuisance_pairs.write_nuisance_scenes`: the photo
plus, per draw, one view per nuisance family: zoom + rotation, viewpoint, blur, JPEG and light, as in the
standard affine sequences, and ``wide``, a grazing view like the EVD pairs that make up 15 of the 26 real
scenes; ranges fixed a priori from the data sets' descriptions) and runs the unchanged ``lookalike
evaluate retrieval --benchmark scenes`` on them: query one view, retrieve the other views of its photo.
No evaluation data is read.

Only photos the scored networks never trained on may be listed. The shipped ``gem:bundled`` leaves out
:data:`~lookalike.data.bundled.HELD_OUT_PHOTOS` only, which is three scenes; the default ``--photos`` are
those plus the six that ``configs/gem_bundled_leave_out.yaml`` also leaves out, so the proxy scores a
network trained by that recipe (same recipe, fewer photos), not the shipped one::

    lookalike train --config configs/gem_bundled_leave_out.yaml
    python benchmarks/held_out_retrieval.py --network runs/<run>/weights.safetensors

Rows: the network alone, with each colour histogram as an equal-weight ensemble (what ``gem-tch`` and
``configs/ensembles/gem_color.yaml`` are for ``gem:bundled``), and the histograms alone;
``--color-weights 1,2`` adds a row per family weight of the HSV histogram in its ensemble.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

#: Photos ``configs/gem_bundled_leave_out.yaml`` trains without, beside the held-out ones.
LEAVE_OUT = ("astronaut", "rocket", "motorcycle_left", "camera", "coins", "retina")


def _rows(network: str, folder: Path, color_weights: list[float]) -> str:
    """Descriptor specs: the network, its colour ensembles (YAML files in ``folder``), histograms.

    ``color_weights``: the HSV histogram's family weights, one ensemble each (1 gives ``gem_color.yaml``).
    """
    specs = [f"gem:{network}"]
    members = [("gem_tch", "transformed-color-hist", 1.0)]
    members += [
        ("gem_color" if w == 1.0 else f"gem_color_w{w:g}", "color-hist", w) for w in color_weights
    ]
    for name, hist, weight in members:
        path = folder / f"{name}.yaml"
        text = f"members: ['gem:{network}', {hist}]\n"
        if weight != 1.0:
            text += f"family_weights: [1.0, {weight}]\n"
        path.write_text(text)
        specs.append(str(path))
    return ",".join([*specs, "transformed-color-hist", "color-hist"])


def _weights(text: str) -> list[float]:
    """``--color-weights``: comma-separated positive numbers, distinct."""
    try:
        weights = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2, got {text!r}") from None
    if not all(w > 0 for w in weights) or len(set(weights)) != len(weights):
        raise argparse.ArgumentTypeError(f"expected distinct positive numbers, got {text!r}")
    return weights


def main(argv: list[str] | None = None) -> int:
    from lookalike.cli.main import main as cli
    from lookalike.data.bundled import HELD_OUT_PHOTOS
    from lookalike.data.nuisance_pairs import ALL_NUISANCES, write_nuisance_scenes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--network",
        required=True,
        help="gem weights file, or 'bundled' (either never trained on --photos)",
    )
    parser.add_argument(
        "--photos",
        default=",".join((*HELD_OUT_PHOTOS, *LEAVE_OUT)),
        help="comma-separated bundled photos, one scene each",
    )
    parser.add_argument(
        "--nuisances",
        default=",".join(ALL_NUISANCES),
        help="comma-separated families, one view each per draw (default: all six)",
    )
    parser.add_argument("--seeds", type=int, default=2, help="draws 0..N-1")
    parser.add_argument(
        "--color-weights",
        type=_weights,
        default=[1.0],
        help="family weights of the HSV histogram in the network's ensemble, one row each",
    )
    parser.add_argument(
        "--rerank", action="append", default=[], help="re-ranking chain, repeatable"
    )
    parser.add_argument(
        "--rerank-option",
        action="append",
        default=[],
        help="a re-ranker keyword such as spatial.views=asift, repeatable",
    )
    parser.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds: expected at least 1, got {args.seeds}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "held-out-scenes"
        write_nuisance_scenes(
            data,
            seeds=range(args.seeds),
            photos=args.photos.split(","),
            nuisances=args.nuisances.split(","),
        )
        out = args.out or str(Path(tmp) / "report")
        command = ["evaluate", "retrieval", "--data", str(data), "--benchmark", "scenes"]
        rows = _rows(args.network, Path(tmp), args.color_weights)
        command += ["--descriptors", rows, "--no-baselines", "--out", out]
        for chain in args.rerank:
            command += ["--rerank", chain]
        for option in args.rerank_option:
            command += ["--rerank-option", option]
        return cli(command)


if __name__ == "__main__":
    raise SystemExit(main())
