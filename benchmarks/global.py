"""Global-descriptor throughput: lookalike's ``gem`` against plain timm eval of the same backbone, one run.

The anchor is what a user would write: ``timm.create_model(backbone, num_classes=0)`` in eval mode (its
own global average pool), NCHW float32, under ``torch.no_grad``. Ours is the ``gem`` descriptor with the
same backbone weights: the plain eval-mode module, then ``fuse_for_inference()`` (BatchNorm folded,
channels-last), and opt-in bfloat16 / ``torch.compile`` candidates, whose cosine to the float32
descriptor is reported. Candidates are timed interleaved, round after round, and the median per-round
ratio to the anchor is printed with the ratio of the best rates (load from other processes only slows a
measurement down). The machine is shared: read the ratios, not the absolute rates.

Usage::

    python benchmarks/global.py                                  # resnet50, 224 px, batch 16, 2 threads
    python benchmarks/global.py --backbone efficientnet_b0 --size 320 --batch 8 --bf16 --compile
    python benchmarks/global.py --device cuda --batch 128 --bf16 --compile      # a GPU
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _timing import rate

import lookalike


def build(args: argparse.Namespace) -> tuple[dict[str, Callable], dict[str, float]]:
    import timm

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    anchor = timm.create_model(args.backbone, pretrained=False, num_classes=0).eval()
    for mod in anchor.modules():  # non-trivial BatchNorm statistics, so that folding matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    ours = lookalike.create("descriptor", "gem", backbone=args.backbone, pooling="spoc").eval()
    missing = ours.backbone.load_state_dict(anchor.state_dict(), strict=False).missing_keys
    assert not missing, missing
    anchor, ours = anchor.to(device), ours.to(device)
    mean, std = ours.mean, ours.std

    def timm_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(anchor((x - mean) / std), dim=1)

    def wrap(model: Callable) -> Callable:
        def fn(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x)

        return fn

    cands = {
        f"timm {args.backbone} eval (anchor)": timm_fn,
        "lookalike gem (eval)": wrap(ours),
        "lookalike gem fused float32": wrap(ours.fuse_for_inference()),
    }
    if args.compile:
        cands["fused float32 + compile"] = wrap(ours.fuse_for_inference(compile=True))
    if args.bf16:
        cands["fused bfloat16"] = wrap(ours.fuse_for_inference(bf16=True))
        if args.compile:
            cands["fused bfloat16 + compile"] = wrap(
                ours.fuse_for_inference(bf16=True, compile=True)
            )
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    reference = timm_fn(x)
    cosine = {
        name: float((fn(x).float() * reference).sum(dim=1).min()) for name, fn in cands.items()
    }
    return cands, cosine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--bf16", action="store_true", help="add bfloat16 candidates")
    parser.add_argument("--compile", action="store_true", help="add torch.compile candidates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timed with synchronisation)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cands, cosine = build(args)
    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    for fn in cands.values():  # first calls (compilation) and warm-up, untimed
        fn(x), fn(x)
    names = list(cands)
    rates: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        measured = {n: rate(cands[n], x, args.min_time) for n in names}
        for n in names:
            rates[n].append(measured[n])
            ratios[n].append(measured[n] / measured[names[0]])
    print(
        f"{args.backbone} at {args.size}x{args.size}, batch {args.batch}, {args.device}, "
        f"{args.threads} threads, "
        f"{args.rounds} interleaved rounds (shared machine: read the ratios)"
    )
    print(
        "| candidate | images/s (best) | x anchor (median) | x anchor (best) | min cosine to anchor |"
    )
    print("|---|---:|---:|---:|---:|")
    best_anchor = max(rates[names[0]])
    for n in names:
        print(
            f"| {n} | {max(rates[n]):.1f} | {statistics.median(ratios[n]):.2f} | "
            f"{max(rates[n]) / best_anchor:.2f} | {cosine[n]:.5f} |"
        )


if __name__ == "__main__":
    main()
