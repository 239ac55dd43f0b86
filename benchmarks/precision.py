"""Fused-network precision check on held-out pairs: what the int8 (or bfloat16) default costs.

The matching pipeline's ``precision="auto"`` picks bfloat16 where the CPU runs it natively, else int8
on a CPU with VNNI, else float32 (:func:`lookalike.matching.describe.auto_precision`). This script
scores each precision this machine can run, with the same pipeline, on the held-out re-lit pairs of
the held-out bundled photos (:func:`lookalike.data.pipeline_pairs.held_out_pairs`, seeds 0..N-1: 6
pairs per seed): MMA at 3 px, homography accuracy H@3, the cosine of each precision's rows to the
float32 rows on the same patches, and the describe time (all precisions timed in the same run).
No evaluation data is read.

Usage::

    python benchmarks/precision.py                       # hardnet:bundled, 12 seeds (72 pairs)
    python benchmarks/precision.py --descriptor hardnet:bundled --seeds 4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table


def _precisions() -> list[str]:
    from lookalike.descriptors.patch._inference import bf16_supported
    from lookalike.descriptors.patch._quantize import int8_engine

    out = ["float32"]
    if bf16_supported("cpu"):
        out.append("bfloat16")
    if int8_engine("cpu") is not None:
        out.append("int8")
    return out


def main(argv: list[str] | None = None) -> None:
    from lookalike.data.pipeline_pairs import held_out_pairs
    from lookalike.eval.protocols.demo import THRESHOLD_PX, evaluate_demo_pair
    from lookalike.matching.describe import auto_precision, create_describer
    from lookalike.matching.keypoints import detect_keypoints
    from lookalike.matching.pipeline import ImageMatcher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor", default="hardnet:bundled")
    parser.add_argument("--seeds", type=int, default=12, help="held-out seeds (6 pairs each)")
    parser.add_argument("--keypoints", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()
    pairs = [p for s in range(args.seeds) for p in held_out_pairs(seed=s)]
    reference = create_describer(args.descriptor, precision="float32")
    auto = auto_precision("cpu", model=reference.model)
    gray = pairs[0].image0
    kps = detect_keypoints(gray, max_keypoints=args.keypoints)
    patches = reference.patches(gray, kps)
    with torch.no_grad():
        ref_rows = reference._describe(patches)
    table = Table(title=f"{args.descriptor}: {len(pairs)} held-out pairs; auto = {auto}")
    for col in ("precision", "MMA@3", "H@3", "cosine to float32 (mean / min)", "describe s"):
        table.add_column(col, justify="right")
    for precision in _precisions():
        matcher = ImageMatcher(
            args.descriptor,
            max_keypoints=args.keypoints,
            descriptor_options={"precision": precision},
        )
        rows = [evaluate_demo_pair(matcher, pair)[1] for pair in pairs]
        errors = np.array([r["corner_error"] for r in rows], dtype=np.float64)
        start = time.perf_counter()
        with torch.no_grad():
            out = matcher.describer._describe(patches)
        seconds = time.perf_counter() - start
        cosine = (out * ref_rows).sum(dim=1)
        table.add_row(
            precision + (" (auto)" if precision == auto else ""),
            f"{np.mean([r['precision'] for r in rows]):.4f}",
            f"{np.mean(errors <= THRESHOLD_PX):.4f}",
            f"{float(cosine.mean()):.5f} / {float(cosine.min()):.4f}",
            f"{seconds:.2f}",
        )
    console.print(table)
    console.print(f"describe time: {len(patches)} patches of the first held-out image")


if __name__ == "__main__":
    main()
