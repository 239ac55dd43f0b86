"""Issue 10's goal table on held-out data: ``lookalike evaluate matching`` over the nuisance pairs.

The shared sequences are for evaluation only; choices (recipes, extents, models to ship) need a
held-out set that ranks descriptors the way the real sequences do. This script renders the nuisance
pairs of the held-out bundled photos (:mod:`lookalike.data.nuisance_pairs`: zoom + rotation,
viewpoint, blur, JPEG, light, one family per nuisance of the standard affine sequences) as HPatches-
style sequences in a folder and runs the unchanged ``lookalike evaluate matching`` command on it:
MMA at 1-10 px over mutual-NN matches (D2-Net), homography accuracy, one group per family, every
descriptor on the same keypoints. No evaluation data is read.

Usage::

    python benchmarks/held_out_matching.py                        # seeds 0-2 (45 pairs), default rows
    python benchmarks/held_out_matching.py --seeds 5 --descriptors rootsift,hardnet:bundled --out DIR
    python benchmarks/held_out_matching.py --nuisances wide --views asift   # EVD-like grazing views

``--nuisances wide`` adds the extreme-view family (:data:`~lookalike.data.nuisance_pairs.EXTREME_NUISANCES`,
a held-out stand-in for EVD); ``--views`` passes view synthesis to the command.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

DEFAULT_DESCRIPTORS = (
    "sift,rootsift,kornia-sift,kornia-rootsift,opencv-sift,opencv-rootsift,"
    "opencv-vgg,opencv-boostdesc,opencv-teblid,hardnet:bundled"
)


def main(argv: list[str] | None = None) -> int:
    from lookalike.cli.main import main as cli
    from lookalike.data.nuisance_pairs import NUISANCES, write_nuisance_sequences

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="draws 0..N-1, one pair per photo and family each (15 pairs per draw by default)",
    )
    parser.add_argument(
        "--nuisances",
        default=",".join(NUISANCES),
        help="comma-separated families (default: the five of the affine sequences; 'wide' is EVD-like)",
    )
    parser.add_argument("--descriptors", default=DEFAULT_DESCRIPTORS, help="comma-separated specs")
    parser.add_argument(
        "--views", default=None, help="view synthesis: 'asift' or tilts such as 1,4"
    )
    parser.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds: expected at least 1, got {args.seeds}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "held-out"
        write_nuisance_sequences(data, seeds=range(args.seeds), nuisances=args.nuisances.split(","))
        out = args.out or str(Path(tmp) / "report")
        command = ["evaluate", "matching", "--data", str(data), "--descriptors", args.descriptors]
        if args.views is not None:
            command += ["--views", args.views]
        return cli([*command, "--out", out])


if __name__ == "__main__":
    raise SystemExit(main())
