"""Patch-descriptor throughput: lookalike's fused networks against kornia's, measured in one run.

Every candidate holds the same weights (kornia's random initialisation with randomised BatchNorm
statistics, loaded into ours). For each batch size the candidates are timed interleaved, round after
round, so that load from other processes hits them alike; the ratio to kornia is taken within each
round and its median reported, next to the ratio of the best rates (interference only ever slows a
measurement down, so the best of several is the least disturbed). The first call of each candidate
is timed separately (for compiled candidates it includes compilation; Inductor's on-disk cache
makes a second run start faster). Compiled candidates use ``dynamic=False``: one static graph per
batch size (the fixed-batch use case); ``--dynamic`` measures the default dynamic-batch graph instead.

Usage::

    python benchmarks/patch_nets.py                      # HardNet, batches 256 and 2048, 2 threads
    python benchmarks/patch_nets.py --net hardnet8 --batch-sizes 256 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from _timing import rate

import lookalike
from lookalike.descriptors.patch._inference import bf16_supported

KORNIA = {"hardnet": "HardNet", "hardnet8": "HardNet8", "sosnet": "SOSNet", "tfeat": "TFeat"}


@dataclass
class Candidate:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    dtype: str
    first_call_s: dict[int, float] = field(default_factory=dict)
    rates: dict[int, list[float]] = field(default_factory=dict)
    ratios: dict[int, list[float]] = field(default_factory=dict)
    agreement: dict[int, str] = field(default_factory=dict)


def build(
    net_name: str, seed: int, compile: bool, dynamic: bool | None
) -> tuple[list[Candidate], Callable]:
    import kornia.feature as KF

    torch.manual_seed(seed)
    ref = getattr(KF, KORNIA[net_name])(pretrained=False)
    for mod in ref.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    ref.eval()
    ours = lookalike.create("descriptor", net_name)
    state = ref.state_dict()
    adapt = getattr(ours, "adapt_state_dict", None)
    ours.load_state_dict(adapt(state) if adapt else state)
    ours.eval()

    def kornia_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = ref(x)
        return F.normalize(out, dim=1) if net_name == "tfeat" else out

    def ours_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ours(x)

    cands = [
        Candidate(f"kornia {KORNIA[net_name]} (eval)", kornia_fn, "float32"),
        Candidate(f"lookalike {net_name} (eval, unfused)", ours_fn, "float32"),
        Candidate("fused float32", ours.fuse_for_inference(), "float32"),
    ]
    if compile:
        cands.append(
            Candidate(
                "fused float32 + compile",
                ours.fuse_for_inference(compile=True, dynamic=dynamic),
                "float32",
            )
        )
    if bf16_supported("cpu"):
        cands.append(
            Candidate("fused bfloat16", ours.fuse_for_inference(dtype=torch.bfloat16), "bfloat16")
        )
        if compile:
            fused = ours.fuse_for_inference(dtype=torch.bfloat16, compile=True, dynamic=dynamic)
            cands.append(Candidate("fused bfloat16 + compile", fused, "bfloat16"))
    return cands, kornia_fn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="hardnet", choices=sorted(KORNIA))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after the first")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile candidates")
    parser.add_argument(
        "--dynamic", action="store_true", help="compile with dynamic=None (dynamic batch dimension)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    torch.set_num_threads(args.threads)
    cands, kornia_fn = build(
        args.net, args.seed, not args.no_compile, None if args.dynamic else False
    )
    gen = torch.Generator().manual_seed(args.seed)
    for batch in args.batch_sizes:
        x = torch.rand(batch, 1, 32, 32, generator=gen)
        expected = kornia_fn(x)
        for cand in cands:
            start = time.perf_counter()
            out = cand.fn(x)
            cand.first_call_s[batch] = time.perf_counter() - start
            if cand.dtype == "float32":
                cand.agreement[batch] = f"max |Δ| {(out.float() - expected).abs().max():.1e}"
            else:
                cand.agreement[batch] = f"min cos {(out.float() * expected).sum(1).min():.6f}"
            for _ in range(args.warmup):
                cand.fn(x)
        for round_ in range(args.rounds):
            # Alternate the order so that no candidate always runs right after the same neighbour.
            order = cands if round_ % 2 == 0 else cands[::-1]
            rates = {cand.name: rate(cand.fn, x, args.min_time) for cand in order}
            base = rates[cands[0].name]
            for cand in cands:
                cand.rates.setdefault(batch, []).append(rates[cand.name])
                cand.ratios.setdefault(batch, []).append(rates[cand.name] / base)

    table = Table(
        title=(
            f"{args.net}: patches/s, {args.threads} threads, {args.rounds} interleaved rounds of "
            f"≥ {args.min_time}s, compile dynamic={None if args.dynamic else False} "
            f"(torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()})"
        )
    )
    columns = (
        "candidate",
        "batch",
        "patches/s median",
        "min–max",
        "× kornia (median of rounds)",
        "× kornia (best / best)",
        "first call",
        "agreement with kornia",
    )
    for col in columns:
        table.add_column(col, justify="left" if col[0] in "ca" else "right")
    for batch in args.batch_sizes:
        best_kornia = max(cands[0].rates[batch])
        for cand in cands:
            rates = cand.rates[batch]
            table.add_row(
                cand.name,
                str(batch),
                f"{statistics.median(rates):,.0f}",
                f"{min(rates):,.0f}–{max(rates):,.0f}",
                f"{statistics.median(cand.ratios[batch]):.2f}",
                f"{max(rates) / best_kornia:.2f}",
                f"{cand.first_call_s[batch]:.2f}s",
                cand.agreement[batch],
            )
        table.add_section()
    console.print(table)


if __name__ == "__main__":
    main()
