"""What subnormal weights cost on the CPU, and what :func:`lookalike.core.subnormal.flush_subnormal_` saves.

The network is the VIPeR recipe's (``configs/reid_viper.yaml``: ``relation_net`` on three stages of
a ResNet-18, 128 x 48 crops; random weights, nothing downloaded). Trained with Adam and L2 weight
decay, the weights of its dead channels sink below ``finfo(float32).tiny``: a 3800-step VIPeR run
with lr 0.002 ended with 1.37 M of its 2.87 M values subnormal (before the engine flushed them).
Here a share ``--dead`` of the output channels of every convolution in stages 2 and 3 is scaled
into the subnormal range, and the network is timed as it is and with those values flushed to 0,
rounds alternating, in one process:

(a) inference, eval mode, float32, ``--batch`` crops (what ``lookalike evaluate reid`` does);
(b) one training step, train mode, batch 32, Adam with weight decay (the recipe's), with bf16
    autocast (the recipe's) and in float32.

The two copies describe the crops identically up to float32 rounding (cosine printed). The machine
may be shared: read the ratios.

Usage::

    .venv/bin/python benchmarks/subnormal.py [--dead 0.5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from _timing import interleaved

import lookalike
from lookalike.core.subnormal import flush_subnormal_


def _network(dead: float, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = lookalike.create(
        "descriptor",
        "relation_net",
        backbone="resnet18",
        input_size=(128, 48),
        stages=3,
        parts=6,
        part_dim=64,
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.Conv2d) and name.startswith(
                ("trunk_net.2", "trunk_net.3")
            ):
                rows = torch.rand(module.out_channels, generator=gen) < dead
                # |w| < 1, so w * 1e-38 lies below finfo(float32).tiny = 1.18e-38
                module.weight[rows] *= 1e-38
    return net


def _train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, bf16: bool):
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dead", type=float, default=0.5, help="share of dead output channels")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="crops per inference batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    slow = _network(args.dead)
    fast = copy.deepcopy(slow)
    flushed = flush_subnormal_(fast.state_dict().values())
    total = sum(v.numel() for v in fast.state_dict().values() if v.is_floating_point())
    print(f"{flushed:,} of {total:,} weight values subnormal ({100 * flushed / total:.0f} %)")
    x = torch.rand(args.batch, 3, 128, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        slow.eval(), fast.eval()
        times = interleaved({"subnormal": lambda: slow(x), "flushed": lambda: fast(x)}, args.rounds)
        cos = torch.nn.functional.cosine_similarity(slow(x), fast(x), dim=1).min()
    a = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"(a) inference, {args.batch} crops: subnormal {a['subnormal']:.3f} s, "
        f"flushed {a['flushed']:.3f} s, ratio {a['subnormal'] / a['flushed']:.2f}x "
        f"(min cosine {float(cos):.6f})"
    )
    for label, bf16 in (("bf16", True), ("float32", False)):
        steps = {}
        for tag, net in (("subnormal", slow), ("flushed", fast)):
            net.train()
            opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=5e-4)
            steps[tag] = _train_step(net, opt, x[:32], bf16)
        b = {k: statistics.median(v) for k, v in interleaved(steps, 3 * args.rounds).items()}
        print(
            f"(b) training step, batch 32, {label}: subnormal {1000 * b['subnormal']:.0f} ms, "
            f"flushed {1000 * b['flushed']:.0f} ms, ratio {b['subnormal'] / b['flushed']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
