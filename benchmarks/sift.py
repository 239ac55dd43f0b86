"""Throughput of lookalike's SIFT descriptor against ``kornia.feature.SIFTDescriptor``, in one run.

Both run on the same random patches, with the same settings (kornia's window and grid), float32,
under ``torch.no_grad()``, after a warm-up. The two are timed in alternation, round after round, so
that load from other processes hits both alike; the table reports the median throughput of each and
the median (and range) of the per-round speed-ups.

On a shared, oversubscribed CPU, OpenMP's default spin-waiting makes multi-threaded timings of both
libraries erratic (a worker spins while the thread it waits for is descheduled), so the script sets
``OMP_WAIT_POLICY=passive`` unless told otherwise (``--omp-wait-policy default`` keeps the
environment as it is). The policy is printed in the title.

Usage::

    .venv/bin/python benchmarks/sift.py --batch 256 2048 --patch-size 32 41 --repeats 7 --threads 2
    .venv/bin/python benchmarks/sift.py --device cuda --batch 256 2048 8192
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported in main(), after OMP_WAIT_POLICY is set
    import torch


def _timed(fn: Callable[[], torch.Tensor], calls: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` averaged over ``calls`` calls."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / calls


def _calls_for(fn: Callable[[], torch.Tensor], device: torch.device, budget: float) -> int:
    """Number of calls of ``fn`` that takes about ``budget`` seconds (at least 1)."""
    once = _timed(fn, 1, device)
    return max(1, int(budget / max(once, 1e-6)))


def run(
    batch: int,
    patch_size: int,
    *,
    rootsift: bool,
    repeats: int,
    budget: float,
    device: torch.device,
) -> dict[str, float]:
    import kornia
    import torch

    from lookalike.descriptors.patch.sift import SIFTDescriptor

    gen = torch.Generator().manual_seed(batch * 1000 + patch_size)
    x = torch.rand(batch, 1, patch_size, patch_size, generator=gen).to(device)
    ours = SIFTDescriptor(patch_size=patch_size, rootsift=rootsift).to(device).eval()
    theirs = kornia.feature.SIFTDescriptor(patch_size, rootsift=rootsift).to(device).eval()
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
        for _ in range(2):  # warm-up (allocator, kernels, thread pool)
            ours(x)
            theirs(x)
        n_ours = _calls_for(lambda: ours(x), device, budget)
        n_theirs = _calls_for(lambda: theirs(x), device, budget)
        t_ours, t_theirs, ratios = [], [], []
        for _ in range(repeats):
            a = _timed(lambda: ours(x), n_ours, device)
            b = _timed(lambda: theirs(x), n_theirs, device)
            t_ours.append(a)
            t_theirs.append(b)
            ratios.append(b / a)
    return {
        "ours": batch / statistics.median(t_ours),
        "kornia": batch / statistics.median(t_theirs),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "diff": diff,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--patch-size", type=int, nargs="+", default=[32, 41])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per setting")
    parser.add_argument(
        "--budget", type=float, default=0.5, help="seconds per timed round and side"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rootsift", action="store_true", help="time RootSIFT instead of SIFT")
    parser.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active", "default"],
        default="passive",
        help="OMP_WAIT_POLICY for the run ('default': leave the environment alone)",
    )
    args = parser.parse_args(argv)
    if args.omp_wait_policy != "default":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")

    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()
    table = Table(
        title=(
            f"SIFT{' (RootSIFT)' if args.rootsift else ''} patches/s on {device.type}, "
            f"{torch.get_num_threads()} threads (OMP_WAIT_POLICY={policy}), float32, no_grad; "
            f"medians of {args.repeats} rounds"
        )
    )
    for column in ("P", "batch", "kornia", "lookalike", "speed-up", "range", "max |diff|"):
        table.add_column(column, justify="right")
    for patch_size in args.patch_size:
        for batch in args.batch:
            r = run(
                batch,
                patch_size,
                rootsift=args.rootsift,
                repeats=args.repeats,
                budget=args.budget,
                device=device,
            )
            table.add_row(
                str(patch_size),
                str(batch),
                f"{r['kornia']:,.0f}",
                f"{r['ours']:,.0f}",
                f"{r['ratio']:.1f}x",
                f"{r['ratio_min']:.1f}-{r['ratio_max']:.1f}x",
                f"{r['diff']:.1e}",
            )
    console.print(table)


if __name__ == "__main__":
    main()
