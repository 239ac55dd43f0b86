"""VIPeR, the whole protocol: 10 random 316/316 id splits, cam_a probes vs cam_b gallery, one run.

Descriptors (default ``lomo-xqda`` and the ``stripe-hsv`` baseline) are evaluated on the test ids of
every split; ``lomo-xqda`` is fitted on the training ids of the same split only. Prints rank-1/5/10/20
and mAP as mean ± standard deviation over the splits, and minutes per split (fit + describe + rank).
Published anchors (rank-1): LOMO+XQDA 40.0 % (Liao et al. 2015); a stripe colour histogram ~8 %.

Usage::

    .venv/bin/python benchmarks/viper.py --data /work/shared/data [--splits 10] [--descriptors ...]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from lookalike.core.data import data_root
    from lookalike.eval.protocols.reid import run_viper

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=None, help="data root holding viper/ (default LOOKALIKE_DATA)"
    )
    parser.add_argument("--splits", type=int, default=10, help="number of splits (seeds 0..n-1)")
    parser.add_argument("--descriptors", default="lomo-xqda,stripe-hsv")
    args = parser.parse_args(argv)
    specs = [s.strip() for s in args.descriptors.split(",") if s.strip()]

    def progress(spec, split, result):
        s = result.scores
        print(
            f"split {split} {spec:>12}: rank-1 {100 * s.rank(1):5.1f}  mAP {100 * s.mean_ap:5.1f}  "
            f"{result.seconds / 60:.2f} min",
            flush=True,
        )

    results = run_viper(
        args.data or data_root(), specs, splits=range(args.splits), progress=progress
    )
    print("\n| descriptor | rank-1 | rank-5 | rank-10 | rank-20 | mAP | min / split |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for spec, runs in results.items():
        cells = []
        for key in ("rank1", "rank5", "rank10", "rank20", "mAP"):
            values = 100 * np.array([r.scores.as_dict()[key] for r in runs])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
        minutes = np.mean([r.seconds for r in runs]) / 60
        print(f"| {spec} | " + " | ".join(cells) + f" | {minutes:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
